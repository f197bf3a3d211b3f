"""What one optimiser step touches: the network, its EMA and DDP wrapper, the optimiser, the
schedule and the loss (with a distillation teacher), built by :func:`build_learner`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from edgefer.training import distributed as D
from edgefer.training.config import TrainConfig
from edgefer.training.data import class_weights
from edgefer.training.distill import DistillationLoss, load_teacher
from edgefer.training.loaders import Loaders
from edgefer.training.optim import ModelEma, build_optimizer, build_scheduler


class Objective:
    """The training loss of one batch: cross-entropy, or distillation from a frozen teacher.

    Called inside the autocast region with the student's logits and the batch; returns (loss, the
    KL term for logging, or None without a teacher).
    """

    def __init__(
        self, criterion: nn.Module, teacher: nn.Module | None = None, kd_loss: DistillationLoss | None = None
    ) -> None:
        self.criterion = criterion
        self.teacher = teacher
        self.kd_loss = kd_loss

    def __call__(
        self, logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.kd_loss is not None and self.teacher is not None:
            return self.kd_loss(logits, self.teacher(x), y)
        return self.criterion(logits, y), None


@dataclass
class Learner:
    """What one optimiser step touches, and where it runs."""

    model: nn.Module  # what the forward pass runs through (DistributedDataParallel under torchrun)
    raw_model: nn.Module  # the network itself: checkpointed, clipped, averaged
    model_args: dict[str, Any]  # create_model's keyword arguments, stored in the checkpoint
    ema: ModelEma | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    objective: Objective
    teacher_info: dict[str, Any] | None  # the teacher checkpoint's model and path, stored in the checkpoint
    device: torch.device
    amp: bool
    channels_last: bool

    @property
    def eval_model(self) -> nn.Module:
        """The weights validation scores and best.pt is chosen by: the EMA when there is one."""
        return self.ema.module if self.ema is not None else self.raw_model


def build_learner(cfg: TrainConfig, loaders: Loaders, info: D.DistInfo, device: torch.device) -> Learner:
    """The network (seeded from ``cfg.seed``), its EMA, DDP wrapper, optimiser, schedule and loss.

    The weights are the fresh initialisation; :func:`restore_state` loads a checkpoint into them.
    """
    from edgefer.models import create_model

    cuda = device.type == "cuda"
    use_amp = cfg.amp and cuda
    channels_last = cfg.channels_last and cuda
    torch.manual_seed(cfg.seed)
    model_args = {"dropout": cfg.dropout, **cfg.model_args}
    pretrained = cfg.pretrained if cfg.pretrained == "imagenet" else None
    model = create_model(cfg.model, num_classes=len(loaders.class_names), pretrained=pretrained, **model_args)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    ema = ModelEma(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    raw_model = model
    if info.enabled:
        if cfg.sync_bn and cuda:
            raw_model = model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if cuda else None)

    optimizer = build_optimizer(raw_model, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum, cfg.nesterov)
    total_steps = cfg.epochs * loaders.steps_per_epoch
    warmup_steps = round(cfg.warmup_epochs * loaders.steps_per_epoch)
    scheduler = build_scheduler(optimizer, total_steps, warmup_steps, cfg.warmup_start_factor, cfg.min_lr_ratio)
    objective, teacher_info = _build_objective(cfg, loaders, device, channels_last)
    return Learner(
        model=model,
        raw_model=raw_model,
        model_args=model_args,
        ema=ema,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=torch.amp.GradScaler("cuda", enabled=use_amp),
        objective=objective,
        teacher_info=teacher_info,
        device=device,
        amp=use_amp,
        channels_last=channels_last,
    )


def _build_objective(
    cfg: TrainConfig, loaders: Loaders, device: torch.device, channels_last: bool
) -> tuple[Objective, dict[str, Any] | None]:
    """Cross-entropy (class-weighted with ``balance=loss``), wrapped in distillation when a teacher is set."""
    loss_w = None
    if cfg.balance == "loss":
        loss_w = torch.tensor(
            class_weights(loaders.class_counts, cfg.balance_method, cfg.balance_beta), dtype=torch.float32
        )
        loss_w = loss_w.to(device)
    criterion = nn.CrossEntropyLoss(weight=loss_w, label_smoothing=cfg.label_smoothing)
    if not cfg.teacher:
        return Objective(criterion), None
    teacher, teacher_info = load_teacher(cfg.teacher, loaders.class_names, loaders.preprocessing)
    teacher.to(device)
    if channels_last:
        teacher.to(memory_format=torch.channels_last)
    return Objective(criterion, teacher, DistillationLoss(criterion, cfg.kd_temperature, cfg.kd_alpha)), teacher_info
