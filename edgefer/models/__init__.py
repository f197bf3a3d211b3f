"""FER networks: reusable blocks (``blocks``), the paper models and their edge variants, a registry."""

from edgefer.extras import require_train_python
from edgefer.models.registry import ModelEntry, create_model, get_entry, list_models, register_model

require_train_python("edgefer.models")

__all__ = ["ModelEntry", "create_model", "get_entry", "list_models", "register_model"]
