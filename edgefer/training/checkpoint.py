"""Checkpoint format: one ``.pt`` file that every later stage starts from.

A checkpoint is a plain dict of tensors and primitives, so it loads with
``torch.load(weights_only=True)`` (no pickle of arbitrary objects). Fields:

``format``            int, :data:`CHECKPOINT_FORMAT`
``model``             {"name": str, "args": dict} -> ``create_model(name, **args)``
``class_names``       list[str]
``preprocessing``     :class:`~edgefer.preprocess.Preprocessing` as dict
``state_dict``        model weights (the raw, non-EMA model)
``ema_state_dict``    EMA weights or None; :func:`build_model` prefers them when present
``epoch``             last completed epoch (0-based), -1 when none
``optimizer``, ``scheduler``, ``scaler``   state dicts or None (for ``--resume``)
``metrics``           dict of the latest (and best) validation metrics
``train_config``      dict of the training configuration
``rng``               RNG states for exact resume (or None)
``extra``             free-form dict

Writes are atomic (temporary file + rename).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgefer.errors import CheckpointError
from edgefer.metadata import ModelMetadata
from edgefer.preprocess import Preprocessing
from edgefer.utils.io import atomic_path, sha256_file

CHECKPOINT_FORMAT = 1
_REQUIRED = ("format", "model", "class_names", "preprocessing", "state_dict")


@dataclass(frozen=True)
class ResumeState:
    """What a training needs, beyond the weights, to continue exactly where it stopped: the EMA
    weights, the optimizer / scheduler / AMP-scaler states and the random number generators'."""

    ema_model: nn.Module | None = None
    optimizer: Any = None
    scheduler: Any = None
    scaler: Any = None
    rng: dict[str, Any] | None = None


def save_checkpoint(
    path: str | os.PathLike,
    *,
    model: nn.Module,
    model_name: str,
    model_args: dict[str, Any],
    class_names: tuple[str, ...] | list[str],
    preprocessing: Preprocessing,
    epoch: int = -1,
    resume: ResumeState | None = None,
    metrics: dict[str, Any] | None = None,
    train_config: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically and return its path. Without ``resume`` it holds the model
    only (enough to export or evaluate it, not to continue its training)."""
    raw = model.module if hasattr(model, "module") else model
    r = resume or ResumeState()
    ema_model, optimizer, scheduler, scaler = r.ema_model, r.optimizer, r.scheduler, r.scaler
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "model": {"name": model_name, "args": dict(model_args)},
        "class_names": list(class_names),
        "preprocessing": preprocessing.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in raw.state_dict().items()},
        "ema_state_dict": (
            {k: v.detach().cpu() for k, v in ema_model.state_dict().items()} if ema_model is not None else None
        ),
        "epoch": int(epoch),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "metrics": metrics or {},
        "train_config": train_config or {},
        "rng": r.rng,
        "extra": extra or {},
    }
    path = Path(path)
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(ckpt, tmp)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate a checkpoint with ``weights_only=True``; clear errors for bad files."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory; pass the checkpoint file (e.g. {path}/best.pt)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        raise CheckpointError(
            f"{path} is not a readable edgefer checkpoint ({type(exc).__name__}: {str(exc)[:200]})"
        ) from exc
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in _REQUIRED):
        missing = [k for k in _REQUIRED if not isinstance(ckpt, dict) or k not in ckpt]
        raise CheckpointError(f"{path} is not an edgefer checkpoint (missing {', '.join(missing)})")
    if int(ckpt["format"]) > CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} has checkpoint format {ckpt['format']}, newer than this edgefer ({CHECKPOINT_FORMAT})"
        )
    return ckpt


def checkpoint_metadata(ckpt: dict[str, Any], path: str | os.PathLike | None = None) -> ModelMetadata:
    """The :class:`ModelMetadata` of a loaded checkpoint (sha256 of the file when ``path`` given)."""
    return ModelMetadata(
        model_name=ckpt["model"]["name"],
        model_args=dict(ckpt["model"]["args"]),
        class_names=tuple(ckpt["class_names"]),
        preprocessing=Preprocessing.from_dict(ckpt["preprocessing"]),
        precision="fp32",
        source_checkpoint_sha256=sha256_file(path) if path is not None else "",
    )


def build_model(
    ckpt: dict[str, Any] | str | os.PathLike,
    *,
    use_ema: bool = True,
    expect_model: str | None = None,
    expect_num_classes: int | None = None,
) -> nn.Module:
    """Rebuild the network of a checkpoint, load its weights (EMA when present) and set eval mode.

    ``expect_model`` / ``expect_num_classes`` turn a silent mismatch into a clear error.
    """
    from edgefer.models import create_model

    if not isinstance(ckpt, dict):
        ckpt = load_checkpoint(ckpt)
    name = ckpt["model"]["name"]
    args = dict(ckpt["model"]["args"])
    n_cls = len(ckpt["class_names"])
    if expect_model is not None and expect_model != name:
        raise CheckpointError(f"checkpoint holds model {name!r}, not {expect_model!r}")
    if expect_num_classes is not None and expect_num_classes != n_cls:
        raise CheckpointError(f"checkpoint has {n_cls} classes but {expect_num_classes} were expected")
    args.pop("num_classes", None)
    args.pop("pretrained", None)
    model = create_model(name, num_classes=n_cls, pretrained=None, **args)
    state = ckpt["ema_state_dict"] if use_ema and ckpt.get("ema_state_dict") else ckpt["state_dict"]
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"checkpoint weights do not fit model {name!r} with {n_cls} classes: {str(exc)[:300]}"
        ) from exc
    return model.eval()
