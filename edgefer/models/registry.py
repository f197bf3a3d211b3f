"""Model registry: every network is created by name with the same options.

``register_model`` decorates a factory ``f(num_classes, pretrained, dropout, **kw) -> nn.Module``.
``create_model(name, ...)`` builds one; ``list_models()`` lists the names. Checkpoints store the
name and the keyword arguments, so ``create_model(**ckpt['model'])`` rebuilds the same network.
"""

from __future__ import annotations

from typing import Any

from edgefer.errors import ModelError
from edgefer.labels import NUM_CLASSES
from edgefer.models.registration import _REGISTRY, ModelEntry, register_model

__all__ = ["ModelEntry", "create_model", "get_entry", "list_models", "register_model"]


def _ensure_loaded() -> None:
    # Importing the model modules runs their @register_model decorators.
    import edgefer.models.zoo  # noqa: F401


def list_models() -> list[str]:
    _ensure_loaded()
    return sorted(_REGISTRY)


def get_entry(name: str) -> ModelEntry:
    _ensure_loaded()
    if name not in _REGISTRY:
        raise ModelError(f"unknown model {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def create_model(
    name: str,
    num_classes: int = NUM_CLASSES,
    pretrained: str | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
):
    """Build a registered model. ``pretrained="imagenet"`` loads torchvision backbone weights
    through torchvision's weights API (needs internet or a filled torch hub cache)."""
    entry = get_entry(name)
    if num_classes < 2:
        raise ModelError(f"num_classes must be >= 2, got {num_classes}")
    if pretrained not in (None, "", "none", "imagenet"):
        raise ModelError(f"pretrained must be None or 'imagenet', got {pretrained!r}")
    pretrained = pretrained if pretrained == "imagenet" else None
    if not 0.0 <= dropout < 1.0:
        raise ModelError(f"dropout must be in [0, 1), got {dropout}")
    return entry.factory(num_classes=num_classes, pretrained=pretrained, dropout=dropout, **kwargs)
