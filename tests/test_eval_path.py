"""One evaluation path: the FP32 reference, the quantization evaluation and the benchmark score the
same artifact on the same images to the same logits (compare like with like).

Each of the three used to run its own loop (and the quantization evaluation its own OpenVINO/ONNX
Runtime sessions, forcing f32 on every in-memory OpenVINO model where the backend runs an FP16 IR
in the device's default precision, bf16 on CPUs with AVX512-BF16/AMX).
"""

from __future__ import annotations

import numpy as np
import pytest
from _bench_artifacts import exported_artifacts

from edgefer.backends import open_model
from edgefer.bench import run_benchmark
from edgefer.bench.evalset import infer_all, load_evalset
from edgefer.errors import EdgeferError

BATCH = 8


@pytest.fixture(scope="module")
def arts(tiny_checkpoint, tmp_path_factory):
    return exported_artifacts(tiny_checkpoint, tmp_path_factory.mktemp("eval_path_artifacts"))


def test_reference_quantize_evaluation_and_benchmark_agree(arts, synth_data):
    """Same FP32 ONNX, same images: identical logits from all three, and the benchmark row scored
    against the reference agrees on every image."""
    pytest.importorskip("onnxruntime")
    from edgefer.data.calibration import validation_arrays
    from edgefer.export.reference import make_reference
    from edgefer.quantize.evaluate import predict

    ref = make_reference(arts["onnx"], synth_data, "test", batch_size=BATCH, progress=False)
    ev = load_evalset(synth_data, "test")
    with open_model(arts["onnx"]) as backend:
        bench_logits = infer_all(backend, ev, BATCH)
        val = validation_arrays(synth_data, backend.metadata.preprocessing, split="test")
    quant_logits = predict(arts["onnx"], val, batch=BATCH)
    assert list(ref.ids) == ev.ids == val.ids
    np.testing.assert_array_equal(ref.logits, bench_logits)
    np.testing.assert_array_equal(quant_logits, bench_logits)
    rep = run_benchmark(
        [arts["onnx"]], synth_data, reference=ref, batches=(BATCH,), warmup=1, iters=2, e2e=False, plots=False,
        progress=False,
    )  # fmt: skip
    acc = rep.rows[0]["accuracy"]
    assert rep.rows[0]["status"] == "ok"
    assert acc["agreement"] == 1.0 and acc["delta_pts"] == 0.0
    assert acc["mean_kl"] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("key", ["xml", "xml16"])
def test_in_memory_openvino_model_scored_like_its_artifact(arts, synth_data, key):
    """An OpenVINO model scored in memory (as NNCF hands it to the quantization evaluation) gives
    bit-identical logits to its saved IR in the benchmark: same precision hints, same batches.
    The FP16 IR is the case the old evaluation got wrong (it forced f32; the backend does not)."""
    ov = pytest.importorskip("openvino")
    from edgefer.quantize.evaluate import Runner

    ev = load_evalset(synth_data, "test", max_images=40)
    with open_model(arts[key]) as backend:
        bench_logits = infer_all(backend, ev, BATCH)
        x = ev.preprocessed(backend.metadata.preprocessing)
    with Runner(ov.Core().read_model(str(arts[key]))) as runner:
        np.testing.assert_array_equal(runner(x, BATCH), bench_logits)


def test_in_memory_onnx_model_scored_like_its_artifact(arts, synth_data):
    onnx = pytest.importorskip("onnx")
    from edgefer.quantize.evaluate import predict

    ev = load_evalset(synth_data, "test", max_images=40)
    with open_model(arts["onnx"]) as backend:
        bench_logits = infer_all(backend, ev, BATCH)
        x = ev.preprocessed(backend.metadata.preprocessing)
    np.testing.assert_array_equal(predict(onnx.load(str(arts["onnx"])), x, batch=BATCH), bench_logits)


class _Static:
    """A fake static-batch backend that records the batch sizes it was given."""

    max_batch = 4

    def __init__(self) -> None:
        self.seen: list[int] = []

    def infer(self, x: np.ndarray) -> np.ndarray:
        if len(x) != self.max_batch:
            raise AssertionError(f"static batch {self.max_batch}, got {len(x)}")
        self.seen.append(len(x))
        return x.reshape(len(x), -1)[:, :3].copy()


def test_infer_all_pads_the_last_static_batch_and_keeps_order():
    x = np.random.default_rng(0).random((10, 3, 2, 2), dtype=np.float32)
    fake = _Static()
    out = infer_all(fake, x, batch_size=16)  # capped at the artifact's max batch
    assert fake.seen == [4, 4, 4]
    np.testing.assert_array_equal(out, x.reshape(10, -1)[:, :3])
    with pytest.raises(EdgeferError, match="batch_size"):
        infer_all(fake, x, batch_size=0)
    with pytest.raises(EdgeferError, match="no images"):
        infer_all(fake, x[:0], batch_size=4)


def test_build_artifacts_needs_data_for_reference_and_int8_before_any_work(tmp_path):
    from edgefer.pipeline.artifacts import build_artifacts

    for kwargs in ({"reference": True}, {"int8": ("openvino",)}):
        with pytest.raises(EdgeferError, match="need a dataset"):
            build_artifacts(tmp_path / "missing.pt", tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()
