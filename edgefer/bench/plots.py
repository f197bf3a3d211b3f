"""Benchmark plots (PNG, matplotlib Agg): accuracy-vs-latency Pareto front, per-class Δ bars,
confusion matrices. matplotlib is optional on a device: without it the plots are skipped and the
report says so."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from edgefer.utils.compat import zip_strict
from edgefer.utils.io import save_figure


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats (lower latency *and* higher-or-equal accuracy),
    sorted by latency. ``points`` are (latency, accuracy)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front: list[int] = []
    best = -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def _save(fig: Any, path: Path) -> str:
    return str(save_figure(fig, path, bbox_inches="tight"))


def save_plots(d: dict[str, Any], out: Path) -> tuple[dict[str, str], str | None]:
    """Write the plots for a report dict; returns ({name: path}, note or None)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {}, "plots skipped: matplotlib is not installed (pip install matplotlib, or the train extra)"
    rows = [r for r in d["rows"] if r.get("status") == "ok" and r.get("accuracy")]
    if not rows:
        return {}, "no model ran successfully: no plots"
    files: dict[str, str] = {}
    b = str(d["settings"]["batches"][0])

    pts, labels = [], []
    for r in rows:
        lat = ((r.get("latency") or {}).get(b) or {}).get("model")
        if lat:
            pts.append((lat["p50_ms"], r["accuracy"]["accuracy"] * 100))
            labels.append(r["label"])
    if pts:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        xs, ys = zip_strict(*pts)
        ax.scatter(xs, ys, color="tab:blue")
        for (x, y), lab in zip_strict(pts, labels):
            ax.annotate(lab, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        front = pareto_front(pts)
        ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "--", color="tab:red", label="Pareto front")
        ax.set_xlabel(f"p50 latency, batch {b} (ms)")
        ax.set_ylabel("accuracy (%)")
        ax.set_title("Accuracy vs latency")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        files["pareto"] = _save(fig, out / "pareto.png")

    with_delta = [r for r in rows if r["accuracy"].get("per_class_delta_pts") is not None]
    if with_delta:
        names = with_delta[0]["accuracy"]["class_names"]
        fig, ax = plt.subplots(figsize=(max(7, len(names) * 1.2), 4.5))
        width = 0.8 / len(with_delta)
        x = np.arange(len(names))
        for k, r in enumerate(with_delta):
            vals = [np.nan if v is None else v for v in r["accuracy"]["per_class_delta_pts"]]
            ax.bar(x + k * width - 0.4 + width / 2, vals, width, label=r["label"])
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(x, names, rotation=20)
        ax.set_ylabel("Δ accuracy vs FP32 reference (pts)")
        ax.set_title("Per-class Δ")
        ax.legend(fontsize=7)
        files["per_class_delta"] = _save(fig, out / "per_class_delta.png")

    n = len(rows)
    cols = min(n, 3)
    nrows = math.ceil(n / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 4 * nrows), squeeze=False)
    for ax, r in zip(axes.ravel(), rows):
        cm = np.asarray(r["accuracy"]["confusion_matrix"], dtype=np.float64)
        norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
        names = r["accuracy"]["class_names"]
        ax.set_xticks(range(len(names)), [s[:3] for s in names], fontsize=7)
        ax.set_yticks(range(len(names)), [s[:3] for s in names], fontsize=7)
        for i in range(cm.shape[0]):
            for j in range(cm.shape[1]):
                if cm[i, j]:
                    ax.text(
                        j,
                        i,
                        int(cm[i, j]),
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if norm[i, j] > 0.5 else "black",
                    )
        ax.set_title(r["label"], fontsize=8)
        ax.set_xlabel("predicted", fontsize=7)
        ax.set_ylabel("true", fontsize=7)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.tight_layout()
    files["confusion"] = _save(fig, out / "confusion.png")
    return files, None
