"""Run records: ``metrics.csv`` (one row per epoch), the training-curve PNG, the confusion-matrix PNG.

The history lives in the checkpoint too, so a resumed run rewrites ``metrics.csv`` from the
checkpoint it resumed from: rows of epochs that were redone do not appear twice.
Plots use matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgefer.utils.io import save_figure, write_text

COLUMNS = (
    "epoch", "lr", "train_loss", "train_acc", "train_kl", "val_loss", "val_acc",
    "val_mean_class_acc", "val_macro_f1", "images_per_s", "epoch_time_s", "best",
)  # fmt: skip


def write_metrics_csv(path: str | os.PathLike, history: Sequence[dict]) -> Path:
    """Write the per-epoch history atomically (missing values are empty cells)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: _fmt(row.get(k)) for k in COLUMNS})
    return write_text(path, buf.getvalue())


def _fmt(v: object) -> object:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return v


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_training_curves(path: str | os.PathLike, history: Sequence[dict], title: str = "") -> Path | None:
    """Loss (train/val) and accuracy (train/val/val mean-class) against the epoch."""
    if not history:
        return None
    plt = _pyplot()
    epochs = [int(r["epoch"]) + 1 for r in history]

    def col(key: str) -> list[float]:
        return [float("nan") if r.get(key) is None else float(r[key]) for r in history]

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, col("train_loss"), "o-", label="train")
    ax1.plot(epochs, col("val_loss"), "s-", label="val")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.legend()
    ax1.grid(alpha=0.3)
    ax2.plot(epochs, col("train_acc"), "o-", label="train acc")
    ax2.plot(epochs, col("val_acc"), "s-", label="val acc")
    ax2.plot(epochs, col("val_mean_class_acc"), "^-", label="val mean class acc")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy")
    ax2.set_ylim(0, 1)
    ax2.legend()
    ax2.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_confusion_matrix(
    path: str | os.PathLike, confusion: np.ndarray, class_names: Sequence[str], title: str = ""
) -> Path:
    """Row-normalised confusion matrix (recall per true class) with the raw counts in each cell."""
    plt = _pyplot()
    cm = np.asarray(confusion, dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    k = len(class_names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * k, 0.6 + 0.8 * k))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), labels=list(class_names), rotation=45, ha="right")
    ax.set_yticks(range(k), labels=list(class_names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(k):
        for j in range(k):
            colour = "white" if norm[i, j] > 0.5 else "black"
            ax.text(j, i, f"{norm[i, j]:.2f}\n{int(cm[i, j])}", ha="center", va="center", fontsize=7, color=colour)
    fig.colorbar(im, ax=ax, fraction=0.046)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, path)
