"""Export: ONNX hub with metadata and parity, reference predictions, OpenVINO IR, FP16 ONNX, INT8
through the quantization API, the CLI, and clear errors with no partial files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import HAS_TRT

from edgefer.deploy import export
from edgefer.errors import CheckpointError, EdgeferError, ExportError, MissingDependencyError
from edgefer.export.onnx import FP32_TOLERANCE, export_onnx, ort_session
from edgefer.metadata import read_metadata
from edgefer.preprocess import preprocess_batch
from edgefer.reference import Reference


@pytest.fixture(scope="module")
def exported(tiny_checkpoint: Path, synth_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """The FP32 ONNX of the tiny checkpoint with its reference predictions on the test split."""
    out = tmp_path_factory.mktemp("export")
    return export(tiny_checkpoint, target="onnx", out_dir=out, reference_data=synth_data, max_batch=16, progress=False)


@pytest.fixture(scope="module")
def test_split(synth_data: Path, exported):
    """The synthetic test split, preprocessed with the ONNX's own metadata."""
    from edgefer.data import open_dataset

    ds = open_dataset(synth_data, "test")
    pp = read_metadata(exported.artifact).preprocessing
    x = preprocess_batch([ds[i].image for i in range(len(ds))], pp)
    return ds, x


def _ort(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort_session(path)
    return np.concatenate([sess.run(["logits"], {"input": x[i : i + 64]})[0] for i in range(0, len(x), 64)])


def test_onnx_export_metadata_and_parity(exported, tiny_checkpoint: Path) -> None:
    import onnx

    from edgefer.training.checkpoint import checkpoint_metadata, load_checkpoint
    from edgefer.utils.io import sha256_file

    res = exported
    assert res.artifact.suffix == ".onnx" and res.artifact.exists()
    assert 0.0 <= res.parity["onnx_fp32_vs_torch"] <= FP32_TOLERANCE
    proto = onnx.load(str(res.artifact))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version == 17
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["edgefer.model_name"] == "msff_resnet18" and props["edgefer.input_size"] == "64"
    meta = read_metadata(res.artifact)
    ck = checkpoint_metadata(load_checkpoint(tiny_checkpoint))
    assert meta.model_name == ck.model_name and meta.class_names == ck.class_names
    assert meta.preprocessing == ck.preprocessing and meta.precision == "fp32"
    assert meta.source_checkpoint_sha256 == sha256_file(tiny_checkpoint)
    assert meta.extra["dynamic_batch"] is True and meta.extra["max_batch"] == 16
    sess = ort_session(res.artifact)
    for b in (1, 5):  # dynamic batch really works
        assert sess.run(["logits"], {"input": np.zeros((b, 3, 64, 64), np.float32)})[0].shape == (b, 7)
    files = sorted(p.name for p in res.artifact.parent.iterdir())
    assert files == [".edgefer-manifest.json", "msff_resnet18.onnx", "reference.npz"]
    manifest = json.loads((res.artifact.parent / ".edgefer-manifest.json").read_text())
    assert set(manifest["files"]) == {"msff_resnet18.onnx", "reference.npz"}  # what edgefer wrote (output policy)


def test_reference_matches_direct_evaluation(exported, test_split) -> None:
    ds, x = test_split
    ref = Reference.load(exported.reference)
    assert list(ref.ids) == [str(i) for i in ds.ids]
    assert np.array_equal(ref.labels, ds.labels)
    np.testing.assert_allclose(ref.logits, _ort(exported.artifact, x), atol=1e-5)
    assert ref.class_names == read_metadata(exported.artifact).class_names
    assert ref.metadata["dataset"]["split"] == "test" and ref.metadata["dataset"]["format"]
    assert ref.metadata["model_name"] == "msff_resnet18" and len(ref.metadata["artifact"]["sha256"]) == 64
    # the trained model is better than chance on the synthetic split: the logits are real predictions
    assert (ref.predictions == ref.labels).mean() > 1.5 / 7


def test_static_batch_export(tiny_checkpoint: Path, tmp_path: Path) -> None:
    res = export_onnx(tiny_checkpoint, tmp_path, dynamic=False, batch=2)
    dim = __import__("onnx").load(str(res.artifact)).graph.input[0].type.tensor_type.shape.dim[0]
    assert dim.dim_value == 2 and res.metadata.extra["batch"] == 2


@pytest.mark.parametrize(("precision", "tol"), [("fp32", 1e-4), ("fp16", 2e-2)])
def test_openvino_agrees_with_onnx(exported, test_split, tmp_path: Path, precision: str, tol: float) -> None:
    """FP32 IR within 1e-4 x logit scale, FP16 IR within 2e-2 x scale (FP16 weights) and >= 99% top-1
    agreement with the ONNX on the synthetic test split (OpenVINO run with an f32 inference hint)."""
    import openvino as ov

    res = export(onnx=exported.artifact, target="openvino", precision=precision, out_dir=tmp_path, progress=False)
    assert res.artifact.suffix == ".xml" and res.artifact.with_suffix(".bin").exists()
    meta = read_metadata(res.artifact)
    assert meta.precision == precision and meta.model_name == "msff_resnet18"
    assert meta.preprocessing == read_metadata(exported.artifact).preprocessing
    assert res.parity[f"openvino_{precision}_vs_onnx"] >= 0.0
    _, x = test_split
    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(res.artifact)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    got = np.asarray(compiled(x)[compiled.output(0)])
    ref = _ort(exported.artifact, x)
    assert np.abs(got - ref).max() <= tol * max(1.0, np.abs(ref).max())
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.99


def test_fp16_onnx_agrees_on_ort(exported, test_split, tmp_path: Path) -> None:
    import onnx

    res = export(onnx=exported.artifact, target="onnx", precision="fp16", out_dir=tmp_path, progress=False)
    fp16 = res.artifact
    assert read_metadata(fp16).precision == "fp16"
    proto = onnx.load(str(fp16))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # FP32 I/O kept
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer)
    _, x = test_split
    a, b = _ort(exported.artifact, x), _ort(fp16, x)
    assert np.abs(a - b).max() <= 2e-2 * max(1.0, np.abs(a).max())
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.99


