"""``edgefer benchmark --mode throughput``: requests in flight, frames per second measured, not estimated.

The model is a small foreign RGB classifier (tests/_byom_models.py, fitted in closed form, no training)
imported into edgefer, so these tests cost seconds.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from _byom_models import fit_linear, foreign_model
from test_byom import RGB_PP, _cli

from edgefer.backends import open_model
from edgefer.backends.base import Backend, ThroughputRun
from edgefer.bench import run_benchmark
from edgefer.bench.options import BenchOptions
from edgefer.errors import BackendError, EdgeferError
from edgefer.labels import CLASS_NAMES
from edgefer.metadata import ModelMetadata


@pytest.fixture(scope="module")
def tp_setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(an edgefer ONNX of a small RGB model, its dataset)."""
    from edgefer.data.synth import generate_synthetic
    from edgefer.export.importer import import_model

    root = tmp_path_factory.mktemp("throughput")
    data = generate_synthetic(root / "data", n_train=70, n_test=28, image_size=48, seed=0, difficulty=0.3)
    src = foreign_model(fit_linear(data, RGB_PP), tuple(CLASS_NAMES), RGB_PP, False, root / "rgb.onnx")
    res = import_model(src, root / "imported", classes=tuple(CLASS_NAMES), color="rgb", mean=(0.5,), std=(0.25,))
    return res.artifact, data


def _batch(backend: Backend, n: int = 1) -> np.ndarray:
    return np.random.default_rng(0).random(backend.metadata.preprocessing.batch_shape(n)).astype(np.float32)


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def test_onnxruntime_keeps_one_request_per_core_in_flight(tp_setup) -> None:
    onnx, _ = tp_setup
    with open_model(onnx, mode="throughput") as b:
        assert b.info()["threads"] == 1  # each request on one core, side by side
        run = b.throughput(_batch(b, 2), calls=24, warmup=2)
        assert run.requests == _usable_cores() and run.calls == 24 and len(run.latencies) == 24
        assert run.fps(2) == pytest.approx(24 * 2 / run.seconds)
        timed = b.throughput(_batch(b), seconds=0.3)
        assert timed.calls >= 1 and timed.seconds >= 0.3
    with open_model(onnx) as b:  # latency mode: one request spread over the cores, as before
        assert (b.mode == "latency" and b.info()["threads"] != 1) or _usable_cores() == 1


