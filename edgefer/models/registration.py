"""Where model factories register themselves: the registry's data, with no knowledge of the models.

The model modules (``msff``, ``mask_cbam``, ``baselines``) import :func:`register_model` from here,
and :mod:`edgefer.models.registry` (lookup and creation) imports them through ``zoo``: kept apart so
the import graph has no cycle (registry -> zoo -> msff -> registration, never back to registry).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgefer.errors import ModelError


@dataclass(frozen=True)
class ModelEntry:
    name: str
    factory: Callable[..., Any]
    description: str
    family: str  # "paper", "edge" or "baseline"
    paper_accuracy: dict[str, float] | None = None  # e.g. {"RAF-DB": 83.67}


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str, *, description: str, family: str, paper_accuracy: dict[str, float] | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def deco(factory: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY:
            raise ModelError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelEntry(name, factory, description, family, paper_accuracy)
        return factory

    return deco
