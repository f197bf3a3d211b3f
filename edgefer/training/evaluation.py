"""``evaluate(checkpoint, data, split)``: the numbers a FER paper reports, for one checkpoint.

Overall accuracy, mean class accuracy (the mean of per-class recalls; RAF-DB papers report both
because the test set is imbalanced), per-class precision/recall/F1 and the confusion matrix, all
computed by :mod:`edgefer.metrics`. Images go through :func:`edgefer.preprocess.preprocess_batch`
with the checkpoint's own :class:`~edgefer.preprocess.Preprocessing`, exactly like the exported
model will see them. ``flip_tta`` averages the softmax of the image and its mirror image.

With ``out`` it writes ``metrics.json``, ``confusion_matrix.json``, ``confusion_matrix.png`` and
``predictions.csv`` (id, label, prediction, probabilities).
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgefer.errors import CheckpointError
from edgefer.metrics import ClassificationReport, classification_report, softmax
from edgefer.preprocess import Preprocessing, preprocess_batch
from edgefer.training.checkpoint import build_model, load_checkpoint
from edgefer.training.history import plot_confusion_matrix
from edgefer.utils.io import ensure_writable_dir, write_json, write_text


@dataclass
class EvalResult:
    """Predictions and metrics of one checkpoint on one split."""

    report: ClassificationReport
    logits: np.ndarray  # N x K, averaged over the flip when flip_tta (as log-probabilities)
    labels: np.ndarray
    preds: np.ndarray
    ids: list[str]
    checkpoint: str
    split: str
    flip_tta: bool
    out: Path | None = None

    @property
    def accuracy(self) -> float:
        return self.report.accuracy

    @property
    def mean_class_accuracy(self) -> float:
        return self.report.mean_class_accuracy

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "split": self.split,
            "flip_tta": self.flip_tta,
            "num_images": len(self.labels),
            **self.report.to_dict(),
        }


@torch.inference_mode()
def predict_logits(
    model: torch.nn.Module,
    images: Any,
    pp: Preprocessing,
    *,
    batch_size: int = 64,
    flip_tta: bool = False,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> np.ndarray:
    """Logits (N x K) of ``model`` for a sequence of RGB images (or of dataset samples).

    With ``flip_tta`` the result is the log of the mean softmax of the image and its mirror image.
    """
    logits, _ = _predict(model, images, pp, batch_size, flip_tta, device, progress)
    return logits


def _predict(
    model: torch.nn.Module,
    images: Any,
    pp: Preprocessing,
    batch_size: int,
    flip_tta: bool,
    device: str | torch.device,
    progress: bool,
) -> tuple[np.ndarray, list[Any]]:
    """(logits, (id, label) of each sample read when ``images`` is a dataset reader).

    A reader with ``on_error="skip"`` may hand back a replacement sample for an unreadable image,
    so labels and ids are taken from the samples actually read, not from ``reader.labels``.
    """
    from rich.progress import Progress

    n = len(images)
    outs: list[np.ndarray] = []
    items: list[Any] = []
    with torch.inference_mode(), Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task("evaluating", total=n)
        for start in range(0, n, batch_size):
            batch = [images[i] for i in range(start, min(n, start + batch_size))]
            items.extend((b.id, int(b.label)) if hasattr(b, "image") else None for b in batch)
            pixels = [b.image if hasattr(b, "image") else b for b in batch]
            x = torch.from_numpy(preprocess_batch(pixels, pp)).to(device)
            logits = model(x).float()
            if flip_tta:
                p = (logits.softmax(1) + model(torch.flip(x, dims=[3])).float().softmax(1)) / 2
                logits = p.clamp_min(1e-12).log()
            outs.append(logits.cpu().numpy())
            bar.update(task, advance=len(batch))
    if not outs:
        return np.zeros((0, 0), dtype=np.float32), items
    return np.concatenate(outs), items


def evaluate(
    checkpoint: str | os.PathLike,
    data: str | os.PathLike,
    split: str = "test",
    flip_tta: bool = False,
    out: str | os.PathLike | None = None,
    batch_size: int = 64,
    progress: bool = False,
    *,
    device: str = "auto",
    on_error: str = "skip",
) -> EvalResult:
    """Evaluate a checkpoint on a dataset split (see the module docstring)."""
    from edgefer.data import open_dataset

    ckpt = load_checkpoint(checkpoint)
    reader = open_dataset(str(data), split, on_error=on_error)
    ckpt_classes = tuple(ckpt["class_names"])
    data_classes = tuple(reader.class_names)
    if ckpt_classes != data_classes:
        raise CheckpointError(
            f"checkpoint {checkpoint} predicts {len(ckpt_classes)} classes {list(ckpt_classes)} but "
            f"{data} has {len(data_classes)} classes {list(data_classes)}"
        )
    model = build_model(ckpt, expect_num_classes=len(data_classes))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    model.to(dev)
    pp = Preprocessing.from_dict(ckpt["preprocessing"])
    logits, samples = _predict(model, reader, pp, batch_size, flip_tta, dev, progress)
    labels = np.asarray([s[1] for s in samples], dtype=np.int64)
    preds = logits.argmax(1) if len(logits) else np.zeros(0, dtype=np.int64)
    report = classification_report(labels, preds, data_classes)
    result = EvalResult(report, logits, labels, preds, [str(s[0]) for s in samples], str(checkpoint), split, flip_tta)
    if out is not None:
        write_eval_outputs(result, out)
    return result


def write_eval_outputs(result: EvalResult, out: str | os.PathLike) -> Path:
    """Write metrics.json, confusion_matrix.{json,png} and predictions.csv into ``out``."""
    out_dir = ensure_writable_dir(out)
    rep = result.report
    write_json(out_dir / "metrics.json", result.to_dict())
    write_json(
        out_dir / "confusion_matrix.json",
        {
            "class_names": list(rep.class_names),
            "rows": "true class",
            "columns": "predicted class",
            "matrix": rep.confusion.tolist(),
        },
    )
    title = f"{Path(result.checkpoint).name} on {result.split}: "
    title += f"acc {rep.accuracy:.4f}, mean class acc {rep.mean_class_accuracy:.4f}"
    plot_confusion_matrix(out_dir / "confusion_matrix.png", rep.confusion, rep.class_names, title=title)
    probs = softmax(result.logits, axis=1) if len(result.logits) else result.logits
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "label", "pred", *[f"p_{c}" for c in rep.class_names]])
    for i, sid in enumerate(result.ids):
        w.writerow(
            [sid, rep.class_names[result.labels[i]], rep.class_names[result.preds[i]], *[f"{v:.6f}" for v in probs[i]]]
        )
    write_text(out_dir / "predictions.csv", buf.getvalue())
    result.out = out_dir
    return out_dir


def format_report(result: EvalResult) -> str:
    """A plain-text table: overall and mean class accuracy, then per-class precision/recall/F1."""
    rep = result.report
    lines = [
        f"checkpoint  {result.checkpoint}",
        f"split       {result.split} ({len(result.labels)} images){'  flip TTA' if result.flip_tta else ''}",
        f"accuracy             {rep.accuracy:.4f}",
        f"mean class accuracy  {rep.mean_class_accuracy:.4f}",
        f"macro F1             {rep.macro_f1:.4f}",
        "",
        f"{'class':<12}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}",
    ]

    def f(v: float) -> str:
        return "-" if np.isnan(v) else f"{v:.4f}"

    for i, name in enumerate(rep.class_names):
        lines.append(
            f"{name:<12}{f(rep.precision[i]):>10}{f(rep.recall[i]):>10}{f(rep.f1[i]):>10}{int(rep.support[i]):>10}"
        )
    return "\n".join(lines)
