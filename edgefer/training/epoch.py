"""One epoch of training (:func:`train_one_epoch`) and one pass of validation
(:func:`run_validation`), both summed over the ranks."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from edgefer.errors import EdgeferError
from edgefer.metrics import ClassificationReport, classification_report
from edgefer.training import distributed as D
from edgefer.training.config import TrainConfig
from edgefer.training.console import progress_bar
from edgefer.training.learner import Learner
from edgefer.training.loaders import Loaders
from edgefer.training.resume import TrainState

#: Called after every optimiser step with (epoch, step_in_epoch, global_step).
StepHook = Callable[[int, int, int], None]


class TrainingError(EdgeferError):
    """A run that cannot continue (e.g. the loss became NaN)."""


@dataclass
class EpochStats:
    """Training loss, accuracy and KL of one epoch, summed over the ranks."""

    loss: float
    accuracy: float
    kl: float | None
    images: float
    seconds: float


def train_one_epoch(
    learner: Learner,
    loaders: Loaders,
    epoch: int,
    cfg: TrainConfig,
    info: D.DistInfo,
    state: TrainState,
    on_step: StepHook | None = None,
) -> EpochStats:
    """One pass over this rank's training shard: forward, loss, backward, step, EMA; ``state.global_step`` advances.

    A non-finite loss on any rank stops every rank with the same :class:`TrainingError` before the
    backward pass; otherwise the other ranks would wait in DDP's gradient all-reduce for the rank that
    stopped (or be killed by the launcher without saying why).
    """
    model, raw_model, device = learner.model, learner.raw_model, learner.device
    model.train()
    t0 = time.perf_counter()
    stats = torch.zeros(4, dtype=torch.float64, device=device)  # loss sum, correct, n, kl sum
    progress = progress_bar(cfg.progress and info.is_main)
    with progress:
        task = progress.add_task(f"epoch {epoch + 1}/{cfg.epochs}", total=loaders.steps_per_epoch, info="")
        for step, (x, y) in enumerate(loaders.train_loader):
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            if learner.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=learner.amp):
                logits = model(x)
                loss, kl = learner.objective(logits, x, y)
            loss_value = float(loss.detach())
            if D.broadcast_flag(not math.isfinite(loss_value), info, device):
                raise TrainingError(_non_finite_message(loss_value, epoch, step, info))
            learner.optimizer.zero_grad(set_to_none=True)
            learner.scaler.scale(loss).backward()
            if cfg.grad_clip > 0:
                learner.scaler.unscale_(learner.optimizer)
                nn.utils.clip_grad_norm_(raw_model.parameters(), cfg.grad_clip)
            learner.scaler.step(learner.optimizer)
            learner.scaler.update()
            learner.scheduler.step()
            state.global_step += 1
            if learner.ema is not None:
                learner.ema.update(raw_model)
            n = y.numel()
            stats[0] += loss_value * n
            stats[1] += (logits.detach().argmax(1) == y).sum()
            stats[2] += n
            if kl is not None:
                stats[3] += float(kl) * n
            seen = float(stats[2]) * info.world
            progress.update(
                task,
                advance=1,
                info=f"loss {float(stats[0] / stats[2]):.4f}  acc {float(stats[1] / stats[2]):.3f}  "
                f"{seen / (time.perf_counter() - t0):.1f} img/s",
            )
            if on_step is not None:
                on_step(epoch, step, state.global_step)
    seconds = time.perf_counter() - t0
    D.all_reduce_sum(stats, info)
    return EpochStats(
        loss=float(stats[0] / stats[2]),
        accuracy=float(stats[1] / stats[2]),
        kl=float(stats[3] / stats[2]) if learner.objective.teacher is not None else None,
        images=float(stats[2]),
        seconds=seconds,
    )


def _non_finite_message(loss_value: float, epoch: int, step: int, info: D.DistInfo) -> str:
    """The one-line error of a NaN/inf loss; a rank whose own loss was finite names the other rank as the cause."""
    if not math.isfinite(loss_value):
        what = f"loss became {loss_value}" + (f" on rank {info.rank}" if info.enabled else "")
    else:
        what = "loss became non-finite on another rank"
    return f"{what} at epoch {epoch + 1} step {step + 1}; lower --lr or keep gradient clipping on"


@torch.inference_mode()
def run_validation(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    num_classes: int,
    info: D.DistInfo,
    *,
    amp: bool = False,
    channels_last: bool = False,
) -> tuple[np.ndarray, float, int]:
    """(confusion matrix summed over ranks, summed CE loss, sample count) of ``model`` on ``loader``."""
    was_training = model.training
    model.eval()
    cm = torch.zeros(num_classes * num_classes, dtype=torch.float64, device=device)
    loss_sum = torch.zeros(2, dtype=torch.float64, device=device)
    for x, y in loader:
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
            logits = model(x)
        logits = logits.float()
        loss_sum[0] += nn.functional.cross_entropy(logits, y, reduction="sum").double()
        loss_sum[1] += y.numel()
        pred = logits.argmax(1)
        # bincount on the CPU: its CUDA kernel is not deterministic (and warns in deterministic mode)
        cm += torch.bincount((y * num_classes + pred).cpu(), minlength=num_classes * num_classes).to(cm)
    D.all_reduce_sum(cm, info)
    D.all_reduce_sum(loss_sum, info)
    model.train(was_training)
    return cm.view(num_classes, num_classes).long().cpu().numpy(), float(loss_sum[0]), int(loss_sum[1])


def report_from_confusion(cm: np.ndarray, class_names: tuple[str, ...]) -> ClassificationReport:
    """The :class:`ClassificationReport` of a confusion matrix (expanded back to label/pred pairs)."""
    k = len(class_names)
    t, p = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    counts = cm.ravel()
    labels = np.repeat(t.ravel(), counts)
    preds = np.repeat(p.ravel(), counts)
    return classification_report(labels, preds, class_names)