def test_openvino_uses_the_throughput_hint_and_its_optimal_request_count(tp_setup) -> None:
    onnx, _ = tp_setup
    with open_model(onnx, backend="openvino", mode="throughput") as b:
        assert b.info()["performance_hint"] == "THROUGHPUT"
        x = _batch(b)
        run = b.throughput(x, calls=20, warmup=3)
        optimal = int(b._batches.compiled_for(1).get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        assert run.requests == optimal and run.calls == 20 and all(t > 0 for t in run.latencies)
        throughput_logits = b.infer(x)
    with open_model(onnx, backend="openvino") as b:
        assert b.info()["performance_hint"] == "LATENCY"
        np.testing.assert_allclose(b.infer(x), throughput_logits, rtol=1e-4, atol=1e-5)


class _OneAtATime(Backend):
    """A backend whose ``infer`` is not safe from several threads (as TensorRT's one context is here)."""

    name: ClassVar[str] = "one-at-a-time"

    def _load(self, path: Path) -> None:
        from edgefer.preprocess import Preprocessing

        self.metadata = ModelMetadata(model_name="m", class_names=CLASS_NAMES, preprocessing=Preprocessing(16))

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return np.zeros((len(batch), 7), np.float32)

    def info(self) -> dict[str, Any]:
        return {"backend": self.name}


class _FailsOnThird(_OneAtATime):
    concurrent_infer: ClassVar[bool] = True
    calls = 0

    def infer(self, batch: np.ndarray) -> np.ndarray:
        type(self).calls += 1
        if type(self).calls == 3:
            raise BackendError("device lost on the third call")
        return super().infer(batch)


def test_a_backend_that_runs_one_request_at_a_time_refuses_and_errors_surface(tmp_path: Path) -> None:
    f = tmp_path / "m.bin"
    f.write_bytes(b"x")
    x = np.zeros((1, 3, 16, 16), np.float32)
    with pytest.raises(BackendError, match="throughput mode is not available"):
        _OneAtATime(f, mode="throughput").throughput(x, calls=4)
    with pytest.raises(BackendError, match="device lost on the third call"):  # from a worker thread, not lost
        _FailsOnThird(f, mode="throughput").throughput(x, calls=50)
    with pytest.raises(BackendError, match="mode must be one of latency, throughput"):
        _OneAtATime(f, mode="fast")
    with pytest.raises(BackendError, match="either calls or seconds"):
        _OneAtATime(f).throughput(x)
    assert ThroughputRun(2, 10, 0.5).fps(4) == 80.0


def test_benchmark_throughput_mode_measures_fps(tp_setup, tmp_path: Path) -> None:
    onnx, data = tp_setup
    out = tmp_path / "report"
    report = run_benchmark(
        [onnx, {"path": str(onnx), "backends": ["openvino"]}],
        data,
        mode="throughput",
        batches=(1, 4),
        iters=16,
        warmup=2,
        e2e=False,
        plots=False,
        progress=False,
        out_dir=out,
    )
    d = json.loads((out / "report.json").read_text())
    assert d["settings"]["mode"] == "throughput"
    for row in d["rows"]:
        assert row["status"] == "ok", row["status"]
        for b, lat in row["latency"].items():
            stats = lat["model"]
            assert lat["mode"] == "throughput" and stats["calls"] == 16 and stats["requests"] >= 1
            assert stats["fps"] == pytest.approx(16 * int(b) / stats["wall_s"], rel=1e-3)
            assert "e2e" not in lat
    assert "**Throughput mode**" in (out / "report.md").read_text()
    assert report.rows[0]["latency"]["1"]["model"]["requests"] == _usable_cores()


def test_streams_sets_the_requests_in_flight(tp_setup, tmp_path: Path) -> None:
    """``--streams N``: N ONNX Runtime requests side by side; OpenVINO compiles N streams (NUM_STREAMS)
    and keeps one request each busy, as benchmark_app -nstreams N; the report says how many ran."""
    onnx, data = tp_setup
    with open_model(onnx, mode="throughput", streams=3) as b:
        run = b.throughput(_batch(b), calls=12)
        assert run.requests == 3 and run.calls == 12
    with open_model(onnx, backend="openvino", mode="throughput", streams=1) as b:
        assert b.info()["num_streams"] == "1" and b.requests_in_flight() == 1
        assert b.throughput(_batch(b), calls=5).requests == 1
    with open_model(onnx, backend="openvino", mode="throughput", streams=3) as b:
        # the CPU plugin compiles at most one stream per core (info says how many it made); 3 requests all the same
        assert 1 <= int(b.info()["num_streams"]) <= 3 and b.throughput(_batch(b), calls=6).requests == 3
    out = tmp_path / "report"
    run_benchmark(
        [onnx],
        data,
        mode="throughput",
        streams=2,
        batches=(1,),
        iters=8,
        warmup=1,
        e2e=False,
        plots=False,
        progress=False,
        out_dir=out,
    )
    d = json.loads((out / "report.json").read_text())
    assert d["settings"]["streams"] == 2 and d["rows"][0]["latency"]["1"]["model"]["requests"] == 2
    assert "2 requests in flight (--streams)" in (out / "report.md").read_text()


def test_cli_streams_and_what_the_report_line_names(tp_setup, tmp_path: Path) -> None:
    onnx, data = tp_setup
    out = tmp_path / "r"
    argv = ["--mode", "throughput", "--streams", "1", "--iters", "4", "--batch", "1", "--no-e2e", "--out", out]
    res = _cli("benchmark", onnx, "--data", data, *argv, "--no-plots", "-q")
    assert res.exit_code == 0, res.output
    assert f"report: {out / 'report.md'} (+ report.json)" in res.output  # no plots were asked for, none named
    assert "1 request in flight (--streams)" in (out / "report.md").read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--streams", "0"], "--streams must be a whole number in 1..64, got 0"),
        (["--streams", "65", "--mode", "throughput"], "--streams must be a whole number in 1..64, got 65"),
        (["--streams", "2"], "--streams 2 sets the requests in flight of --mode throughput; add --mode throughput"),
    ],
)
def test_streams_is_checked_before_any_work(tp_setup, argv: list[str], message: str) -> None:
    onnx, data = tp_setup
    res = _cli("benchmark", onnx, "--data", data, *argv, "-q")
    assert res.exit_code == 2 and message in res.output
    res = _cli("pipeline", "--data", "synthetic", "--out", str(data.parent / "never"), *argv, "-q")
    assert res.exit_code == 2 and message in res.output and not (data.parent / "never").exists()
    with pytest.raises(BackendError, match="add --mode throughput"):
        open_model(onnx, streams=2)


