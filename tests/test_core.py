"""Contracts shared by every stage: metadata, reference file, atomic IO, checkpoints, metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgefer.errors import BackendError, CheckpointError, EdgeferError
from edgefer.labels import CLASS_NAMES
from edgefer.metadata import ModelMetadata, read_metadata, sidecar_path
from edgefer.metrics import classification_report, confusion_matrix, log_softmax, softmax
from edgefer.preprocess import Preprocessing
from edgefer.reference import Reference
from edgefer.utils.io import atomic_open, atomic_path, sha256_file, write_json


def test_metadata_props_round_trip() -> None:
    pp = Preprocessing(input_size=100, mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 0.75), color_order="BGR")
    md = ModelMetadata(
        model_name="msff_resnet18",
        preprocessing=pp,
        precision="int8",
        quantization={"method": "ptq"},
        source_checkpoint_sha256="ab" * 32,
    )
    props = md.to_props()
    assert all(isinstance(v, str) for v in props.values())
    assert props["edgefer.input_size"] == "100"
    back = ModelMetadata.from_props(props)
    assert back.to_dict() == md.to_dict()
    assert back.preprocessing == pp


def test_metadata_rejects_foreign_and_newer() -> None:
    with pytest.raises(BackendError, match="not exported by edgefer"):
        ModelMetadata.from_props({"producer": "someone"})
    d = ModelMetadata(model_name="m").to_dict()
    d["schema"] = 99
    with pytest.raises(BackendError, match="newer"):
        ModelMetadata.from_dict(d)


def test_read_metadata_sidecar_and_missing(tmp_path: Path) -> None:
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"\0")
    with pytest.raises(BackendError, match="sidecar"):
        read_metadata(engine)
    write_json(sidecar_path(engine), {"tensorrt": "10.3", "metadata": ModelMetadata(model_name="x").to_dict()})
    assert read_metadata(engine).model_name == "x"
    with pytest.raises(BackendError, match="does not exist"):
        read_metadata(tmp_path / "nope.onnx")


def test_reference_round_trip_and_validation(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    ref = Reference(
        ids=[f"test_{i:04d}" for i in range(5)],
        labels=[0, 1, 2, 3, 4],
        logits=rng.normal(size=(5, 7)),
        class_names=CLASS_NAMES,
        metadata={"model_name": "m"},
    )
    path = ref.save(tmp_path / "reference.npz")
    back = Reference.load(path)
    assert list(back.ids) == list(ref.ids)
    np.testing.assert_array_equal(back.logits, ref.logits.astype(np.float32))
    assert back.metadata == {"model_name": "m"}
    np.testing.assert_array_equal(back.predictions, ref.logits.argmax(1))
    with pytest.raises(EdgeferError, match="classes"):
        Reference(ids=["a"], labels=[0], logits=np.zeros((1, 3)), class_names=CLASS_NAMES)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(EdgeferError, match="not a valid"):
        Reference.load(tmp_path / "bad.npz")


def test_atomic_write_leaves_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError), atomic_open(target) as fh:
        fh.write('{"v": 2, "trunc')
        raise RuntimeError("crash mid-write")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temp file left
    with atomic_path(tmp_path / "blob.bin") as tmp:
        tmp.write_bytes(b"abc")
    assert sha256_file(tmp_path / "blob.bin") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_checkpoint_round_trip_and_errors(tmp_path: Path) -> None:
    import torch

    from edgefer.models import create_model
    from edgefer.training.checkpoint import build_model, checkpoint_metadata, load_checkpoint, save_checkpoint

    model = create_model("resnet18", num_classes=7)
    pp = Preprocessing(input_size=64)
    path = save_checkpoint(
        tmp_path / "c.pt",
        model=model,
        model_name="resnet18",
        model_args={"dropout": 0.0},
        class_names=CLASS_NAMES,
        preprocessing=pp,
        epoch=3,
        metrics={"acc": 0.5},
    )
    ckpt = load_checkpoint(path)
    assert ckpt["epoch"] == 3 and ckpt["metrics"] == {"acc": 0.5}
    rebuilt = build_model(ckpt)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model.eval()(x))
    md = checkpoint_metadata(ckpt, path)
    assert md.preprocessing == pp and md.source_checkpoint_sha256 == sha256_file(path)
    with pytest.raises(CheckpointError, match="not 'resnet50'"):
        build_model(ckpt, expect_model="resnet50")
    with pytest.raises(CheckpointError, match="classes"):
        build_model(ckpt, expect_num_classes=8)
    truncated = tmp_path / "trunc.pt"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(truncated)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    ckpt["class_names"] = list(CLASS_NAMES[:5])  # weights have 7 outputs
    with pytest.raises(CheckpointError, match="do not fit"):
        build_model(ckpt)


def test_metrics_hand_computed() -> None:
    labels = np.array([0, 0, 0, 1, 1, 2])
    preds = np.array([0, 0, 1, 1, 0, 1])  # class 2 is never predicted
    cm = confusion_matrix(labels, preds, 3)
    assert cm.tolist() == [[2, 1, 0], [1, 1, 0], [0, 1, 0]]
    r = classification_report(labels, preds, ("a", "b", "c"))
    assert r.accuracy == pytest.approx(3 / 6)
    assert r.mean_class_accuracy == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert r.precision[0] == pytest.approx(2 / 3) and r.precision[1] == pytest.approx(1 / 3)
    assert np.isnan(r.precision[2]) and r.f1[2] == 0.0
    assert r.to_dict()["per_class"]["c"]["precision"] is None
    with pytest.raises(EdgeferError):
        confusion_matrix([0, 5], [0, 1], 3)
    p = softmax(np.array([[1000.0, 1000.0]]))
    np.testing.assert_allclose(p, [[0.5, 0.5]])


def test_log_softmax_is_the_log_of_softmax_without_underflow() -> None:
    z = np.random.default_rng(0).standard_normal((5, 7)) * 4
    np.testing.assert_allclose(log_softmax(z, axis=1), np.log(softmax(z, axis=1)), rtol=1e-12, atol=1e-12)
    far = log_softmax(np.array([[0.0, -2000.0]]), axis=1)  # softmax rounds the second to 0; log of it is -inf
    assert np.isfinite(far).all() and far[0, 1] == pytest.approx(-2000.0)


def test_cli_user_error_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    code = (
        "import sys; from edgefer.cli import main; from edgefer.errors import DatasetError\n"
        "import typer\n"
        "from edgefer.cli import app\n"
        "@app.command('boom')\n"
        "def boom():\n"
        "    raise DatasetError('expected basic/EmoLabel/list_patition_label.txt')\n"
        "sys.argv = ['edgefer', 'boom']; main()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert "error: expected basic/EmoLabel" in proc.stderr
    assert "Traceback" not in proc.stderr
