"""Accuracy against the labels *and* against the FP32 reference, and latency statistics.

A deployed model is judged twice (docs/architecture.md invariant 5): against the labels (is it accurate?)
and against the FP32 reference predictions on the same images (did INT8/FP16 change it?). The
second view is what catches quantization damage: two models can have equal overall accuracy
while disagreeing on 5 % of images, or while one rare class (Fear, Disgust) loses 10 points.

Per class the change is also given in *images* (lost, gained, net) with the exact one-sided
McNemar p-value of "the model is worse than the reference on this class" (:func:`mcnemar_drop_p`):
on a 22-image class one flipped prediction is 4.5 points, which is noise, not a regression.

Units: accuracies and agreement are fractions in [0, 1]; deltas are in percentage *points*
(``*_pts``), the unit a gate is written in ("max-drop=0.5" = half a point). Torch-free.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgefer.errors import EdgeferError
from edgefer.metrics import classification_report, log_softmax
from edgefer.reference import Reference


def _nan_to_none(values: Sequence[float]) -> list[float | None]:
    return [None if (v is None or math.isnan(v)) else float(v) for v in values]


def probability_divergence(logits: np.ndarray, ref_logits: np.ndarray) -> dict[str, float]:
    """Mean KL(ref || model) in nats and the max absolute softmax-probability deviation."""
    logits = np.asarray(logits, dtype=np.float64)
    ref_logits = np.asarray(ref_logits, dtype=np.float64)
    if logits.shape != ref_logits.shape:
        raise EdgeferError(f"logits {logits.shape} and reference logits {ref_logits.shape} differ in shape")
    if logits.size == 0:
        return {"mean_kl": float("nan"), "max_prob_dev": float("nan")}
    log_p, log_q = log_softmax(ref_logits, axis=1), log_softmax(logits, axis=1)
    p = np.exp(log_p)
    kl = (p * (log_p - log_q)).sum(axis=1)
    return {
        "mean_kl": float(max(kl.mean(), 0.0)),  # clamp -1e-17 rounding to 0
        "max_prob_dev": float(np.abs(np.exp(log_q) - p).max()),
    }


#: above this many discordant images the binomial tail is summed in log space (floats) instead of
#: with exact integers; below it the p-value is exact up to the final rounding to a float.
_EXACT_MAX_N = 5000


def _upper_tail_half_exact(k: int, n: int) -> float:
    """P(X >= k) for X ~ Binomial(n, 1/2), summed with exact integers, one rounding at the end."""
    term = math.comb(n, k)
    total = term
    for j in range(k, n):
        term = term * (n - j) // (j + 1)  # C(n, j+1) from C(n, j), exactly divisible
        total += term
    return total / (1 << n)


def _upper_tail_half_log(k: int, n: int) -> float:
    """P(X >= k) for X ~ Binomial(n, 1/2) in log space (for large n, where integers get slow)."""
    j = np.arange(k, n, dtype=np.float64)
    log_first = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) - n * math.log(2.0)
    log_terms = np.concatenate([[log_first], log_first + np.cumsum(np.log(n - j) - np.log(j + 1))])
    top = float(log_terms.max())
    return float(min(1.0, math.exp(top) * np.exp(log_terms - top).sum()))


def binomial_upper_tail_half(k: int, n: int) -> float:
    """P(X >= k) for X ~ Binomial(n, 1/2); exact for n <= 5000, log-space sum beyond."""
    if n < 0:
        raise EdgeferError(f"binomial n must be >= 0, got {n}")
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    return _upper_tail_half_exact(k, n) if n <= _EXACT_MAX_N else _upper_tail_half_log(k, n)


def mcnemar_drop_p(lost: int, gained: int) -> float:
    """Exact one-sided McNemar p-value that a model is *worse* than its reference on paired images.

    ``lost``: images the reference got right and the model got wrong; ``gained``: the reverse.
    Images both got right (or both wrong) carry no information about the difference. Under the
    null hypothesis (no difference) each of the ``lost + gained`` discordant images is equally
    likely to fall either way, so p = P(X >= lost) with X ~ Binomial(lost + gained, 1/2).
    One image lost and none gained gives p = 0.5; six lost and none gained gives 1/64.
    """
    lost, gained = int(lost), int(gained)
    if lost < 0 or gained < 0:
        raise EdgeferError(f"lost and gained image counts must be >= 0, got {lost} and {gained}")
    return binomial_upper_tail_half(lost, lost + gained)


def per_class_changes(
    labels: np.ndarray, preds: np.ndarray, ref_preds: np.ndarray, class_names: Sequence[str]
) -> list[dict[str, Any]]:
    """Per class, the paired change against the reference in images and points.

    Each entry: ``class``, ``images``, ``reference_correct``, ``correct``, ``lost`` (reference
    right, model wrong), ``gained`` (the reverse), ``net_images`` (gained - lost = correct -
    reference_correct), ``delta_pts`` (100 * net / images; None without images) and ``p_drop``
    (:func:`mcnemar_drop_p`; None without images).
    """
    labels = np.asarray(labels, dtype=np.int64)
    ref_ok = np.asarray(ref_preds) == labels
    ok = np.asarray(preds) == labels
    out: list[dict[str, Any]] = []
    for i, name in enumerate(class_names):
        m = labels == i
        n = int(m.sum())
        lost = int((ref_ok & ~ok & m).sum())
        gained = int((~ref_ok & ok & m).sum())
        out.append(
            {
                "class": name,
                "images": n,
                "reference_correct": int((ref_ok & m).sum()),
                "correct": int((ok & m).sum()),
                "lost": lost,
                "gained": gained,
                "net_images": gained - lost,
                "delta_pts": 100.0 * (gained - lost) / n if n else None,
                "p_drop": mcnemar_drop_p(lost, gained) if n else None,
            }
        )
    return out


def accuracy_summary(logits: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Accuracy of one prediction set against the labels (no reference)."""
    preds = np.asarray(logits).argmax(axis=1)
    rep = classification_report(labels, preds, tuple(class_names))
    return {
        "n": len(labels),
        "accuracy": rep.accuracy,
        "mean_class_accuracy": rep.mean_class_accuracy,
        "macro_f1": rep.macro_f1,
        "class_names": list(rep.class_names),
        "per_class_accuracy": _nan_to_none(rep.per_class_accuracy),
        "support": [int(s) for s in rep.support],
        "confusion_matrix": rep.confusion.tolist(),
    }


