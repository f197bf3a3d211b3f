"""Knowledge distillation (Hinton et al., 2015): a small edge student learns from a trained teacher.

loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(student, y)

The T^2 factor keeps the gradient scale of the soft term independent of the temperature. The
teacher is any edgefer checkpoint (its EMA weights when it has them), frozen in eval mode. It
sees the same augmented batch as the student; when the teacher was trained with another input
size or mean/std, the batch is resized and re-normalised for it, so a ResNet-50 trained at 224 px
can teach a MobileNet at 112 px.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from edgefer.errors import CheckpointError
from edgefer.preprocess import Preprocessing
from edgefer.training.checkpoint import build_model, load_checkpoint


def kd_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Mean over the batch of KL(teacher_T || student_T) in nats (without the T^2 factor)."""
    t = temperature
    log_p_s = F.log_softmax(student_logits.float() / t, dim=1)
    log_p_t = F.log_softmax(teacher_logits.float() / t, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)


class DistillationLoss(nn.Module):
    """alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * hard-label loss."""

    def __init__(self, hard_loss: nn.Module, temperature: float = 4.0, alpha: float = 0.7) -> None:
        super().__init__()
        self.hard_loss = hard_loss
        self.temperature = float(temperature)
        self.alpha = float(alpha)

    def forward(
        self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(total loss, the KL term at temperature T, detached, for logging)."""
        kl = kd_kl(student_logits, teacher_logits, self.temperature)
        hard = self.hard_loss(student_logits, target)
        total = self.alpha * self.temperature**2 * kl + (1.0 - self.alpha) * hard
        return total, kl.detach()


class Teacher(nn.Module):
    """A frozen checkpointed model that adapts a student's input batch to its own preprocessing."""

    def __init__(self, model: nn.Module, teacher_pp: Preprocessing, student_pp: Preprocessing) -> None:
        super().__init__()
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.size = teacher_pp.input_size if teacher_pp.input_size != student_pp.input_size else None
        same_norm = tuple(teacher_pp.mean) == tuple(student_pp.mean) and tuple(teacher_pp.std) == tuple(student_pp.std)
        if teacher_pp.color_order != student_pp.color_order:
            raise CheckpointError(
                f"teacher expects {teacher_pp.color_order} input but the student is trained on "
                f"{student_pp.color_order}; train both with the same colour order"
            )
        self.renorm = not same_norm

        def buf(v: tuple[float, ...]) -> torch.Tensor:
            return torch.tensor(v, dtype=torch.float32).view(1, 3, 1, 1)

        self.register_buffer("s_mean", buf(student_pp.mean))
        self.register_buffer("s_std", buf(student_pp.std))
        self.register_buffer("t_mean", buf(teacher_pp.mean))
        self.register_buffer("t_std", buf(teacher_pp.std))

    def train(self, mode: bool = True) -> Teacher:  # the teacher always stays in eval mode
        super().train(False)
        return self

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.renorm:
            x = (x * self.s_std + self.s_mean - self.t_mean) / self.t_std
        if self.size is not None:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.model(x)


def load_teacher(
    path: str | os.PathLike, class_names: tuple[str, ...] | list[str], student_pp: Preprocessing
) -> tuple[Teacher, dict]:
    """Load a teacher checkpoint and check that it predicts the same classes in the same order."""
    ckpt = load_checkpoint(path)
    teacher_classes = tuple(ckpt["class_names"])
    if teacher_classes != tuple(class_names):
        raise CheckpointError(
            f"teacher {path} predicts {len(teacher_classes)} classes {list(teacher_classes)} but the "
            f"dataset has {len(class_names)} classes {list(class_names)}; distillation needs the same classes"
        )
    model = build_model(ckpt)
    pp = Preprocessing.from_dict(ckpt["preprocessing"])
    return Teacher(model, pp, student_pp), {"model": ckpt["model"], "path": str(path)}
