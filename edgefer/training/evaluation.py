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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgefer.errors import CheckpointError, EdgeferError
from edgefer.metrics import ClassificationReport, classification_report, softmax
from edgefer.preprocess import Preprocessing, preprocess_batch
from edgefer.training.checkpoint import build_model, load_checkpoint
from edgefer.training.history import plot_confusion_matrix
from edgefer.utils.io import write_json, write_text
from edgefer.utils.limits import MAX_BATCH, check_at_most
from edgefer.utils.outputs import check_outputs, staged_output


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
    #: unreadable images of the split, left out of every metric (each readable image counts once)
    skipped_ids: list[str] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        return len(self.skipped_ids)

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
            "skipped": self.skipped,
            "skipped_ids": list(self.skipped_ids),
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

    A dataset reader is walked with :func:`edgefer.data.base.iter_readable`: every readable image
    once, unreadable ones skipped (and counted by the reader), never replaced by a neighbour, so
    no image is scored twice. A plain sequence of arrays is scored as given.
    """
    from rich.progress import Progress

    from edgefer.data.base import batched, iter_readable

    if batch_size < 1:
        raise EdgeferError(f"batch size must be >= 1, got {batch_size}")
    check_at_most("batch size", batch_size, MAX_BATCH, EdgeferError)
    n = len(images)
    is_dataset = hasattr(images, "iter_readable") or (n > 0 and hasattr(images[0], "image"))
    stream = (s for _, s in iter_readable(images)) if is_dataset else iter(images)
    outs: list[np.ndarray] = []
    items: list[Any] = []
    with torch.inference_mode(), Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task("evaluating", total=n)
        for batch in batched(stream, batch_size):
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
    allow_missing_classes: bool = False,
    overwrite: bool = False,
) -> EvalResult:
    """Evaluate a checkpoint on a dataset split (see the module docstring).

    Unreadable images are skipped (``on_error="skip"``, counted in ``result.skipped``) or stop the
    run (``"raise"``); every metric is over the readable images, each counted once. ``out`` follows
    the output policy of :mod:`edgefer.utils.outputs`: an earlier evaluation there is replaced only
    with ``overwrite``, and the files appear together or not at all.
    """
    from edgefer.data import open_dataset

    if batch_size < 1:
        raise EdgeferError(f"batch size must be >= 1, got {batch_size}")
    check_at_most("batch size", batch_size, MAX_BATCH, EdgeferError)
    if out is not None:
        check_outputs(out, EVAL_FILES, overwrite=overwrite)  # before any work
    ckpt = load_checkpoint(checkpoint)
    reader = open_dataset(str(data), split, on_error=on_error, allow_missing_classes=allow_missing_classes)
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
    if not samples:
        raise EdgeferError(f"no readable image in the {split} split of {data} ({reader.skipped} unreadable)")
    labels = np.asarray([s[1] for s in samples], dtype=np.int64)
    preds = logits.argmax(1) if len(logits) else np.zeros(0, dtype=np.int64)
    report = classification_report(labels, preds, data_classes)
    result = EvalResult(
        report,
        logits,
        labels,
        preds,
        [str(s[0]) for s in samples],
        str(checkpoint),
        split,
        flip_tta,
        skipped_ids=list(reader.skipped_ids),
    )
    if out is not None:
        write_eval_outputs(result, out, overwrite=overwrite)
    return result


#: the files :func:`write_eval_outputs` writes (one output: they are replaced together)
EVAL_FILES = ("metrics.json", "confusion_matrix.json", "confusion_matrix.png", "predictions.csv")


def write_eval_outputs(result: EvalResult, out: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write metrics.json, confusion_matrix.{json,png} and predictions.csv into ``out`` (staged, all or none)."""
    rep = result.report
    with staged_output(out, "evaluate", overwrite=overwrite) as stage:
        write_json(stage.path("metrics.json"), result.to_dict())
        write_json(
            stage.path("confusion_matrix.json"),
            {
                "class_names": list(rep.class_names),
                "rows": "true class",
                "columns": "predicted class",
                "matrix": rep.confusion.tolist(),
            },
        )
        title = f"{Path(result.checkpoint).name} on {result.split}: "
        title += f"acc {rep.accuracy:.4f}, mean class acc {rep.mean_class_accuracy:.4f}"
        plot_confusion_matrix(stage.path("confusion_matrix.png"), rep.confusion, rep.class_names, title=title)
        probs = softmax(result.logits, axis=1) if len(result.logits) else result.logits
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["id", "label", "pred", *[f"p_{c}" for c in rep.class_names]])
        for i, sid in enumerate(result.ids):
            w.writerow(
                [
                    sid,
                    rep.class_names[result.labels[i]],
                    rep.class_names[result.preds[i]],
                    *[f"{v:.6f}" for v in probs[i]],
                ]
            )
        write_text(stage.path("predictions.csv"), buf.getvalue())
    result.out = Path(out)
    return result.out


def format_report(result: EvalResult) -> str:
    """A plain-text table: overall and mean class accuracy, then per-class precision/recall/F1."""
    rep = result.report
    skipped = f", {result.skipped} unreadable skipped" if result.skipped else ""
    lines = [
        f"checkpoint  {result.checkpoint}",
        f"split       {result.split} ({len(result.labels)} images{skipped}){'  flip TTA' if result.flip_tta else ''}",
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