def compare_to_reference(
    logits: np.ndarray, labels: np.ndarray, ref: Reference, class_names: Sequence[str]
) -> dict[str, Any]:
    """Score ``logits`` against ``labels`` and against the FP32 reference ``ref``.

    ``logits`` and ``labels`` must be in the reference's image order (the harness checks ids).
    Returns :func:`accuracy_summary` plus:

    * ``reference_accuracy`` / ``reference_mean_class_accuracy``: the reference's own scores on
      these labels (so a delta is like for like even when ``ref.labels`` were relabelled);
    * ``agreement``: fraction of images whose top-1 equals the reference's top-1;
    * ``delta_pts``, ``delta_mean_class_pts``: accuracy minus reference accuracy, in points;
    * ``per_class_delta_pts``: the same per class (None for classes without samples);
    * ``worst_class_delta_pts`` and ``worst_class``: the most negative per-class delta, and
      ``worst_class_net_images``: that delta in images;
    * ``per_class_changes``: per class, images, correct (reference and model), lost, gained, net
      images, delta and the one-sided McNemar p-value (:func:`per_class_changes`), which the gate's
      ``max-class-drop`` rule reads;
    * ``mean_kl`` (KL(ref || model), nats) and ``max_prob_dev`` (max |p - p_ref|).
    """
    class_names = tuple(class_names)
    labels = np.asarray(labels, dtype=np.int64)
    logits = np.asarray(logits, dtype=np.float32)
    if tuple(ref.class_names) != class_names:
        raise EdgeferError(
            f"the reference's classes {list(ref.class_names)} differ from the model's {list(class_names)}"
        )
    if len(ref) != len(labels) or logits.shape[0] != len(labels):
        raise EdgeferError(
            f"reference has {len(ref)} images but {logits.shape[0]} predictions / {len(labels)} labels were given: "
            "it was made on another split or dataset"
        )
    out = accuracy_summary(logits, labels, class_names)
    ref_rep = classification_report(labels, ref.predictions, class_names)
    preds = logits.argmax(axis=1)
    per_class = np.asarray([np.nan if v is None else v for v in out["per_class_accuracy"]], dtype=np.float64)
    per_class_delta = (per_class - ref_rep.per_class_accuracy) * 100.0
    valid = ~np.isnan(per_class_delta)
    changes = per_class_changes(labels, preds, ref.predictions, class_names)
    if valid.any():
        worst_idx = int(np.nanargmin(per_class_delta))
        worst, worst_name = float(per_class_delta[worst_idx]), class_names[worst_idx]
        worst_net: int | None = changes[worst_idx]["net_images"]
    else:
        worst, worst_name, worst_net = float("nan"), None, None
    out.update(
        reference_accuracy=ref_rep.accuracy,
        reference_mean_class_accuracy=ref_rep.mean_class_accuracy,
        reference_per_class_accuracy=_nan_to_none(ref_rep.per_class_accuracy),
        agreement=float((preds == ref.predictions).mean()) if len(preds) else float("nan"),
        delta_pts=(out["accuracy"] - ref_rep.accuracy) * 100.0,
        delta_mean_class_pts=(out["mean_class_accuracy"] - ref_rep.mean_class_accuracy) * 100.0,
        per_class_delta_pts=_nan_to_none(per_class_delta),
        worst_class_delta_pts=worst,
        worst_class=worst_name,
        worst_class_net_images=worst_net,
        per_class_changes=changes,
        **probability_divergence(logits, ref.logits),
    )
    return out


