"""Model size and compute: parameter counts and FLOPs measured by ``torch.utils.flop_counter``.

FLOPs are what :class:`torch.utils.flop_counter.FlopCounterMode` counts for one forward pass of
one image: a multiply-add is 2 FLOPs (so ResNet-50 at 224 px is ~8.2 GFLOPs, the "4.1 GFLOPs"
of papers that count multiply-adds). Only matmul/convolution-like ops are counted; pooling,
activations and element-wise attention products are not (they are < 1% for these models).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from edgefer.errors import ModelError
from edgefer.models.registry import create_model, get_entry, list_models
from edgefer.utils.limits import MAX_IMG_SIZE, check_at_most


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not; buffers such as BatchNorm statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, img_size: int) -> int:
    """FLOPs of one forward pass of a (1, 3, img_size, img_size) input, in eval mode."""
    if img_size < 32:
        raise ModelError(f"img_size must be >= 32, got {img_size}")
    check_at_most("img_size", img_size, MAX_IMG_SIZE, ModelError)
    was_training = model.training
    model.eval()
    x = torch.zeros(1, 3, img_size, img_size)
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def model_info(name: str, img_size: int) -> dict[str, Any]:
    """One row of :func:`model_table` for the registered model ``name``."""
    entry = get_entry(name)
    model = create_model(name)
    return {
        "name": name,
        "family": entry.family,
        "description": entry.description,
        "params": count_params(model),
        "gflops": count_flops(model, img_size) / 1e9,
        "img_size": img_size,
        "paper_accuracy": dict(entry.paper_accuracy or {}),
    }


def model_table(
    img_size: int = 112, names: list[str] | None = None, families: list[str] | None = None
) -> list[dict[str, Any]]:
    """Rows (name, family, description, params, gflops, img_size, paper_accuracy) for every
    registered model, or for ``names`` / the models of ``families``, sorted by family (paper,
    edge, baseline) then name."""
    order = {"paper": 0, "edge": 1, "baseline": 2}
    chosen = names if names is not None else list_models()
    if families is not None:
        known = {get_entry(n).family for n in list_models()}
        unknown = sorted(set(families) - known)
        if unknown:
            raise ModelError(f"unknown model family {unknown}; known: {sorted(known)}")
        chosen = [n for n in chosen if get_entry(n).family in families]
    rows = [model_info(n, img_size) for n in chosen]
    return sorted(rows, key=lambda r: (order.get(r["family"], 3), r["name"]))