def test_mode_is_checked_before_any_work(tp_setup) -> None:
    onnx, data = tp_setup
    with pytest.raises(EdgeferError, match="--mode must be one of latency, throughput"):
        BenchOptions(mode="fastest")
    res = _cli("benchmark", onnx, "--data", data, "--mode", "fastest", "-q")
    assert res.exit_code == 2 and "--mode must be one of latency, throughput" in res.output


def test_openvino_fast_call_is_bitwise_the_plain_call_and_its_results_stay_put(tp_setup) -> None:
    """The pre-allocated path (StaticCall: the caller's array bound to a request of its own, output view
    copied out) gives the bits ``InferRequest.infer`` gives, reads the array as it is when called (written
    in place since), and a result the caller keeps is not overwritten."""
    onnx, _ = tp_setup
    with open_model(onnx, backend="openvino") as b:
        rng = np.random.default_rng(1)
        x1, x2 = _batch(b), rng.random(b.metadata.preprocessing.batch_shape(1)).astype(np.float32)
        y1 = b.infer(x1)
        y2 = b.infer(x2)  # the fast path now (shape seen before): must not touch y1
        assert not np.array_equal(y1, y2)
        request, output = b._batches.request_for(1)
        for x, y in ((x1, y1), (x2, y2)):
            plain = np.array(request.infer({0: x})[output], dtype=np.float32)
            assert np.array_equal(y, plain) and np.array_equal(b.infer(x), y)
        assert np.array_equal(b.infer(x1.astype(np.float64)), y1)  # cast as before, via check_batch
        buffer = x1.copy()
        assert np.array_equal(b.infer(buffer), y1) and b._calls[buffer.shape]._bound is buffer  # shared, no copy
        buffer[...] = x2  # a reused input buffer, written in place: the next call infers what it holds now
        assert np.array_equal(b.infer(buffer), y2) and np.array_equal(x1, _batch(b))  # x1 untouched throughout
        frozen = x2.copy()
        frozen.flags.writeable = False  # cannot be shared: copied into the request's own input tensor
        assert np.array_equal(b.infer(frozen), y2) and b._calls[frozen.shape]._bound is None
        assert np.array_equal(b.infer(x1), y1)  # and shared again after that
        raw = np.zeros(x2.nbytes + 1, np.uint8)
        odd = np.frombuffer(raw.data, np.float32, count=x2.size, offset=1).reshape(x2.shape)
        odd[...] = x2  # float32 at an odd address: copied, not shared
        assert not odd.flags.aligned and np.array_equal(b.infer(odd), y2) and b._calls[odd.shape]._bound is None
        wide = np.stack([x1, x1 + 1], axis=-1)[..., 0]  # same values, not contiguous
        assert not wide.flags.c_contiguous and np.array_equal(b.infer(wide), y1)
        x3 = np.concatenate([x1, x2, x1])
        y3 = b.infer(x3)  # another batch size: its own static request
        assert np.array_equal(b.infer(x3), y3) and np.allclose(y3[[0, 1]], np.concatenate([y1, y2]), atol=1e-5)
        with pytest.raises(BackendError, match="input must be"):
            b.infer(x1[:, :, :-1])
        wrong: list[int] = []  # two threads on the one request take turns: each gets its own input's logits

        def hammer(x: np.ndarray, y: np.ndarray) -> None:
            for _ in range(60):
                try:
                    ok = np.array_equal(b.infer(x), y)
                except BackendError:  # OpenVINO's "request is busy": also a call that did not take its turn
                    ok = False
                wrong.extend([] if ok else [1])

        pool = [threading.Thread(target=hammer, args=xy) for xy in ((x1, y1), (x2, y2))]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        assert wrong == []
