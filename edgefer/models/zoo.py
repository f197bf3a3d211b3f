"""Imports every module that registers models (the registry's single list of model files)."""

from edgefer.models import baselines, mask_cbam, msff  # noqa: F401
