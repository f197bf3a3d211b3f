"""Training, evaluation, checkpoints and distillation (needs torch).

Public API::

    from edgefer.training import TrainConfig, load_config, train, evaluate

``train(cfg) -> TrainResult`` (``.best_checkpoint``, ``.last_checkpoint``, ``.metrics``, ``.run_dir``)
and ``evaluate(checkpoint, data, split="test", flip_tta=False, out=None) -> EvalResult`` (``.report``
is an :class:`edgefer.metrics.ClassificationReport`). Names are imported lazily so that
``import edgefer.training.checkpoint`` stays light.
"""

from __future__ import annotations

from edgefer.extras import require_train_python
from edgefer.utils.lazy import lazy_getattr

require_train_python("edgefer.training")

_EXPORTS = {
    "TrainConfig": "edgefer.training.config",
    "ConfigError": "edgefer.training.config",
    "load_config": "edgefer.training.config",
    "list_recipes": "edgefer.training.config",
    "resolve_recipe": "edgefer.training.config",
    "train": "edgefer.training.trainer",
    "TrainResult": "edgefer.training.trainer",
    "TrainingError": "edgefer.training.trainer",
    "evaluate": "edgefer.training.evaluation",
    "EvalResult": "edgefer.training.evaluation",
    "predict_logits": "edgefer.training.evaluation",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
