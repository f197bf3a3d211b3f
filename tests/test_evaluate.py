"""``evaluate``: metrics equal a hand computation, files written, TTA, bad checkpoints, the CLI."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edgefer.errors import CheckpointError
from edgefer.labels import CLASS_NAMES
from edgefer.preprocess import Preprocessing, preprocess_image
from edgefer.training import evaluate
from edgefer.training.checkpoint import build_model, load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def evaluated(tiny_checkpoint, synth_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    return evaluate(tiny_checkpoint, synth_data, split="test", out=out), out


def _hand_predictions(checkpoint: Path, data: Path) -> tuple[np.ndarray, np.ndarray]:
    """Predictions computed without the evaluation module: one image at a time, plain loops."""
    from edgefer.data import open_dataset

    ckpt = load_checkpoint(checkpoint)
    model = build_model(ckpt)
    pp = Preprocessing.from_dict(ckpt["preprocessing"])
    reader = open_dataset(str(data), "test")
    labels, preds = [], []
    with torch.no_grad():
        for i in range(len(reader)):
            s = reader[i]
            x = torch.from_numpy(preprocess_image(s.image, pp))[None]
            preds.append(int(model(x).argmax(1)))
            labels.append(s.label)
    return np.array(labels), np.array(preds)


def test_metrics_equal_hand_computed_confusion_matrix(evaluated, tiny_checkpoint, synth_data):
    result, _ = evaluated
    labels, preds = _hand_predictions(tiny_checkpoint, synth_data)
    np.testing.assert_array_equal(result.labels, labels)
    np.testing.assert_array_equal(result.preds, preds)
    k = len(CLASS_NAMES)
    cm = [[0] * k for _ in range(k)]
    for t, p in zip(labels, preds, strict=True):
        cm[t][p] += 1
    rep = result.report
    assert rep.confusion.tolist() == cm
    correct = sum(cm[i][i] for i in range(k))
    assert rep.accuracy == pytest.approx(correct / len(labels))
    recalls = [cm[i][i] / sum(cm[i]) for i in range(k) if sum(cm[i]) > 0]
    assert rep.mean_class_accuracy == pytest.approx(sum(recalls) / len(recalls))
    for i in range(k):
        col = sum(cm[j][i] for j in range(k))
        if col:
            assert rep.precision[i] == pytest.approx(cm[i][i] / col)
        if sum(cm[i]):
            assert rep.recall[i] == pytest.approx(cm[i][i] / sum(cm[i]))
    assert rep.support.tolist() == [sum(row) for row in cm]


def test_evaluation_files(evaluated):
    result, out = evaluated
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(result.report.accuracy)
    assert metrics["mean_class_accuracy"] == pytest.approx(result.report.mean_class_accuracy)
    assert set(metrics["per_class"]) == set(CLASS_NAMES)
    assert metrics["split"] == "test" and metrics["num_images"] == len(result.labels)
    cm = json.loads((out / "confusion_matrix.json").read_text())
    assert cm["matrix"] == result.report.confusion.tolist() and cm["class_names"] == list(CLASS_NAMES)
    assert (out / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert len(rows) == len(result.labels)
    assert [r["pred"] for r in rows[:5]] == [CLASS_NAMES[p] for p in result.preds[:5]]


def test_fixed_prediction_set_written_as_given(tmp_path):
    """A fixed label/prediction set: the written report holds exactly the hand-made matrix."""
    from edgefer.metrics import classification_report
    from edgefer.training.evaluation import EvalResult, write_eval_outputs

    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])
    preds = np.array([0, 1, 0, 1, 1, 2, 0, 2, 3, 3])
    names = ("a", "b", "c", "d")
    expected = [[2, 1, 0, 0], [0, 2, 0, 0], [1, 0, 2, 1], [0, 0, 0, 1]]
    logits = np.eye(4, dtype=np.float32)[preds]
    res = EvalResult(classification_report(labels, preds, names), logits, labels, preds,
                     [f"img{i}" for i in range(10)], "ckpt.pt", "test", False)  # fmt: skip
    write_eval_outputs(res, tmp_path)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["confusion_matrix"] == expected
    assert saved["accuracy"] == pytest.approx(7 / 10)
    assert saved["mean_class_accuracy"] == pytest.approx((2 / 3 + 1 + 2 / 4 + 1) / 4)
    assert saved["per_class"]["a"]["precision"] == pytest.approx(2 / 3)
    assert saved["per_class"]["d"]["f1"] == pytest.approx(2 * 0.5 * 1 / 1.5)


def test_flip_tta_averages_softmax_of_mirror(tiny_checkpoint, synth_data):
    from edgefer.data import open_dataset
    from edgefer.training import predict_logits

    ckpt = load_checkpoint(tiny_checkpoint)
    model = build_model(ckpt)
    pp = Preprocessing.from_dict(ckpt["preprocessing"])
    reader = open_dataset(str(synth_data), "test")
    images = [reader[i].image for i in range(4)]
    tta = predict_logits(model, images, pp, flip_tta=True)
    with torch.no_grad():
        x = torch.from_numpy(np.stack([preprocess_image(im, pp) for im in images]))
        xm = torch.from_numpy(np.stack([preprocess_image(np.ascontiguousarray(im[:, ::-1]), pp) for im in images]))
        p = (model(x).softmax(1) + model(xm).softmax(1)) / 2
    np.testing.assert_allclose(np.exp(tta), p.numpy(), atol=1e-5)


# ------------------------------------------------------------------ bad checkpoints


def _small_checkpoint(path: Path, num_classes: int = 7, name: str = "resnet18") -> Path:
    from edgefer.models import create_model

    model = create_model("resnet18", num_classes=num_classes)
    return save_checkpoint(path, model=model, model_name=name, model_args={}, class_names=CLASS_NAMES[:num_classes],
                           preprocessing=Preprocessing(input_size=32))  # fmt: skip


def test_truncated_checkpoint_is_a_clear_error(tiny_checkpoint, synth_data, tmp_path):
    bad = tmp_path / "truncated.pt"
    data = Path(tiny_checkpoint).read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable edgefer checkpoint"):
        evaluate(bad, synth_data)
    (tmp_path / "junk.pt").write_text("hello")
    with pytest.raises(CheckpointError):
        evaluate(tmp_path / "junk.pt", synth_data)
    with pytest.raises(CheckpointError, match="does not exist"):
        evaluate(tmp_path / "missing.pt", synth_data)


def test_wrong_class_count_is_a_clear_error(synth_data, tmp_path):
    ckpt = _small_checkpoint(tmp_path / "five.pt", num_classes=5)
    with pytest.raises(CheckpointError, match="predicts 5 classes"):
        evaluate(ckpt, synth_data)
    with pytest.raises(CheckpointError, match="5 classes but 7 were expected"):
        build_model(ckpt, expect_num_classes=7)
    # Head resized behind the metadata's back: the weights do not fit the declared classes.
    c = torch.load(ckpt, weights_only=True)
    c["class_names"] = list(CLASS_NAMES)
    torch.save(c, tmp_path / "tampered.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        evaluate(tmp_path / "tampered.pt", synth_data)


def test_wrong_model_name_is_a_clear_error(synth_data, tmp_path):
    ckpt = _small_checkpoint(tmp_path / "named.pt", name="resnet50")  # resnet18 weights labelled resnet50
    with pytest.raises(CheckpointError, match="do not fit model 'resnet50'"):
        evaluate(ckpt, synth_data)
    with pytest.raises(CheckpointError, match="holds model 'resnet50', not 'msff_resnet18'"):
        build_model(ckpt, expect_model="msff_resnet18")


# ------------------------------------------------------------------ CLI


def test_cli_evaluate(tiny_checkpoint, synth_data, tmp_path):
    from typer.testing import CliRunner

    from edgefer.cli import app

    res = CliRunner().invoke(app, ["evaluate", "--checkpoint", str(tiny_checkpoint), "--data", str(synth_data),
                                   "--out", str(tmp_path / "ev"), "--tta-flip", "--quiet"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "mean class accuracy" in res.output and "Happiness" in res.output
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["flip_tta"] is True


def test_cli_bad_checkpoint_exits_2(synth_data, tmp_path):
    code = "from edgefer.cli import main; main()"
    proc = subprocess.run(
        [sys.executable, "-c", code, "evaluate", "--checkpoint", str(tmp_path / "nope.pt"), "--data", str(synth_data)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "does not exist" in proc.stderr and "Traceback" not in proc.stderr
