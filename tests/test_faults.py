"""Fault injection: bad input and interrupted work, across every command (issue 13).

Two layers:

* the numbered cases of issue 13, each a test that failed before its fix (mostly in-process,
  where a subprocess would only add seconds);
* the CLI corpus: each command run through the installed console script against bad inputs
  (missing, empty, truncated, wrong type, wrong schema, hostile paths, hostile pickles, partial
  data). Every run must exit 2 with one ``error:`` line, print no traceback, write nothing outside
  its output and change no existing file. Hypothesis explores the large spaces (label files, csv
  rows, metadata values) in-process, with few examples.

Everything here runs on a tiny image-folder dataset (32 px PNGs), an untrained
``msff_mobilenetv3`` checkpoint and a hand-built ONNX (no torch export), so the module stays fast.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgefer.bench.options import BenchOptions
from edgefer.labels import CLASS_NAMES

#: The quickest benchmark that still scores every image: one batch size, one timed call, no
#: end-to-end timing, no plots -- as flags for the console script and as options for Python.
QUICK_BENCH = ("--batch", "1", "--warmup", "0", "--iters", "1", "--no-e2e", "--no-plots", "-q")
QUICK_BENCH_OPTIONS = BenchOptions(batches=(1,), warmup=0, iters=1, e2e=False, progress=False)

SIZE = 32


# -- builders -------------------------------------------------------------------------------------


def make_folders(
    root: Path,
    n_per_class: int = 3,
    classes: tuple[str, ...] = CLASS_NAMES,
    splits: tuple[str, ...] = ("train", "test"),
    seed: int = 0,
) -> Path:
    """An image-folder dataset ``root/<split>/<class>/<k>.png`` of random 32 px RGB images."""
    rng = np.random.default_rng(seed)
    for split in splits:
        for name in classes:
            d = root / split / name.lower()
            d.mkdir(parents=True, exist_ok=True)
            for k in range(n_per_class):
                img = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
                cv2.imwrite(str(d / f"{k:03d}.png"), img)
    return root


def tiny_onnx(
    path: Path,
    class_names: tuple[str, ...] = CLASS_NAMES,
    *,
    props: dict[str, str] | None = None,
    precision: str = "fp32",
) -> Path:
    """A real, runnable edgefer-style ONNX classifier (global pooling + a linear layer) with metadata."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgefer.metadata import ModelMetadata
    from edgefer.preprocess import Preprocessing

    k = len(class_names)
    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.normal(size=(3, k)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.normal(size=(k,)).astype(np.float32), "B")
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "W", "B"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", k])],
        [w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = ModelMetadata(
        model_name="tiny", class_names=class_names, preprocessing=Preprocessing(input_size=SIZE), precision=precision
    )
    all_props = {**meta.to_props(), **(props or {})}
    for key, value in all_props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def untrained_checkpoint(path: Path, n_classes: int = 7) -> Path:
    """A real (untrained) msff_mobilenetv3 checkpoint at 32 px with ``n_classes`` class names."""
    from edgefer.models import create_model
    from edgefer.preprocess import Preprocessing
    from edgefer.training.checkpoint import save_checkpoint

    model = create_model("msff_mobilenetv3", num_classes=n_classes, pretrained=None)
    names = CLASS_NAMES[:n_classes] if n_classes <= 7 else tuple(f"c{i}" for i in range(n_classes))
    return save_checkpoint(
        path,
        model=model,
        model_name="msff_mobilenetv3",
        model_args={},
        class_names=names,
        preprocessing=Preprocessing(input_size=SIZE),
    )


def corrupt(path: Path) -> None:
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)  # a PNG signature, then garbage


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` with its bytes (to assert that nothing changed)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# -- the console script ---------------------------------------------------------------------------


def edgefer(*args: str | os.PathLike, cwd: Path | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    """Run the installed ``edgefer`` console script (PYTHONPATH preserved, no debug tracebacks)."""
    exe = Path(sys.executable).with_name("edgefer")
    assert exe.exists(), f"the edgefer console script is not installed next to {sys.executable}"
    env = {k: v for k, v in os.environ.items() if k != "EDGEFER_DEBUG"}
    env.update(COLUMNS="200", OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    return subprocess.run(
        [str(exe), *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd
    )


def assert_user_error(proc: subprocess.CompletedProcess, needle: str = "") -> str:
    """Exit 2, one ``error:`` line on stderr, no traceback anywhere; returns the message."""
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text, text[-3000:]
    assert proc.returncode == 2, (proc.returncode, text[-3000:])
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert needle.lower() in errors[0].lower(), errors[0]
    return errors[0]


# -- shared fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_folders(tmp_path_factory.mktemp("faults") / "data")


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_onnx(tmp_path_factory.mktemp("onnx") / "tiny.onnx")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return untrained_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt")


# == issue 13, case 3: every image scored once ====================================================


def test_evaluate_scores_each_readable_image_once_and_reports_the_skipped(tmp_path: Path, checkpoint: Path) -> None:
    from edgefer.training import evaluate

    root = make_folders(tmp_path / "d", n_per_class=2, splits=("test",))
    corrupt(root / "test" / "fear" / "000.png")
    corrupt(root / "test" / "happiness" / "001.png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = evaluate(checkpoint, root, split="test", out=tmp_path / "eval", batch_size=4)
    assert len(result.ids) == 12 == len(set(result.ids)), result.ids
    assert "fear/000" not in result.ids and "happiness/001" not in result.ids
    assert int(result.report.support.sum()) == 12
    assert result.skipped == 2
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["num_images"] == 12 and metrics["skipped"] == 2
    assert sorted(metrics["skipped_ids"]) == ["fear/000", "happiness/001"]


def test_benchmark_scores_each_readable_image_once(tmp_path: Path, onnx_model: Path) -> None:
    from edgefer.bench import run_benchmark

    root = make_folders(tmp_path / "d", n_per_class=2, splits=("test",))
    corrupt(root / "test" / "surprise" / "000.png")
    corrupt(root / "test" / "surprise" / "001.png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        report = run_benchmark([onnx_model], root, options=QUICK_BENCH_OPTIONS)
    assert report.settings["images"] == 12 and report.settings["skipped"] == 2
    row = report.rows[0]
    assert row["status"] == "ok", row["status"]
    assert any("2 unreadable" in n for n in report.notes), report.notes


# == case 4: a gate does not pass on part of its reference ========================================


@pytest.fixture(scope="module")
def partial(tmp_path_factory: pytest.TempPathFactory, onnx_model: Path) -> tuple[Path, Path]:
    """A reference made on 21 test images, and the same data with 5 of them deleted."""
    from edgefer.export.reference import make_reference

    root = make_folders(tmp_path_factory.mktemp("partial") / "d", splits=("test",))
    ref = make_reference(onnx_model, root, split="test", out=root.parent / "reference.npz", progress=False)
    assert len(ref) == 21
    for name in ("fear/000.png", "fear/001.png", "anger/002.png", "neutral/000.png", "sadness/001.png"):
        (root / "test" / name).unlink()
    return root, root.parent / "reference.npz"


def test_benchmark_on_part_of_the_reference_says_so_and_fails_a_gate(partial, onnx_model: Path, tmp_path: Path):
    root, ref = partial
    args = [
        "benchmark",
        onnx_model,
        "--data",
        root,
        "--reference",
        ref,
        *QUICK_BENCH,
    ]
    gated = edgefer(*args, "--gate", "min-agreement=0.0", "--out", tmp_path / "r")
    assert gated.returncode == 3, gated.stderr[-2000:]
    assert "5 of the 21 reference images were not found" in gated.stderr
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["reference"]["not_found"] == 5 and report["reference"]["total"] == 21
    assert "5 of its 21 images were not found" in (tmp_path / "r" / "report.md").read_text()
    allowed = edgefer(*args, "--gate", "min-agreement=0.0", "--allow-partial")
    assert allowed.returncode == 0, allowed.stderr[-2000:]
    assert "5 of the 21 reference images were not found" in allowed.stderr
    # --max-images leaves images out on purpose: that is not a partial reference
    from edgefer.bench import run_benchmark

    full = make_folders(tmp_path / "full", splits=("test",))
    rep = run_benchmark(
        [onnx_model],
        full,
        reference=ref,
        max_images=4,
        options=dataclasses.replace(QUICK_BENCH_OPTIONS, gate="min-agreement=0.0"),
    )
    assert rep.reference["not_found"] == 0 and rep.passed, rep.gate_failures


# == case 6: no row succeeded is not success ======================================================


def test_benchmark_exits_non_zero_when_every_row_failed(tmp_path: Path, data: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    proc = edgefer(
        "benchmark",
        broken,
        "--data",
        data,
        *QUICK_BENCH,
    )
    assert_user_error(proc, "no model ran")
    assert "broken.onnx" in proc.stdout  # the table still shows the failed row and why


# == case 9: one decoding rule for 16-bit images ==================================================


def test_a_16_bit_png_gives_the_same_pixels_to_training_and_to_the_runtime(tmp_path: Path) -> None:
    from edgefer.data.base import read_image as data_read
    from edgefer.runtime.images import read_image as runtime_read
    from edgefer.runtime.predictor import as_bgr_frame

    rng = np.random.default_rng(3)
    grey = rng.integers(0, 30000, (24, 24), dtype=np.uint16)  # far below 65535: a max-stretch would show
    colour = rng.integers(0, 65536, (24, 24, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "grey16.png"), grey)
    cv2.imwrite(str(tmp_path / "colour16.png"), colour)
    expected_grey = np.rint(grey / 257.0).astype(np.uint8)
    expected_colour = np.rint(colour[:, :, ::-1] / 257.0).astype(np.uint8)  # BGR on disk -> RGB
    for name, expected in (
        ("grey16.png", np.repeat(expected_grey[:, :, None], 3, 2)),
        ("colour16.png", expected_colour),
    ):
        training = data_read(tmp_path / name)
        runtime = as_bgr_frame(runtime_read(tmp_path / name))[:, :, ::-1]
        np.testing.assert_array_equal(training, expected, err_msg=name)
        np.testing.assert_array_equal(runtime, expected, err_msg=name)


def test_to_uint8_scales_by_the_dtype_range_never_by_the_image() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st
    from hypothesis.extra.numpy import arrays

    from edgefer.preprocess import to_uint8

    @settings(max_examples=40, deadline=None)
    @given(arrays(np.uint16, st.tuples(st.integers(1, 6), st.integers(1, 6))))
    def check(a: np.ndarray) -> None:
        out = to_uint8(a)
        assert out.dtype == np.uint8 and out.shape == a.shape
        np.testing.assert_array_equal(out, np.rint(a / 257.0).astype(np.uint8))
        # the same pixel value maps to the same output whatever else is in the image
        np.testing.assert_array_equal(to_uint8(a[:1, :1]), out[:1, :1])

    check()
    assert to_uint8(np.array([[0, 257, 65535]], np.uint16)).tolist() == [[0, 1, 255]]
    assert to_uint8(np.array([[True, False]])).tolist() == [[255, 0]]


# == data synth: never replace a dataset edgefer did not make; bounded sizes =====================


def test_synth_never_replaces_a_basic_folder_it_did_not_write(tmp_path: Path) -> None:
    from edgefer.data.synth import generate_synthetic
    from edgefer.errors import DatasetError

    real = tmp_path / "rafdb"
    (real / "basic" / "EmoLabel").mkdir(parents=True)
    (real / "basic" / "EmoLabel" / "list_patition_label.txt").write_text("train_00001.jpg 1\n")
    before = snapshot(real)
    with pytest.raises(DatasetError, match="not written by edgefer"):
        generate_synthetic(real, n_train=7, n_test=7, image_size=32, overwrite=True)
    assert snapshot(real) == before
    for kwargs, needle in (
        (dict(image_size=100_000), "image_size"),
        (dict(seed=-1), "seed"),
        (dict(n_train=10**7), "n_train"),
    ):
        with pytest.raises(DatasetError, match=needle):
            generate_synthetic(tmp_path / "x", **{"n_train": 7, "n_test": 7, **kwargs})
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


# == case 11: every flag an error suggests exists on the command that raised it ===================

_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9_-]*[a-z0-9]")


def _cli(args: list[str]) -> tuple[int, str, BaseException | None]:
    """Run a command in-process (typer's runner) -> (exit code, output, exception)."""
    from typer.testing import CliRunner

    from edgefer.cli import app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = CliRunner().invoke(app, [str(a) for a in args])
    return res.exit_code, res.output, res.exception


def _help_flags(command: list[str]) -> set[str]:
    """Every option string ``edgefer COMMAND`` accepts (read from the command itself, as --help lists them)."""
    import typer

    from edgefer.cli import app

    cmd = typer.main.get_command(app)
    for part in command:
        cmd = cmd.commands[part]  # type: ignore[attr-defined]
    return {opt for param in cmd.params for opt in (*param.opts, *param.secondary_opts) if opt.startswith("--")}


def test_every_flag_a_data_error_names_exists_on_that_command(
    tmp_path: Path, onnx_model: Path, checkpoint: Path
) -> None:
    """A 6-class set (like CK+): each data-reading command that refuses it must offer the flag it names."""
    from edgefer.errors import EdgeferError

    six = make_folders(tmp_path / "six", classes=CLASS_NAMES[:6])
    commands = {
        "train": [
            "train",
            "--data",
            six,
            "--arch",
            "msff_mobilenetv3",
            "--out",
            tmp_path / "t",
            "--epochs",
            "1",
            "--img-size",
            "32",
            "--quiet",
        ],
        "evaluate": ["evaluate", "--checkpoint", checkpoint, "--data", six, "--split", "train", "--quiet"],
        "quantize": ["quantize", "--onnx", onnx_model, "--data", six, "--out", tmp_path / "q", "-q"],
        "export": [
            "export",
            "--onnx",
            onnx_model,
            "--target",
            "onnx",
            "--precision",
            "int8",
            "--data",
            six,
            "--out",
            tmp_path / "e",
            "-q",
        ],
        "benchmark": [
            "benchmark",
            onnx_model,
            "--data",
            six,
            "--split",
            "train",
            "--batch",
            "1",
            "--warmup",
            "0",
            "--iters",
            "1",
            "--no-e2e",
            "-q",
        ],
    }
    for name, args in commands.items():
        code, out, exc = _cli(args)
        assert isinstance(exc, EdgeferError), (name, code, out, exc)
        named = set(_FLAG.findall(str(exc)))
        assert "--allow-missing-classes" in named, (name, str(exc))
        missing = named - _help_flags([args[0]])
        assert not missing, f"`edgefer {name}` error names {sorted(missing)}, which it does not accept: {exc}"
    # and the flag does what it says (the cheap commands; the others share the same reader argument)
    code, out, exc = _cli([*commands["benchmark"], "--allow-missing-classes"])
    assert code == 0 and exc is None, (out, exc)
    code, out, exc = _cli([*commands["evaluate"], "--allow-missing-classes"])
    assert code == 0 and exc is None, (out, exc)
    assert not (tmp_path / "q").exists() and not (tmp_path / "e").exists() and not (tmp_path / "t").exists()


def test_flags_named_in_library_errors_exist_on_some_command() -> None:
    """Static check: every ``--flag`` in an error or hint string of the library is a real CLI flag."""
    import edgefer

    root = Path(edgefer.__file__).parent
    known: set[str] = set()
    for command in (
        ["train"],
        ["evaluate"],
        ["export"],
        ["quantize"],
        ["benchmark"],
        ["bundle"],
        ["predict"],
        ["run"],
        ["deepstream"],
        ["pipeline"],
        ["data", "synth"],
        ["data", "info"],
        ["models"],
        ["debug"],
        ["import"],
    ):
        known |= _help_flags(command)
    # torchrun, nvidia-smi, trtexec, dpkg-query, `python -m venv` and Polygraphy flags in hints: not edgefer's
    device_side = {
        "--nproc_per_node",
        "--query-gpu",
        "--format",
        "--calib",
        "--system-site-packages",
        "--showformat",
        "--trt",
        "--onnxrt",
        "--trt-outputs",
        "--onnx-outputs",
        "--int8",  # trtexec --int8 --calib=X (export/api.py refuses to print it without the cache)
        "--streams",  # trtexec --streams (backends/base.py: what throughput mode matches)
        "--get",  # trtexec --getPlanVersionOnly (engine_sidecar.py), cut at the capital by the pattern
    }
    unknown: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        if path.parent.name == "cli" or path.name in ("tensorrt.py", "calibrator.py", "speed.py"):
            continue  # the CLI defines flags; trtexec command lines and the speed script have their own
        for flag in _FLAG.findall(path.read_text(encoding="utf-8")):
            if flag not in known and flag not in device_side:
                unknown.setdefault(flag, set()).add(path.relative_to(root).as_posix())
    assert not unknown, unknown


# == hypothesis: label files, csv rows and metadata values never crash a reader ==================


def _rafdb_root(root: Path, label_text: str) -> Path:
    (root / "basic" / "EmoLabel").mkdir(parents=True, exist_ok=True)
    (root / "basic" / "Image" / "aligned").mkdir(parents=True, exist_ok=True)
    (root / "basic" / "EmoLabel" / "list_patition_label.txt").write_text(
        label_text, encoding="utf-8", errors="surrogatepass"
    )
    return root


def test_any_rafdb_label_file_is_read_or_refused_with_a_dataset_error(tmp_path: Path) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from edgefer.data import open_dataset
    from edgefer.errors import DatasetError

    token = st.sampled_from(
        [
            "train_00001.jpg",
            "test_00001.jpg",
            "train_00002.jpg",
            "x.jpg",
            "1",
            "7",
            "0",
            "8",
            "-1",
            "3.5",
            "",
            " ",
            "\t",
            "Training",
            "happy",
            "../../etc/passwd",
            "\x00",
            "é",
        ]
    )
    line = st.lists(token, max_size=4).map(" ".join)
    text = st.lists(line, max_size=6).map("\n".join) | st.text(max_size=40)
    img = np.zeros((8, 8, 3), np.uint8)
    counter = iter(range(10**6))

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(text=text, split=st.sampled_from(["train", "test"]))
    def check(text: str, split: str) -> None:
        root = _rafdb_root(tmp_path / f"r{next(counter)}", text)
        for name in ("train_00001", "test_00001"):
            cv2.imwrite(str(root / "basic" / "Image" / "aligned" / f"{name}_aligned.jpg"), img)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = open_dataset(root, split)
        except DatasetError:
            return
        assert len(ds) >= 1 and all(0 <= int(y) < 7 for y in ds.labels)

    check()


def test_any_fer2013_csv_is_read_or_refused_with_a_dataset_error(tmp_path: Path) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from edgefer.data import open_dataset
    from edgefer.errors import DatasetError

    pixels = st.sampled_from(
        [
            " ".join(["0"] * 2304),
            " ".join(["255"] * 2304),
            "1 2 3",
            "",
            "a b c",
            " ".join(["300"] * 2304),
            " ".join(["-1"] * 2304),
            " ".join(["0"] * 2305),
        ]
    )
    cell = st.sampled_from(["0", "6", "7", "-1", "x", "", "Training", "PublicTest", "PrivateTest", "nan"])
    row = st.tuples(cell, pixels, cell).map(lambda r: ",".join(r))
    header = st.sampled_from(["emotion,pixels,Usage", "pixels,emotion,Usage", "emotion,pixels", "a,b,c", ""])
    text = st.tuples(header, st.lists(row, max_size=5)).map(lambda hr: "\n".join([hr[0], *hr[1]]) + "\n")
    counter = iter(range(10**6))

    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
    @given(text=text, split=st.sampled_from(["train", "val", "test"]))
    def check(text: str, split: str) -> None:
        path = tmp_path / f"f{next(counter)}" / "fer2013.csv"
        path.parent.mkdir()
        path.write_text(text)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = open_dataset(path, split)
                samples = [s for _, s in ds.iter_readable()]
        except DatasetError:
            return
        assert all(s.image.shape == (48, 48, 3) and s.image.dtype == np.uint8 for s in samples)

    check()


def test_any_metadata_value_is_read_or_refused_with_a_backend_error() -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from edgefer.errors import BackendError
    from edgefer.metadata import PROPS_KEY, ModelMetadata

    scalar = st.none() | st.booleans() | st.integers(-10, 10**6) | st.floats(allow_nan=True) | st.text(max_size=6)
    value = st.recursive(
        scalar, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3), max_leaves=6
    )
    fields = st.fixed_dictionaries(
        {},
        optional={
            "model_name": value | st.just("tiny"),
            "class_names": value | st.just(list(CLASS_NAMES)),
            "preprocessing": value
            | st.fixed_dictionaries(
                {},
                optional={
                    "input_size": value | st.just(32),
                    "mean": value,
                    "std": value,
                    "color_order": value,
                    "resize": value,
                    "interpolation": value,
                },
            ),
            "precision": value,
            "schema": value,
            "model_args": value,
            "quantization": value,
            "extra": value,
        },
    )

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
    @given(record=fields | value)
    def check(record: object) -> None:
        try:
            meta = ModelMetadata.from_props({PROPS_KEY: json.dumps(record)})
        except BackendError:
            return
        assert 16 <= meta.preprocessing.input_size <= 4096 and meta.num_classes >= 1

    check()


# == case 5: train never replaces an earlier run silently =========================================


def test_train_refuses_to_replace_an_earlier_run(tmp_path: Path, data: Path) -> None:
    from edgefer.errors import EdgeferError as OutputError  # utils.outputs.OutputError is one
    from edgefer.training import TrainConfig, train

    run = tmp_path / "run"
    cfg = dict(
        data=str(data),
        model="msff_mobilenetv3",
        out=str(run),
        epochs=1,
        batch_size=7,
        img_size=SIZE,
        workers=0,
        progress=False,
        random_erasing=0.0,
    )
    train(TrainConfig(**cfg))
    before = snapshot(run)
    assert {"last.pt", "best.pt", "config.yaml", "metrics.csv", "summary.json"} <= before.keys()
    with pytest.raises(OutputError, match=r"--resume .*--overwrite"):
        train(TrainConfig(**{**cfg, "model": "resnet18"}))  # another model, same --out
    assert snapshot(run) == before
    proc = edgefer(
        "train",
        "--data",
        data,
        "--arch",
        "resnet18",
        "--out",
        run,
        "--epochs",
        "1",
        "--img-size",
        SIZE,
        "--quiet",
    )
    assert_user_error(proc, "--overwrite")
    assert snapshot(run) == before
    # beside files edgefer did not write (--out . in a project folder): refused even with --overwrite
    project = tmp_path / "project"
    project.mkdir()
    (project / "config.yaml").write_text("the user's own config\n")
    with pytest.raises(OutputError, match="not written by edgefer"):
        train(TrainConfig(**{**cfg, "out": str(project), "overwrite": True}))
    assert (project / "config.yaml").read_text() == "the user's own config\n"
    # --overwrite starts afresh: the earlier run's files are removed first, then rewritten
    (run / "best.pt").unlink()
    (run / "notes.txt").write_text("mine")
    train(TrainConfig(**{**cfg, "overwrite": True}))
    assert (run / "best.pt").exists() and (run / "notes.txt").read_text() == "mine"


# == case 7: outputs never escape --out or collide ================================================


def test_export_name_and_metadata_names_cannot_leave_the_output(tmp_path: Path, onnx_model: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    before = snapshot(tmp_path)
    proc = edgefer(
        "export", "--onnx", onnx_model, "--target", "openvino", "--out", work / "o", "--name", "../../x", "-q", cwd=work
    )
    assert_user_error(proc, "--name")
    assert snapshot(tmp_path) == before and not (work / "o").exists()
    hostile = tiny_onnx(tmp_path / "evil.onnx", props=None)
    import onnx

    from edgefer.metadata import PROPS_KEY

    model = onnx.load(str(hostile))
    for p in model.metadata_props:
        if p.key == PROPS_KEY:
            d = json.loads(p.value)
            d["model_name"] = "../../evil"
            p.value = json.dumps(d)
    onnx.save(model, str(hostile))
    from edgefer.deploy import export
    from edgefer.errors import EdgeferError

    with pytest.raises(EdgeferError, match="model name"):
        export(onnx=hostile, target="onnx", precision="int8", calib_data=tmp_path, out_dir=work / "o2", progress=False)
    assert not list(tmp_path.rglob("evil*int8*")) and not (work / "o2").exists()


def test_predict_keeps_sub_paths_and_refuses_collisions(tmp_path: Path, onnx_model: Path) -> None:
    from edgefer.errors import EdgeferError
    from edgefer.runtime import Predictor
    from edgefer.runtime.images import predict_images

    src = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    for sub in ("a", "b"):
        (src / sub).mkdir(parents=True)
        cv2.imwrite(str(src / sub / "x.png"), rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    out = tmp_path / "out"
    with Predictor(onnx_model, detector="none", aligned=True) as predictor:
        records = predict_images(predictor, [src], out_dir=out)
        assert {Path(r["annotated"]).relative_to(out).as_posix() for r in records} == {"a/x.png", "b/x.png"}
        assert (out / "a" / "x.png").read_bytes() != (out / "b" / "x.png").read_bytes()
        before = snapshot(out)
        with pytest.raises(EdgeferError, match="--overwrite"):
            predict_images(predictor, [src], out_dir=out)  # an earlier run's images: not replaced silently
        assert snapshot(out) == before
        predict_images(predictor, [src], out_dir=out, overwrite=True)
        with pytest.raises(EdgeferError, match="would both be annotated"):
            predict_images(predictor, [src / "a" / "x.png", src / "b" / "x.png"], out_dir=tmp_path / "flat")
    assert not (tmp_path / "flat").exists()


# == case 8: no partial artifacts ==================================================================


def test_quantize_validates_classes_before_any_work_and_stages_its_files(
    tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgefer.errors import QuantizationError
    from edgefer.quantize import quantize

    six = tiny_onnx(tmp_path / "six.onnx", class_names=CLASS_NAMES[:6])
    out = tmp_path / "q"
    with pytest.raises(QuantizationError, match="6 classes"):
        quantize(None, data, target="onnx", method="ptq", onnx_path=six, out_dir=out, calib_size=10, progress=False)
    assert not out.exists()
    # a failure after the INT8 model is saved (here: while scoring it) leaves nothing behind either
    import edgefer.quantize.api as qapi

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("scoring failed")

    seven = tiny_onnx(tmp_path / "seven.onnx")
    monkeypatch.setattr(qapi, "_report", boom)
    with pytest.raises(RuntimeError, match="scoring failed"):
        quantize(None, data, target="onnx", method="ptq", onnx_path=seven, out_dir=out, calib_size=10, progress=False)
    assert not out.exists()
    monkeypatch.undo()
    res = quantize(None, data, target="onnx", method="ptq", onnx_path=seven, out_dir=out, calib_size=10, progress=False)
    assert res.artifact.exists() and res.report_path.exists() and res.artifact.parent == out
    assert not [p for p in out.iterdir() if p.name.startswith(".edgefer-stage")]


def test_export_removes_the_staging_folder_a_killed_export_left(tmp_path: Path, onnx_model: Path) -> None:
    out = tmp_path / "export"
    legacy = out / ".edgefer-export-k3j4h5x"  # what kill -9 left before staging folders carried the pid
    legacy.mkdir(parents=True)
    (legacy / "model.onnx").write_bytes(b"\0" * 1_000_000)
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = out / f".edgefer-stage-export-pid{int(proc.stdout)}-0a1b"
    dead.mkdir()
    done = edgefer("export", "--onnx", onnx_model, "--target", "openvino", "--out", out, "-q")
    assert done.returncode == 0, done.stderr[-2000:]
    assert not legacy.exists()
    assert {p.name for p in out.iterdir()} == {"tiny_fp32.xml", "tiny_fp32.bin", ".edgefer-manifest.json"}


# == case 10: one-line errors where tracebacks were ================================================


def test_damaged_metadata_and_sidecars_are_one_line_errors(tmp_path: Path) -> None:
    bad = tiny_onnx(tmp_path / "bad.onnx")
    import onnx

    from edgefer.metadata import PROPS_KEY

    model = onnx.load(str(bad))
    for p in model.metadata_props:
        if p.key == PROPS_KEY:
            d = json.loads(p.value)
            d["preprocessing"]["input_size"] = "abc"
            p.value = json.dumps(d)
    onnx.save(model, str(bad))
    img = tmp_path / "face.png"
    cv2.imwrite(str(img), np.zeros((40, 40, 3), np.uint8))
    assert_user_error(edgefer("predict", img, "--model", bad, "--aligned"), "metadata")
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"\0" * 64)
    (tmp_path / "model.engine.json").write_text("{not json")
    assert_user_error(edgefer("deepstream", "--model", engine, "--out", tmp_path / "ds"), "not valid JSON")
    assert not (tmp_path / "ds").exists()


def test_run_refuses_an_existing_folder_before_reading_a_frame(tmp_path: Path, onnx_model: Path) -> None:
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (40, 40))
    for _ in range(5):
        writer.write(np.zeros((40, 40, 3), np.uint8))
    writer.release()
    (tmp_path / "annotated.mp4").mkdir()
    before = snapshot(tmp_path)
    proc = edgefer(
        "run", "--model", onnx_model, "--source", video, "--out", tmp_path / "annotated.mp4", "--aligned", "-q"
    )
    assert_user_error(proc, "is a folder")
    assert "frames processed" not in proc.stdout and snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["benchmark", "{onnx}", "--data", "{data}", "--max-images", "-3"], "--max-images"),
        (["run", "--model", "{onnx}", "--source", "0", "--max-frames", "-1"], "--max-frames"),
        (["data", "synth", "--out", "{tmp}/s", "--img-size", "100000"], "image_size"),
        (["export", "--onnx", "{onnx}", "--batch", "0", "--out", "{tmp}/e"], "--batch"),
        (["quantize", "--onnx", "{onnx}", "--data", "{data}", "--val-size", "-1", "--out", "{tmp}/q"], "val_size"),
    ],
)
def test_bad_numbers_are_errors(args: list[str], needle: str, tmp_path: Path, onnx_model: Path, data: Path):
    from edgefer.errors import EdgeferError

    filled = [a.format(onnx=onnx_model, data=data, tmp=tmp_path) for a in args]
    code, out, exc = _cli(filled)
    assert isinstance(exc, EdgeferError) and needle in str(exc), (code, out, exc)
    assert not any(tmp_path.iterdir())


def test_evaluate_batch_size_zero_is_a_one_line_error(tmp_path: Path, checkpoint: Path, data: Path) -> None:
    assert_user_error(edgefer("evaluate", "--checkpoint", checkpoint, "--data", data, "--batch", "0"), "batch size")


# == the CLI corpus ================================================================================


class _Payload:
    """A pickle that runs a shell command when unpickled: what a hostile .pt file carries."""

    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, onnx_model: Path, checkpoint: Path) -> Path:
    """A workspace of bad inputs: missing, empty, truncated, wrong type, wrong schema, hostile, partial."""
    import onnx
    import torch

    ws = tmp_path_factory.mktemp("corpus")
    (ws / "empty").mkdir()
    (ws / "empty.onnx").write_bytes(b"")
    (ws / "photo.onnx").write_bytes(cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    plain = onnx.load(str(onnx_model))
    del plain.metadata_props[:]
    onnx.save(plain, str(ws / "plain.onnx"))
    six = tiny_onnx(ws / "six.onnx", class_names=CLASS_NAMES[:6])
    assert six.exists()
    torch.save({"model": _Payload(f"touch {ws / 'pwned'}")}, ws / "evil.pt")
    (ws / "trunc.pt").write_bytes(checkpoint.read_bytes()[:4096])
    np.savez(ws / "ref.npz", ids=np.array(["a"]), labels=np.array([0]))
    (ws / "ref_trunc.npz").write_bytes((ws / "ref.npz").read_bytes()[:40])
    _rafdb_root(ws / "labels_bad", "train_00001.jpg 9\ntest_00001.jpg 1\n")
    _rafdb_root(ws / "partial", "train_00001.jpg 1\ntest_00001.jpg 2\n")  # images listed, none on disk
    (ws / "suite.yaml").write_text("- just\n- a list\n")
    (ws / "hostile_suite.yaml").write_text("models: [../../../etc/passwd]\ndata: ../../nowhere\n")
    cv2.imwrite(str(ws / "face.png"), np.zeros((40, 40, 3), np.uint8))
    return ws


_CORPUS = [
    # (command, what is wrong with the input, expected words in the one-line error)
    (["train", "--data", "{ws}/empty", "--arch", "msff_mobilenetv3", "--out", "{ws}/o"], "no known dataset layout"),
    (["train", "--data", "{ws}/labels_bad", "--arch", "msff_mobilenetv3", "--out", "{ws}/o"], "label"),
    (["train", "--data", "{ws}/partial", "--arch", "nosuchmodel", "--out", "{ws}/o"], ""),
    (["evaluate", "--checkpoint", "{ws}/evil.pt", "--data", "{data}"], "not a readable edgefer checkpoint"),
    (["evaluate", "--checkpoint", "{ws}/trunc.pt", "--data", "{data}"], "not a readable edgefer checkpoint"),
    (["evaluate", "--checkpoint", "{ws}/missing.pt", "--data", "{data}"], "does not exist"),
    (["export", "--checkpoint", "{ws}/evil.pt", "--out", "{ws}/o"], "checkpoint"),
    (["export", "--onnx", "{ws}/photo.onnx", "--target", "openvino", "--out", "{ws}/o"], ""),
    (["export", "--onnx", "{ws}/empty.onnx", "--target", "openvino", "--out", "{ws}/o"], ""),
    (["export", "--onnx", "{ws}/plain.onnx", "--target", "openvino", "--out", "{ws}/o"], "metadata"),
    (["quantize", "--onnx", "{ws}/six.onnx", "--data", "{data}", "--out", "{ws}/o"], "6 classes"),
    (["quantize", "--onnx", "{onnx}", "--data", "{ws}/partial", "--out", "{ws}/o"], ""),
    (["benchmark", "{onnx}", "--data", "{ws}/partial"], ""),
    (["benchmark", "{onnx}", "--data", "{data}", "--reference", "{ws}/ref_trunc.npz"], "reference"),
    (["benchmark", "{onnx}", "--data", "{data}", "--reference", "{ws}/ref.npz"], "reference"),
    (["benchmark", "--suite", "{ws}/suite.yaml"], "mapping"),
    (["benchmark", "--suite", "{ws}/hostile_suite.yaml"], ""),
    (["predict", "{ws}/face.png", "--model", "{ws}/plain.onnx"], "metadata"),
    (["predict", "{ws}/face.png", "--model", "{ws}/photo.onnx"], ""),
    (["run", "--model", "{onnx}", "--source", "{ws}/missing.mp4", "--aligned"], ""),
    (["deepstream", "--model", "{ws}/plain.onnx", "--out", "{ws}/o"], "metadata"),
    (["bundle", "{ws}/photo.onnx", "--out", "{ws}/o"], ""),
    (["data", "info", "{ws}/empty"], "no known dataset layout"),
    (
        ["data", "synth", "--out", "{ws}/labels_bad", "--overwrite", "--n-train", "7", "--n-test", "7"],
        "not written by edgefer",
    ),
    (["pipeline", "--targets", "onnx,coreml", "--out", "{ws}/o"], "coreml"),
]


@pytest.mark.parametrize(("args", "needle"), _CORPUS, ids=[f"{a[0]}-{i}" for i, (a, _) in enumerate(_CORPUS)])
def test_bad_input_is_a_clear_error_and_changes_nothing(
    args: list[str], needle: str, corpus: Path, data: Path, onnx_model: Path
) -> None:
    """In-process (the CLI layer maps EdgeferError to exit 2; the console-script tests check that mapping)."""
    from edgefer.errors import EdgeferError

    before, data_before = snapshot(corpus), snapshot(data)
    filled = [a.format(ws=corpus, data=data, onnx=onnx_model) for a in args]
    code, out, exc = _cli(filled)
    assert isinstance(exc, EdgeferError), (code, out, repr(exc))
    message = str(exc)
    assert needle.lower() in message.lower(), message
    assert snapshot(corpus) == before and snapshot(data) == data_before
    assert not (corpus / "pwned").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["data", "info", "{ws}/empty"],
        ["data", "synth", "--out", "{ws}/labels_bad", "--overwrite"],
        ["models", "--img-size", "0"],
        ["quantize", "--onnx", "{ws}/six.onnx", "--data", "{data}", "--out", "{ws}/o"],
        ["bundle", "{ws}/missing.onnx", "--out", "{ws}/o"],
        ["pipeline", "--targets", "coreml", "--out", "{ws}/o"],
    ],
    ids=lambda a: "-".join(a[:2]) if a[0] == "data" else a[0],
)
def test_console_script_bad_input_exits_2_with_one_line(args: list[str], corpus: Path, data: Path) -> None:
    """Through the installed console script: exit 2, one ``error:`` line, nothing written anywhere.

    With the console-script cases of the numbered tests above (train, evaluate, export, predict,
    run, deepstream, benchmark) every command has one such representative."""
    before = snapshot(corpus.parent)
    proc = edgefer(*[a.format(ws=corpus, data=data) for a in args], cwd=corpus)
    assert_user_error(proc)
    assert snapshot(corpus.parent) == before


# == issue 26, fault 1: bundle --overwrite replaces only what edgefer wrote ========================


def test_bundle_overwrite_replaces_only_the_files_its_manifest_lists(tmp_path: Path, onnx_model: Path) -> None:
    from edgefer.bundle import BundleError, make_bundle, open_bundle

    report = tmp_path / "report"
    report.mkdir()
    (report / "report.json").write_text(json.dumps({"kind": "edgefer-benchmark", "gate": None, "rows": []}))
    (report / "report.md").write_text("# report\n")
    out = make_bundle([onnx_model], tmp_path / "bundle", report=report)
    make_bundle([onnx_model], out, report=report, overwrite=True)  # only edgefer's files there: replaced
    assert open_bundle(out).verify()

    # an application folder with a copied bundle in it, and a bundle the user added notes to
    app = tmp_path / "app"
    make_bundle([onnx_model], app)
    (app / "src").mkdir()
    (app / "src" / "main.py").write_text("print('my app')")
    (app / "photos").mkdir()
    (app / "README.md").write_text("mine")
    (out / "NOTES.txt").write_text("my notes")
    (out / "calib_photos").mkdir()
    edited = tmp_path / "edited"
    make_bundle([onnx_model], edited)
    (edited / "tiny.onnx").write_bytes(b"the user's own model now")
    for folder, named in ((app, "src/main.py"), (out, "NOTES.txt"), (out, "calib_photos/"), (edited, "changed")):
        before = snapshot(folder)
        with pytest.raises(BundleError, match="refusing to replace") as exc:
            make_bundle([onnx_model], folder, report=report, overwrite=True)
        assert named in str(exc.value)
        assert snapshot(folder) == before and (folder / "calib_photos").exists() == (folder == out)
    proc = edgefer("bundle", onnx_model, "--out", app, "--overwrite")
    assert "README.md" in assert_user_error(proc, "refusing to replace")
    assert (app / "src" / "main.py").read_text() == "print('my app')"


# == issue 26, fault 2 and the memory bound: a typo never takes all memory =======================

#: address space a command under test may use (RLIMIT_AS, in a subprocess). Importing numpy,
#: OpenCV, ONNX Runtime and OpenVINO maps ~0.55 GB; torch alone maps ~3 GB, so torch commands
#: get more. A command that allocated what its option asked for would fail far beyond these.
AS_BUDGET = 2 * 1024**3
AS_BUDGET_TORCH = 5 * 1024**3


def _rlimits(as_bytes: int | None = None, fsize: int | None = None):
    """A ``preexec_fn`` setting the address-space and file-size limits of the child only."""

    def apply() -> None:
        import resource

        if as_bytes is not None:
            resource.setrlimit(resource.RLIMIT_AS, (as_bytes, as_bytes))
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return apply


def limited(
    *args: str | os.PathLike, as_bytes: int | None = None, fsize: int | None = None, timeout: int = 180
) -> subprocess.CompletedProcess:
    """The console script (like :func:`edgefer`) under RLIMIT_AS / RLIMIT_FSIZE."""
    exe = Path(sys.executable).with_name("edgefer")
    env = {k: v for k, v in os.environ.items() if k != "EDGEFER_DEBUG"}
    env.update(COLUMNS="200", OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    return subprocess.run(
        [str(exe), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        preexec_fn=_rlimits(as_bytes, fsize),
    )


def _python_limited(code: str, as_bytes: int, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        preexec_fn=_rlimits(as_bytes),
    )


def test_predict_margin_is_bounded_and_the_largest_margin_fits(tmp_path: Path, onnx_model: Path) -> None:
    from edgefer.utils.limits import MAX_MARGIN

    face = tmp_path / "face.png"
    cv2.imwrite(str(face), np.zeros((40, 40, 3), np.uint8))
    for margin in ("1000", "nan", "-0.1"):
        proc = limited("predict", face, "--model", onnx_model, "--margin", margin, as_bytes=AS_BUDGET)
        assert_user_error(proc, "--margin")
    # the largest margin, a face box filling a 4000 x 3000 frame: a 48 MB crop, within the budget
    code = f"""
import numpy as np
from edgefer.runtime import Predictor
from edgefer.runtime.detect import Detection
class Whole:
    name = "whole"
    def detect(self, frame):
        return [Detection(box=(1, 1, frame.shape[1] - 2, frame.shape[0] - 2), score=1.0)]
with Predictor({str(onnx_model)!r}, detector=Whole(), margin={MAX_MARGIN}) as p:
    res = p.predict(np.full((3000, 4000, 3), 128, np.uint8))
assert len(res.faces) == 1 and res.error is None, res
print("ok", p.crop(np.zeros((3000, 4000, 3), np.uint8), Detection(box=(0, 0, 4000, 3000), score=1.0)).shape)
"""
    proc = _python_limited(code, AS_BUDGET)
    assert proc.returncode == 0 and "ok (8000, 8000, 3)" in proc.stdout, proc.stderr[-2000:]


def _conv_onnx(path: Path, channels: int, size: int) -> Path:
    """An FP32 edgefer-style ONNX whose one hidden tensor is large: a 1x1 Conv to ``channels``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgefer.metadata import ModelMetadata, set_onnx_metadata
    from edgefer.preprocess import Preprocessing

    rng = np.random.default_rng(2)
    k = len(CLASS_NAMES)
    inits = [
        numpy_helper.from_array(rng.normal(size=(channels, 3, 1, 1)).astype(np.float32), "CW"),
        numpy_helper.from_array(rng.normal(size=(channels, k)).astype(np.float32), "W"),
        numpy_helper.from_array(np.zeros(k, np.float32), "B"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "CW"], ["wide"], name="conv"),
        helper.make_node("GlobalAveragePool", ["wide"], ["pooled"], name="pool"),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1, name="flat"),
        helper.make_node("Gemm", ["flat", "W", "B"], ["logits"], name="fc"),
    ]
    graph = helper.make_graph(
        nodes,
        "wide",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", k])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = ModelMetadata(model_name="wide", class_names=CLASS_NAMES, preprocessing=Preprocessing(input_size=size))
    set_onnx_metadata(model, meta)
    onnx.save(model, str(path))
    return path


def _as_int8_of(fp32: Path, dst: Path, source: Path | None = None, **changes) -> Path:
    """A copy of ``fp32`` whose metadata says it is the INT8 model quantized from ``source``."""
    import onnx

    from edgefer.metadata import read_metadata, set_onnx_metadata
    from edgefer.utils.io import sha256_file

    model = onnx.load(str(fp32))
    changes = {"precision": "int8", "source_onnx_sha256": sha256_file(source or fp32), **changes}
    set_onnx_metadata(model, read_metadata(fp32).replace(**changes))
    onnx.save(model, str(dst))
    return dst


def test_debug_samples_are_bounded_and_refused_before_the_activations_are_held(tmp_path: Path) -> None:
    from edgefer.utils.limits import MAX_DEBUG_SAMPLES

    data = make_folders(tmp_path / "data", n_per_class=20, splits=("test",))
    fp32 = _conv_onnx(tmp_path / "wide.onnx", channels=2048, size=64)  # 32 MiB of activations per image
    int8 = _as_int8_of(fp32, tmp_path / "wide_int8.onnx")
    out = tmp_path / "debug"
    proc = limited("debug", fp32, int8, "--data", data, "--out", out, "--samples", MAX_DEBUG_SAMPLES + 1)
    assert_user_error(proc, "at most")
    # the largest allowed sample: all 140 images would hold ~18 GiB; refused after a one-image probe,
    # naming a sample that fits what the address-space limit leaves
    proc = limited(
        "debug", fp32, int8, "--data", data, "--out", out, "--samples", MAX_DEBUG_SAMPLES, as_bytes=AS_BUDGET
    )
    message = assert_user_error(proc, "GiB of activations")
    fit = re.search(r"--samples (\d+) or fewer", message)
    assert fit and 0 < int(fit.group(1)) * 128 * 2**20 < AS_BUDGET and not out.exists(), message


def test_the_memory_budget_stays_within_the_address_space_limit() -> None:
    code = "from edgefer.utils.limits import _mapped_bytes, memory_budget; print(memory_budget(1.0), _mapped_bytes())"
    proc = _python_limited(code, AS_BUDGET)
    budget, mapped = map(int, proc.stdout.split())
    assert 0 < budget <= AS_BUDGET - mapped + 2**20, proc.stderr


def _clip(path: Path, frames: int = 12, size: tuple[int, int] = (64, 48)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    rng = np.random.default_rng(3)
    for _ in range(frames):
        writer.write(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    writer.release()
    return path


#: every size-like option: (command with {onnx} {ckpt} {data} {tmp} {video}, option, its largest value).
#: Over the largest value each is refused before any work; at it, those marked ``run`` are run
#: under the address-space budget (the others are refused values only: they cost a training run).
_SIZES = [
    (["benchmark", "{onnx}", "--data", "{data}", *QUICK_BENCH], "--batch", "MAX_BATCH", True),
    (
        ["evaluate", "--checkpoint", "{ckpt}", "--data", "{data}", "--out", "{tmp}/ev"],
        "--batch",
        "MAX_BATCH",
        True,
    ),
    (["run", "--model", "{onnx}", "--source", "{video}", "--aligned", "-q"], "--queue-size", "MAX_QUEUE", True),
    (["export", "--onnx", "{onnx}", "--target", "openvino", "--out", "{tmp}/ex"], "--max-batch", "MAX_BATCH", False),
    (["export", "--onnx", "{onnx}", "--target", "trt", "--out", "{tmp}/ex"], "--batch", "MAX_BATCH", False),
    (["deepstream", "--model", "{onnx}", "--out", "{tmp}/ds"], "--batch", "MAX_BATCH", True),
    (
        ["train", "--data", "{data}", "--arch", "msff_mobilenetv3", "--out", "{tmp}/t"],
        "--batch",
        "MAX_BATCH",
        False,
    ),
    (
        ["train", "--data", "{data}", "--arch", "msff_mobilenetv3", "--out", "{tmp}/t"],
        "--img-size",
        "MAX_IMG_SIZE",
        False,
    ),
    (
        ["quantize", "--checkpoint", "{ckpt}", "--data", "{data}", "--out", "{tmp}/q"],
        "--img-size",
        "MAX_IMG_SIZE",
        False,
    ),
    (["models"], "--img-size", "MAX_IMG_SIZE", False),
    (["data", "synth", "--out", "{tmp}/s", "--n-train", "7", "--n-test", "7"], "--img-size", "MAX_IMG_SIZE", False),
    (["predict", "{tmp}/face.png", "--model", "{onnx}"], "--margin", "MAX_MARGIN", True),
    (["predict", "{tmp}/face.png", "--model", "{onnx}", "--aligned"], "--threads", "MAX_THREADS", True),
]


@pytest.mark.parametrize(("args", "option", "bound", "run"), _SIZES, ids=[f"{a[0]}{o}" for a, o, _, _ in _SIZES])
def test_every_size_like_option_is_bounded_and_its_largest_value_fits_in_memory(
    args: list[str], option: str, bound: str, run: bool, tmp_path: Path, onnx_model: Path, checkpoint: Path, data: Path
) -> None:
    from edgefer.errors import EdgeferError
    from edgefer.utils import limits

    most = getattr(limits, bound)
    cv2.imwrite(str(tmp_path / "face.png"), np.zeros((40, 40, 3), np.uint8))
    fill = dict(onnx=onnx_model, ckpt=checkpoint, data=data, tmp=tmp_path, video=_clip(tmp_path / "clip.avi"))
    filled = [a.format(**fill) for a in args]
    over = most + 1 if isinstance(most, int) else most * 10
    before = snapshot(tmp_path)
    code, out, exc = _cli([*filled, option, str(over)])
    assert isinstance(exc, EdgeferError) and str(over) in str(exc), (code, out, exc)
    assert snapshot(tmp_path) == before  # refused before any work
    if run:
        torch_cmd = args[0] == "evaluate"
        proc = limited(*filled, option, most, as_bytes=AS_BUDGET_TORCH if torch_cmd else AS_BUDGET)
        assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])


# == issue 26, fault 3: debug refuses an FP32 / INT8 pair that is not one model ==================


def test_debug_refuses_an_int8_model_quantized_from_another_onnx(tmp_path: Path, onnx_model: Path, data: Path) -> None:
    from edgefer.errors import QuantizationError
    from edgefer.quantize.debug import debug_int8

    other = _conv_onnx(tmp_path / "other.onnx", channels=4, size=SIZE)  # other weights and architecture
    cases = [
        (_as_int8_of(onnx_model, tmp_path / "from_other.onnx", source=other), "quantized from another FP32 ONNX"),
        (_as_int8_of(other, tmp_path / "other_arch.onnx"), "not the FP32 model"),
        (_as_int8_of(onnx_model, tmp_path / "unknown.onnx", source_onnx_sha256=""), "does not record"),
    ]
    out = tmp_path / "debug"
    for int8, needle in cases:
        with pytest.raises(QuantizationError, match=needle):
            debug_int8(onnx_model, int8, data, out_dir=out, samples=7)
        proc = edgefer("debug", onnx_model, int8, "--data", data, "--out", out, "--samples", "7")
        assert_user_error(proc, needle)
        assert not out.exists()
    # the pair quantize made passes the check (this stand-in then fails as "not a Q/DQ INT8 ONNX")
    with pytest.raises(QuantizationError, match="no QuantizeLinear"):
        debug_int8(onnx_model, _as_int8_of(onnx_model, tmp_path / "own.onnx"), data, out_dir=out, samples=7)


# == issue 26, fault 4: resuming a finished run keeps its record ==================================


def test_resume_refuses_contradicting_options_and_a_finished_run_stays_as_it_was(tmp_path: Path, data: Path) -> None:
    from edgefer.errors import CheckpointError
    from edgefer.training import TrainConfig, train

    run = tmp_path / "run"
    cfg = dict(
        data=str(data), model="msff_mobilenetv3", out=str(run), epochs=1, batch_size=7, img_size=SIZE,
        workers=0, progress=False,
    )  # fmt: skip
    train(TrainConfig(**cfg))
    before = snapshot(run)
    other_data = make_folders(tmp_path / "other_data", seed=1)
    for change, needle in (({"img_size": 48}, "img_size 32 -> 48"), ({"data": str(other_data)}, "data")):
        with pytest.raises(CheckpointError, match=needle):
            train(TrainConfig(**{**cfg, **change, "resume": str(run)}))
        assert snapshot(run) == before
    proc = edgefer("train", "--resume", run, "--img-size", "48", "--quiet")
    assert "img_size 32 -> 48" in assert_user_error(proc, "cannot resume")
    assert snapshot(run) == before
    # the same settings: a finished run reports itself and rewrites nothing (config.yaml, summary.json)
    again = train(TrainConfig(**{**cfg, "resume": str(run)}))
    assert len(again.history) == 1 and snapshot(run) == before
    proc = edgefer("train", "--resume", run, "--workers", "1", "--quiet")  # how it runs may change
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert snapshot(run) == before


# == issue 26, fault 5: exit codes that show failure ================================================


def test_predict_with_nothing_predicted_is_not_success(tmp_path: Path, onnx_model: Path) -> None:
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "notes.txt").write_text("not an image")
    assert_user_error(edgefer("predict", empty, "--model", onnx_model), "no image files")
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("a.png", "b.jpg"):
        corrupt(broken / name)
    proc = edgefer("predict", broken, "--model", onnx_model, "--out", tmp_path / "ann")
    assert_user_error(proc, "none of the 2 images could be read")
    assert "annotated in" not in proc.stderr and not any((tmp_path / "ann").glob("*.png"))
    # inputs that lie inside --out (earlier annotated copies) are said, and all of them is an error
    faces = tmp_path / "faces"
    faces.mkdir()
    cv2.imwrite(str(faces / "x.png"), np.zeros((40, 40, 3), np.uint8))
    assert edgefer("predict", faces, "--model", onnx_model, "--out", faces / "ann", "--aligned").returncode == 0
    proc = edgefer("predict", faces / "ann", "--model", onnx_model, "--out", faces / "ann", "--aligned")
    assert_user_error(proc, "inside --out")
    proc = edgefer("predict", faces, "--model", onnx_model, "--out", faces / "ann", "--aligned", "--overwrite")
    assert proc.returncode == 0 and "1 images inside --out" in proc.stderr, proc.stderr
    # one readable image among unreadable ones: done, and the count says the rest
    corrupt(faces / "y.png")
    proc = edgefer("predict", faces, "--model", onnx_model, "--aligned", "--out", tmp_path / "mixed")
    assert proc.returncode == 0 and "faces, 1 unreadable; annotated in" in proc.stderr, proc.stderr


class _DroppingCamera:
    """A live source that serves ``frames`` frames on its first connection, then is gone for good."""

    def __init__(self, frames: int) -> None:
        self.frames, self.opens = frames, 0

    def __call__(self, source: object) -> _DroppingCamera:
        self.opens += 1
        self.left = self.frames if self.opens == 1 else None
        return self

    def isOpened(self) -> bool:
        return self.left is not None

    def read(self) -> tuple[bool, np.ndarray | None]:
        if not self.left:
            return False, None
        self.left -= 1
        return True, np.zeros((40, 40, 3), np.uint8)

    def get(self, prop_id: int) -> float:
        return 25.0 if prop_id == cv2.CAP_PROP_FPS else 0.0

    def release(self) -> None:
        pass


def test_run_that_lost_its_source_exits_4_and_counts_its_attempts(
    tmp_path: Path, onnx_model: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from _fake_runtime import run_cli

    from edgefer.runtime import stream as stream_mod

    camera = _DroppingCamera(frames=3)
    monkeypatch.setattr(stream_mod, "open_capture", camera)
    summary = tmp_path / "summary.json"
    args = ["run", "--model", str(onnx_model), "--source", "rtsp://cam/stream", "--aligned", "-q", "--no-realtime"]
    rc, err = run_cli([*args, "--reconnect", "2", "--reconnect-delay", "0.001", "--summary-json", str(summary)], capsys)
    assert rc == 4, err
    assert err.strip().splitlines()[-1] == "error: source lost (gave up after 2 reconnect attempts) after 3 frames"
    record = json.loads(summary.read_text())
    assert record["source_lost"] is True and record["reconnects"] == 0 and record["reconnect_attempts"] == 2
    assert record["frames_processed"] == 3
    # a file that ends is success (the entry point returns)
    monkeypatch.undo()
    from edgefer.cli import main

    main(["run", "--model", str(onnx_model), "--source", str(_clip(tmp_path / "c.avi")), "--aligned", "-q"])


# == issue 26, fault 6: disk full, unwritable outputs and bad detector files are messages ==========


def test_bad_detector_files_and_an_unwritable_summary_are_refused_before_any_frame(
    tmp_path: Path, onnx_model: Path
) -> None:
    video = _clip(tmp_path / "clip.avi")
    (tmp_path / "notes.xml").write_text("<opencv_storage><x>1</x></opencv_storage>")
    (tmp_path / "garbage.xml").write_bytes(b"\x00\x01 not xml at all")
    face = tmp_path / "face.png"
    cv2.imwrite(str(face), np.zeros((64, 64, 3), np.uint8))
    for spec, needle in (
        (f"haar:{tmp_path / 'notes.xml'}", "not a Haar cascade"),
        (f"haar:{tmp_path / 'garbage.xml'}", "not a Haar cascade"),
        (f"yunet:{onnx_model}", "not YuNet"),  # an ONNX, but not a face detector
    ):
        assert_user_error(edgefer("predict", face, "--model", onnx_model, "--detector", spec), needle)
        proc = edgefer("run", "--model", onnx_model, "--source", video, "--detector", spec)
        assert_user_error(proc, needle)
        assert "frames processed" not in proc.stdout
    # a read-only place for --summary-json (as root too: sysfs takes no new files) is refused up front
    readonly = Path("/sys/edgefer-summary.json")
    if not Path("/sys").is_dir():
        pytest.skip("no /sys to stand for a read-only folder")
    proc = edgefer("run", "--model", onnx_model, "--source", video, "--aligned", "--summary-json", readonly)
    assert_user_error(proc, "not writable")
    assert "frames processed" not in proc.stdout


#: (command, file-size limit in bytes): each writes a file larger than its limit
_DISK_FULL = [
    (["export", "--onnx", "{onnx}", "--target", "openvino", "--out", "{out}"], 600),
    (
        [
            "quantize",
            "--onnx",
            "{onnx}",
            "--data",
            "{data}",
            "--target",
            "openvino",
            "--method",
            "ptq",  # the write is what is tested: accuracy control's search would only cost time
            "--calib-size",
            "14",
            "--out",
            "{out}",
        ],
        1000,
    ),
    (["evaluate", "--checkpoint", "{ckpt}", "--data", "{data}", "--out", "{out}"], 2000),
    (["bundle", "{onnx}", "--out", "{out}"], 600),
]


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every entry below ``root``, hidden ones included (files with their bytes, folders as None)."""
    return {p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize(("args", "limit"), _DISK_FULL, ids=[a[0] for a, _ in _DISK_FULL])
def test_a_full_disk_is_one_line_and_leaves_the_earlier_output_intact(
    args: list[str], limit: int, tmp_path: Path, onnx_model: Path, checkpoint: Path, data: Path
) -> None:
    out = tmp_path / "out"
    filled = [a.format(onnx=onnx_model, ckpt=checkpoint, data=data, out=out) for a in args]
    first = limited(*filled)  # the earlier output, written with room to spare
    assert first.returncode == 0, first.stderr[-2000:]
    before = _tree(tmp_path)
    proc = limited(*filled, "--overwrite", fsize=limit)  # RLIMIT_FSIZE: writes past it fail with EFBIG
    assert proc.returncode in (1, 2)
    assert_user_error(proc, "cannot write")
    assert _tree(tmp_path) == before  # no half-written file or staging folder; the earlier output intact


def test_run_on_a_full_disk_keeps_the_frames_it_finished(tmp_path: Path, onnx_model: Path) -> None:
    video = _clip(tmp_path / "clip.avi", frames=40, size=(160, 120))
    earlier = tmp_path / "earlier.jsonl"
    earlier.write_text("an earlier file in the same folder\n")
    out, events, summary = tmp_path / "annotated.mp4", tmp_path / "events.jsonl", tmp_path / "summary.json"
    args = ["run", "--model", onnx_model, "--source", video, "--aligned", "-q", "--out", out, "--jsonl", events]
    # the video needs more than 20 kB, 40 event lines less: the video fails, every frame is kept as an event
    proc = limited(*args, "--summary-json", summary, fsize=20_000)
    assert_user_error(proc, "could not be written completely")
    assert not out.exists() and not list(tmp_path.glob(".annotated*"))  # no video cut short
    lines = events.read_text().splitlines()
    assert len(lines) == 40 and all(json.loads(line)["frame"] == k for k, line in enumerate(lines))
    assert json.loads(summary.read_text())["output_error"].startswith("the annotated video")
    assert earlier.read_text() == "an earlier file in the same folder\n"
    # the events file itself runs out: the run stops there, keeping every whole line
    proc = limited(*args[:-4], "--jsonl", tmp_path / "short.jsonl", fsize=3000)
    assert_user_error(proc, "cannot write")
    short = (tmp_path / "short.jsonl").read_text()
    assert short.endswith("\n") and 1 <= len(short.splitlines()) < 40
    assert all(json.loads(line) for line in short.splitlines())
