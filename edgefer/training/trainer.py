"""The training loop: ``train(cfg) -> TrainResult``. Read it top to bottom like torchvision's reference.

:func:`train` sets up torch (and DDP under ``torchrun``) and ``_train`` runs the steps in this
order, each in the module of its one job: :func:`~edgefer.training.loaders.build_loaders` (splits,
sampler, loaders), :func:`~edgefer.training.learner.build_learner` (network, EMA, DDP, optimiser,
schedule, loss, teacher), :func:`~edgefer.training.resume.restore_state` (``resume``: weights, EMA,
optimiser, schedule, scaler, history), then per epoch
:func:`~edgefer.training.epoch.train_one_epoch` and :func:`~edgefer.training.epoch.run_validation`;
:mod:`edgefer.training.records` writes the run's files (checkpoints, metrics, summary) and
:mod:`edgefer.training.console` prints what it does. The step functions stay importable from here.

One run writes to ``cfg.out``::

    last.pt               every epoch (atomic): weights, EMA, optimiser/scheduler/scaler, history
    best.pt               the epoch with the best validation accuracy so far
    metrics.csv           one row per epoch (rewritten from the checkpoint's history on resume)
    training_curves.png   loss and accuracy against the epoch (at the end)
    config.yaml           the resolved configuration
    summary.json          final and best metrics (at the end)

Exact resume: the data order and every augmentation are functions of (seed, epoch, sample), the
global torch RNG (dropout) is reseeded from (seed, epoch, rank) at every epoch, and the
checkpoint holds the optimiser, scheduler, scaler and EMA state, so ``resume=last.pt`` gives the
same weights as a run that was never interrupted (on the same hardware and thread count).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgefer.training import distributed as D
from edgefer.training.config import ConfigError, TrainConfig
from edgefer.training.console import banner, epoch_line, interrupted_message, make_console, resume_line
from edgefer.training.epoch import (
    EpochStats,
    StepHook,
    TrainingError,
    report_from_confusion,
    run_validation,
    train_one_epoch,
)
from edgefer.training.learner import Learner, Objective, build_learner
from edgefer.training.loaders import Loaders, build_loaders
from edgefer.training.records import (
    RUN_FILES,
    claim_run_dir,
    epoch_row,
    run_metrics,
    start_run_dir,
    write_epoch,
    write_summary,
)
from edgefer.training.resume import TrainState, load_resume, resolve_resume, restore_state
from edgefer.utils.io import ensure_writable_dir

__all__ = [  # the loop's steps live in their own modules; these names stay importable from here
    "RUN_FILES",
    "EpochStats",
    "Learner",
    "Loaders",
    "Objective",
    "StepHook",
    "TrainResult",
    "TrainState",
    "TrainingError",
    "build_learner",
    "build_loaders",
    "report_from_confusion",
    "resolve_device",
    "restore_state",
    "run_validation",
    "train",
    "train_one_epoch",
]


@dataclass
class TrainResult:
    """What a finished run produced."""

    run_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available (use --device cpu)")
    return dev


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, rank, 0x70C4]).generate_state(1)[0])


# --------------------------------------------------------------------------------------------
# the run, top to bottom


def train(cfg: TrainConfig, *, on_step: StepHook | None = None) -> TrainResult:
    """Train ``cfg.model`` on ``cfg.data``; see the module docstring for what is written.

    Under ``torchrun`` (``WORLD_SIZE > 1``) this is data-parallel training; every rank returns
    the same :class:`TrainResult`. A ``KeyboardInterrupt`` leaves ``last.pt`` at the last completed
    epoch, prints how to resume, and is re-raised.
    """
    cfg.validate()
    device = resolve_device(cfg.device)
    info = D.init_distributed(device.type)
    if info.enabled and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    try:
        with _torch_settings(cfg.deterministic, device):
            return _train(cfg, device, info, on_step)
    finally:
        D.cleanup(info)


def _train(cfg: TrainConfig, device: torch.device, info: D.DistInfo, on_step: StepHook | None) -> TrainResult:
    """The steps of a run in order; each is a function below."""
    console = make_console(cfg.progress and info.is_main)
    run_dir = Path(cfg.out)
    replacing = claim_run_dir(run_dir, cfg)  # never replace an earlier run (or a file edgefer did not write)

    loaders = build_loaders(cfg, info, device)
    resume_ckpt = load_resume(cfg, loaders.class_names)
    if info.is_main:  # after the input checks: a typo in --data leaves no empty run directory behind
        ensure_writable_dir(run_dir)
    learner = build_learner(cfg, loaders, info, device)
    state = TrainState()
    if resume_ckpt is not None:
        state = restore_state(cfg, resume_ckpt, learner, loaders.steps_per_epoch)
        console.print(resume_line(cfg, state.start_epoch))
    # a finished run resumed in its own folder only reports itself: its record stays as it was
    finished = resume_ckpt is not None and state.start_epoch >= cfg.epochs and not replacing
    keep_record = finished and resolve_resume(cfg.resume).resolve().parent == run_dir.resolve()
    if info.is_main and not keep_record:
        start_run_dir(run_dir, cfg, replacing, console)
        console.print(banner(cfg, loaders, learner, info))

    epoch = state.start_epoch
    try:
        for epoch in range(state.start_epoch, cfg.epochs):
            torch.manual_seed(_epoch_seed(cfg.seed, epoch, info.rank))  # dropout: a function of (seed, epoch, rank)
            loaders.set_epoch(epoch)
            t0 = time.perf_counter()
            stats = train_one_epoch(learner, loaders, epoch, cfg, info, state, on_step)
            cm, val_loss_sum, val_n = run_validation(
                learner.eval_model,
                loaders.val_loader,
                device,
                len(loaders.class_names),
                info,
                amp=learner.amp,
                channels_last=learner.channels_last,
            )
            report = report_from_confusion(cm, loaders.class_names)
            row = epoch_row(epoch, learner, stats, val_loss_sum / max(val_n, 1), report, time.perf_counter() - t0)
            improved = state.record(row)
            if info.is_main:
                write_epoch(run_dir, cfg, loaders, learner, state, info, run_metrics(row, state.best, report), improved)
                console.print(epoch_line(row, cfg.epochs, improved))
            D.barrier(info)
    except KeyboardInterrupt:
        if info.is_main:
            interrupted_message(epoch, cfg, run_dir / "last.pt")
        raise

    if not state.history:
        raise TrainingError(f"{cfg.resume} holds no training history; cannot report on it")
    final = run_metrics(state.history[-1], state.best, None)
    if info.is_main and not keep_record:
        write_summary(run_dir, cfg, loaders.class_names, state.history, final)
    D.barrier(info)
    return TrainResult(run_dir, run_dir / "best.pt", run_dir / "last.pt", final, state.history)


@contextlib.contextmanager
def _torch_settings(deterministic: bool, device: torch.device) -> Iterator[None]:
    """Deterministic algorithms (or cuDNN autotuning) for the run; the caller's settings come back after it."""
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_bench = torch.backends.cudnn.benchmark
    try:
        if deterministic:
            if device.type == "cuda":  # cuBLAS needs this for reproducible matmuls (read at first use)
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        else:
            torch.backends.cudnn.benchmark = device.type == "cuda"
        yield
    finally:
        torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn_only)
        torch.backends.cudnn.benchmark = prev_bench