def percentile(samples: Sequence[float] | np.ndarray, q: float) -> float:
    """The ``q``-th percentile (0..100) of ``samples``: ``numpy.percentile``'s default (linear)
    interpolation between order statistics, rank ``(n - 1) * q / 100``, with a one-line error for
    an empty sample or ``q`` outside [0, 100].

    The default method is passed implicitly: NumPy < 1.22 (JetPack 5) names it ``interpolation=``,
    newer NumPy ``method=``.
    """
    x = np.asarray(samples, dtype=np.float64).ravel()
    if x.size == 0:
        raise EdgeferError("percentile of an empty sample")
    if not 0.0 <= q <= 100.0:
        raise EdgeferError(f"percentile q must be in [0, 100], got {q}")
    return float(np.percentile(x, q))


def latency_stats(seconds: Sequence[float] | np.ndarray, batch_size: int = 1) -> dict[str, float]:
    """Summary of per-call latencies given in seconds, reported in milliseconds.

    ``fps`` is images per second at this batch size, from the mean latency
    (``batch_size / mean``), i.e. sustained single-stream throughput. ``cv`` is the coefficient of
    variation, std / mean: above 10 % the row is flagged as unstable (:mod:`edgefer.bench.trust`).
    """
    x = np.asarray(seconds, dtype=np.float64).ravel()
    if x.size == 0:
        raise EdgeferError("no latency samples were recorded")
    ms = x * 1000.0
    mean = float(ms.mean())
    std = float(ms.std(ddof=1)) if x.size > 1 else 0.0
    return {
        "n": int(x.size),
        "batch": int(batch_size),
        "mean_ms": mean,
        "std_ms": std,
        "cv": std / mean if mean > 0 else 0.0,
        "min_ms": float(ms.min()),
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p95_ms": percentile(ms, 95),
        "p99_ms": percentile(ms, 99),
        "max_ms": float(ms.max()),
        "fps": batch_size * 1000.0 / mean if mean > 0 else float("inf"),
    }
