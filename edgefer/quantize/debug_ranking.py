"""Scoring and ranking layers: each FP32 node's output against the INT8 model's (relative L2,
cosine), the error each layer *adds* over its inputs, and the rank of the quantized layers by it."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

_EPS = 1e-12


def rel_l2(ref: np.ndarray, got: np.ndarray) -> float:
    """``||got - ref|| / ||ref||`` over everything (0 when both are zero)."""
    ref64, got64 = ref.astype(np.float64), got.astype(np.float64)
    den = float(np.linalg.norm(ref64))
    num = float(np.linalg.norm(got64 - ref64))
    return num / den if den > _EPS else (0.0 if num <= _EPS else math.inf)


def mean_cosine(ref: np.ndarray, got: np.ndarray) -> float:
    """Mean over rows (images) of the cosine similarity of ``got`` with ``ref`` (1 for two zero rows)."""
    ref64, got64 = ref.astype(np.float64), got.astype(np.float64)
    nr, ng = np.linalg.norm(ref64, axis=1), np.linalg.norm(got64, axis=1)
    dot = np.sum(ref64 * got64, axis=1)
    both_zero = (nr <= _EPS) & (ng <= _EPS)
    cos = np.where(both_zero, 1.0, dot / np.maximum(nr * ng, _EPS))
    return float(np.mean(cos))


def layer_rows(
    fp_model: Any,
    fp_acts: dict[str, np.ndarray],
    q_acts: dict[str, np.ndarray],
    quantized: set[str],
    sqnr: dict[str, float],
) -> list[dict[str, Any]]:
    """One row per FP32 node whose (first float) output was seen in both models, in graph order, ranked."""
    err: dict[str, float] = {i.name: 0.0 for i in fp_model.graph.input}
    rows: list[dict[str, Any]] = []
    for node in fp_model.graph.node:
        tensor = next((o for o in node.output if o in fp_acts and o in q_acts), None)
        if tensor is None:
            continue
        ref, got = fp_acts[tensor], q_acts[tensor]
        if ref.shape != got.shape:
            continue
        e = rel_l2(ref, got)
        err[tensor] = e
        before = max((err[i] for i in node.input if i in err), default=0.0)
        in_sqnr = [sqnr[i] for i in node.input if i in sqnr]
        rows.append(
            {
                "index": len(rows),
                "name": node.name,
                "op": node.op_type,
                "tensor": tensor,
                "quantized": node.name in quantized,
                "rel_l2": e,
                "cosine": mean_cosine(ref, got),
                "added_rel_l2": e - before,
                "qdq_sqnr_db": min(in_sqnr) if in_sqnr else None,
                "rank": None,
            }
        )
    for k, r in enumerate(sorted((r for r in rows if r["quantized"]), key=lambda r: (-r["added_rel_l2"], r["index"]))):
        r["rank"] = k + 1
    return rows


def ranked(layers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The quantized layers (those with a rank), in graph order."""
    return [r for r in layers if r["rank"] is not None]
