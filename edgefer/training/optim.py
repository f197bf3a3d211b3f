"""Optimiser, learning-rate schedule and weight EMA.

* SGD (momentum, optional Nesterov) as the FER papers use, or AdamW. Weight decay is applied to
  conv/linear weights only, not to biases and normalisation parameters (a standard choice, e.g. in
  timm and torchvision's reference scripts, that the papers leave unspecified).
* Linear warm-up from ``warmup_start_factor * lr`` to ``lr``, then a cosine decay to
  ``min_lr_ratio * lr``, stepped every optimiser step (not every epoch), so short runs and large
  batches get a smooth schedule.
* :class:`ModelEma`: an exponential moving average of the weights (and a copy of the buffers, e.g.
  BatchNorm statistics), with the decay warmed up as ``min(decay, (1 + n) / (10 + n))`` so the
  average is useful after a few hundred steps instead of a few thousand.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(
    model: nn.Module, name: str, lr: float, weight_decay: float, momentum: float = 0.9, nesterov: bool = False
) -> torch.optim.Optimizer:
    groups = param_groups(model, weight_decay)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}")


def warmup_cosine(
    step: int, total_steps: int, warmup_steps: int, start_factor: float = 0.01, min_ratio: float = 0.01
) -> float:
    """The lr multiplier at optimiser step ``step`` (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        return start_factor + (1.0 - start_factor) * step / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    warmup_steps: int,
    start_factor: float = 0.01,
    min_ratio: float = 0.01,
) -> torch.optim.lr_scheduler.LambdaLR:
    def fn(step: int) -> float:
        return warmup_cosine(step, total_steps, warmup_steps, start_factor, min_ratio)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)


class ModelEma:
    """Exponential moving average of a model's parameters; buffers are copied.

    ``module`` is a plain (non-DDP) copy of the network in eval mode whose ``state_dict`` loads
    into the same architecture, so checkpoints store it as ``ema_state_dict``.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = float(decay)
        self.updates = 0

    def current_decay(self) -> float:
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.current_decay()
        ema_state = self.module.state_dict()
        for name, value in model.state_dict().items():
            target = ema_state[name]
            if value.dtype.is_floating_point:
                target.mul_(d).add_(value.detach(), alpha=1.0 - d)
            else:
                target.copy_(value)

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict, updates: int) -> None:
        self.module.load_state_dict(state)
        self.updates = int(updates)
