"""Classification metrics, torch-free: what FER papers report and what the benchmark compares.

RAF-DB papers report both overall accuracy and *mean class accuracy* (the mean of per-class
recalls), because the test set is imbalanced (Happiness ~39 %, Fear ~2 %). Every function takes
integer label/prediction arrays in the canonical class order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgefer.errors import EdgeferError


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """``cm[t, p]`` = number of samples of true class ``t`` predicted as ``p``."""
    labels = np.asarray(labels, dtype=np.int64).ravel()
    preds = np.asarray(preds, dtype=np.int64).ravel()
    if labels.shape != preds.shape:
        raise EdgeferError(f"labels ({labels.shape}) and predictions ({preds.shape}) differ in length")
    for name, arr in (("labels", labels), ("predictions", preds)):
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            raise EdgeferError(f"{name} outside 0..{num_classes - 1}")
    return np.bincount(labels * num_classes + preds, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Elementwise num/den with NaN where den == 0 (a class with no samples / no predictions)."""
    out = np.full(num.shape, np.nan, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


@dataclass
class ClassificationReport:
    """Metrics of one prediction set. Per-class arrays are NaN where undefined (0 support/predictions)."""

    class_names: tuple[str, ...]
    confusion: np.ndarray
    accuracy: float
    mean_class_accuracy: float
    precision: np.ndarray
    recall: np.ndarray  # = per-class accuracy
    f1: np.ndarray
    support: np.ndarray

    @property
    def per_class_accuracy(self) -> np.ndarray:
        return self.recall

    @property
    def macro_f1(self) -> float:
        valid = ~np.isnan(self.f1)
        return float(self.f1[valid].mean()) if valid.any() else float("nan")

    def to_dict(self) -> dict:
        def clean(a: np.ndarray) -> list:
            return [None if np.isnan(v) else float(v) for v in a]

        return {
            "accuracy": self.accuracy,
            "mean_class_accuracy": self.mean_class_accuracy,
            "macro_f1": self.macro_f1,
            "class_names": list(self.class_names),
            "per_class": {
                name: {
                    "precision": clean(self.precision)[i],
                    "recall": clean(self.recall)[i],
                    "f1": clean(self.f1)[i],
                    "support": int(self.support[i]),
                }
                for i, name in enumerate(self.class_names)
            },
            "confusion_matrix": self.confusion.tolist(),
        }


def classification_report(
    labels: np.ndarray, preds: np.ndarray, class_names: tuple[str, ...] | list[str]
) -> ClassificationReport:
    """Overall and mean-class accuracy, per-class precision/recall/F1 and the confusion matrix."""
    class_names = tuple(class_names)
    k = len(class_names)
    cm = confusion_matrix(labels, preds, k)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    recall = _safe_div(tp, support.astype(np.float64))
    precision = _safe_div(tp, predicted.astype(np.float64))
    with np.errstate(invalid="ignore"):
        f1 = _safe_div(2 * precision * recall, precision + recall)
    # A class with support but no predictions has precision undefined and recall 0: F1 is 0.
    f1 = np.where(np.isnan(f1) & (support > 0), 0.0, f1)
    total = cm.sum()
    accuracy = float(tp.sum() / total) if total else float("nan")
    present = support > 0
    mca = float(recall[present].mean()) if present.any() else float("nan")
    return ClassificationReport(class_names, cm, accuracy, mca, precision, recall, f1, support)


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax in float64 (the one softmax of the torch-free code)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable log-softmax in float64: ``log(softmax(logits))`` without the underflow of
    taking the log of a probability that rounded to 0 (KL divergences need it)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))
