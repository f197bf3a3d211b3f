"""Loading torchvision ImageNet weights into edgefer models (``pretrained="imagenet"``).

Weights come from torchvision's weights API (``ResNet50_Weights.IMAGENET1K_V1`` etc.), i.e. from
the torch hub cache (``$TORCH_HOME/hub/checkpoints``) or a download. A missing file without
internet becomes a :class:`ModelError` that says where to put it, not a urllib traceback.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from edgefer.errors import ModelError


def fetch_state_dict(weights: Any) -> dict[str, Tensor]:
    """The state dict of a torchvision ``WeightsEnum`` member (cached file or download)."""
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:  # urllib, hash and file errors all mean "no usable weights"
        import torch

        raise ModelError(
            f"could not load torchvision weights {weights} ({type(exc).__name__}: {exc}). They are "
            f"downloaded from {weights.url}; without internet copy that file into "
            f"{torch.hub.get_dir()}/checkpoints/ or train without pretrained='imagenet'"
        ) from exc


def load_matching(module: nn.Module, state_dict: dict[str, Tensor]) -> tuple[list[str], list[str]]:
    """Load every tensor of ``state_dict`` whose name and shape exist in ``module`` (strict=False
    for architectures that differ from the source network). Returns (loaded, skipped) key lists."""
    own = module.state_dict()
    keep = {k: v for k, v in state_dict.items() if k in own and own[k].shape == v.shape}
    module.load_state_dict(keep, strict=False)
    skipped = sorted(set(state_dict) - set(keep))
    return sorted(keep), skipped
