"""Continuing a run: what it carries from epoch to epoch (:class:`TrainState`), the checks that a
checkpoint may be resumed by this configuration, and loading it back (:func:`restore_state`)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgefer.errors import CheckpointError
from edgefer.training.checkpoint import load_checkpoint
from edgefer.training.config import TrainConfig
from edgefer.training.learner import Learner


def resolve_resume(path: str) -> Path:
    """The checkpoint ``--resume`` names: a run directory means its ``last.pt``."""
    p = Path(path)
    return p / "last.pt" if p.is_dir() else p


@dataclass
class TrainState:
    """What a run carries from epoch to epoch; saved in every checkpoint's ``extra`` and restored on resume."""

    start_epoch: int = 0
    global_step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=lambda: {"val_acc": -1.0, "epoch": -1})

    def record(self, row: dict[str, Any]) -> bool:
        """Append an epoch's row; True (and the row marked best) when its accuracy beats every earlier epoch."""
        improved = row["val_acc"] > self.best["val_acc"]
        if improved:
            self.best = {"val_acc": row["val_acc"], "epoch": row["epoch"]}
            row["best"] = True
        self.history.append(row)
        return improved


def load_resume(cfg: TrainConfig, class_names: tuple[str, ...]) -> dict[str, Any] | None:
    """The checkpoint ``cfg.resume`` names, checked against this run before anything is built (None without)."""
    if not cfg.resume:
        return None
    path = resolve_resume(cfg.resume)
    ckpt = load_checkpoint(path)
    _check_resume(ckpt, path, cfg, class_names)
    return ckpt


def restore_state(cfg: TrainConfig, ckpt: dict[str, Any], learner: Learner, steps_per_epoch: int) -> TrainState:
    """Load a training checkpoint into ``learner`` and return the state to continue from.

    Weights, EMA, optimiser, schedule and scaler all come back, so the continued run computes what an
    uninterrupted one would have.
    """
    path = resolve_resume(cfg.resume)
    try:
        learner.raw_model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not fit model {cfg.model!r}: {str(exc)[:300]}") from exc
    extra = ckpt.get("extra", {})
    if learner.ema is not None:
        if ckpt.get("ema_state_dict"):
            learner.ema.load_state_dict(ckpt["ema_state_dict"], extra.get("ema_updates", 0))
        else:  # no average saved: start it from the restored weights
            learner.ema.module.load_state_dict(learner.raw_model.state_dict())
    learner.optimizer.load_state_dict(ckpt["optimizer"])
    if ckpt.get("scheduler"):
        learner.scheduler.load_state_dict(ckpt["scheduler"])
    if learner.amp and ckpt.get("scaler"):
        learner.scaler.load_state_dict(ckpt["scaler"])
    start_epoch = int(ckpt["epoch"]) + 1
    state = TrainState(
        start_epoch=start_epoch,
        global_step=int(extra.get("global_step", start_epoch * steps_per_epoch)),
        history=list(extra.get("history", [])),
        best=dict(extra.get("best", TrainState().best)),
    )
    return state


def _check_resume(ckpt: dict, path: Path, cfg: TrainConfig, class_names: tuple[str, ...]) -> None:
    name = ckpt["model"]["name"]
    if name != cfg.model:
        raise CheckpointError(f"cannot resume: {path} holds model {name!r}, but this run trains {cfg.model!r}")
    if tuple(ckpt["class_names"]) != tuple(class_names):
        raise CheckpointError(
            f"cannot resume: {path} was trained on {len(ckpt['class_names'])} classes {list(ckpt['class_names'])}, "
            f"the dataset has {len(class_names)} classes {list(class_names)}"
        )
    if ckpt.get("optimizer") is None:
        raise CheckpointError(f"cannot resume from {path}: it holds no optimiser state (not a training checkpoint)")
    changed = _contradictions(ckpt.get("train_config") or {}, cfg)
    if changed:
        raise CheckpointError(
            f"cannot resume {path} with other settings than it was trained with: {'; '.join(changed)} "
            "(a resumed run continues the same training; drop these options, or train a new run with another --out)"
        )


#: settings that may differ when a run is resumed: where and how it runs, how long, what is printed.
#: Everything else defines what the checkpoint holds (data, sizes, optimiser, augmentation, ...).
RESUME_MAY_CHANGE = frozenset(
    {
        "out", "epochs", "workers", "progress", "device", "amp", "channels_last", "sync_bn",
        "deterministic", "resume", "overwrite", "on_error", "allow_missing_classes",
    }
)  # fmt: skip


def _contradictions(stored: dict[str, Any], cfg: TrainConfig) -> list[str]:
    """``name stored -> given`` for each setting of ``cfg`` that differs from the checkpoint's
    training configuration (issue 26: ``--resume`` of a finished run with another ``--img-size``
    once rewrote its record to ``img_size: 96`` beside a 64-px checkpoint)."""
    given = cfg.to_dict()
    out: list[str] = []
    for key in sorted(set(stored) & set(given) - RESUME_MAY_CHANGE):
        a, b = stored[key], given[key]
        if key in ("data", "teacher") and a and b and os.path.abspath(str(a)) == os.path.abspath(str(b)):
            continue
        if json.dumps(a, sort_keys=True, default=str) != json.dumps(b, sort_keys=True, default=str):
            out.append(f"{key} {a!r} -> {b!r}")
    return out
