"""Imports every module that registers models (the registry's single list of model files)."""

from edgefer.models import baselines  # noqa: F401