def test_trt_onnx_only_prepares_device_files(exported, tmp_path: Path) -> None:
    res = export(
        onnx=exported.artifact,
        target="trt",
        precision="fp16",
        out_dir=tmp_path,
        onnx_only=True,
        device_profile=Path(__file__).resolve().parents[1] / "export/jetson/orin_nx.yaml",
        progress=False,
    )
    assert not res.engine_built and res.artifact.name.endswith("_fp16.onnx") and res.artifact.exists()
    assert any("no TensorRT engine was built" in n for n in res.notes)
    trtexec, edgefer_cmd = res.commands
    assert trtexec.startswith("trtexec ") and "--stronglyTyped" in trtexec and "--maxShapes=input:16x3x64x64" in trtexec
    assert edgefer_cmd.startswith("edgefer export --onnx") and "--target trt" in edgefer_cmd


@pytest.mark.skipif(HAS_TRT, reason="checks the behaviour without tensorrt")
def test_trt_without_tensorrt_is_a_clear_error(exported, tmp_path: Path) -> None:
    out = tmp_path / "o"
    with pytest.raises(MissingDependencyError, match=r"tensorrt.*--onnx-only"):
        export(onnx=exported.artifact, target="trt", precision="fp16", out_dir=out, progress=False)
    assert not out.exists()  # checked before any work


def test_int8_through_quantization_api(exported, synth_data: Path, tmp_path: Path) -> None:
    res = export(
        onnx=exported.artifact,
        target="onnx",
        precision="int8",
        calib_data=synth_data,
        calib_size=32,
        out_dir=tmp_path,
        progress=False,
    )
    meta = read_metadata(res.artifact)
    assert meta.precision == "int8" and meta.quantization.get("format") == "onnx-qdq"
    ops = {n.op_type for n in __import__("onnx").load(str(res.artifact)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".edgefer-stage")]  # no scratch left
    # export's INT8 is plain PTQ (it takes no budget), and it says so, naming the command that holds one
    assert meta.quantization["method"] == "ptq"
    assert any("plain PTQ" in n and "edgefer quantize" in n for n in res.notes), res.notes


def test_bad_inputs_are_clear_errors(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(CheckpointError, match="does not exist"):
        export(tmp_path / "missing.pt", out_dir=out)
    with pytest.raises(ExportError, match="unknown target"):
        export(tiny_checkpoint, target="tflite", out_dir=out)
    with pytest.raises(ExportError, match="unknown precision"):
        export(tiny_checkpoint, precision="int4", out_dir=out)
    with pytest.raises(ExportError, match="needs calibration data"):
        export(tiny_checkpoint, target="openvino", precision="int8", out_dir=out)
    assert not out.exists()
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(EdgeferError, match="cannot create output directory"):
        export(tiny_checkpoint, out_dir=blocker / "sub", progress=False)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        export(bad, out_dir=out, progress=False)
    assert not out.exists() or not any(out.iterdir())


def test_failed_parity_leaves_no_files(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="parity check failed"):
        export_onnx(tiny_checkpoint, tmp_path, tolerance=-1.0)  # an impossible tolerance forces the failure path
    assert list(tmp_path.iterdir()) == []


def test_cli_export(exported, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from edgefer.cli import app

    runner = CliRunner()
    r = runner.invoke(
        app,
        [
            "export",
            "--onnx",
            str(exported.artifact),
            "--target",
            "trt",
            "--precision",
            "fp16",
            "--print-trtexec",
            "--trt-version",
            "8.6",
            "--out",
            str(tmp_path),
            "-q",
        ],
    )
    if HAS_TRT:
        pytest.skip("tensorrt installed: --print-trtexec builds instead")
    assert r.exit_code == 0, r.output
    assert "no TensorRT engine was built" in r.output
    assert "trtexec --onnx=" in r.output and "--fp16" in r.output  # TensorRT 8.6: FP16 flag
    r = runner.invoke(app, ["export", "--onnx", str(exported.artifact), "--target", "bogus", "--out", str(tmp_path)])
    assert isinstance(r.exception, ExportError)
