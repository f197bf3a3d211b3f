"""FER networks: reusable blocks (``blocks``), the paper models and their edge variants, a registry."""

from edgefer.models.registry import ModelEntry, create_model, get_entry, list_models, register_model

__all__ = ["ModelEntry", "create_model", "get_entry", "list_models", "register_model"]
