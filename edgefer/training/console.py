"""What a training run prints: the banner, one line per epoch, the resume and interrupt messages
(on stderr, through rich), and the per-step progress bar."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgefer.training.checkpoint import load_checkpoint
from edgefer.training.config import TrainConfig
from edgefer.training.resume import resolve_resume

if TYPE_CHECKING:  # pragma: no cover
    from edgefer.training import distributed as D
    from edgefer.training.learner import Learner
    from edgefer.training.loaders import Loaders


def make_console(enabled: bool):
    """rich console on stderr; ``enabled=False`` (``--quiet`` or a rank other than 0) prints nothing."""
    from rich.console import Console

    return Console(stderr=True, quiet=not enabled)


def resume_line(cfg: TrainConfig, start_epoch: int) -> str:
    """Where a resumed run continues from (or that a finished run has nothing left to train)."""
    path = resolve_resume(cfg.resume)
    if start_epoch >= cfg.epochs:  # idempotent: a finished run resumed again just reports itself
        return (
            f"{path} already completed {start_epoch} epochs; nothing to train (pass a larger --epochs to train longer)"
        )
    return f"resuming from {path} at epoch {start_epoch + 1}/{cfg.epochs}"


def banner(cfg: TrainConfig, loaders: Loaders, learner: Learner, info: D.DistInfo) -> str:
    """The run in one line: model, data, validation source, epochs x steps, batch, device."""
    return (
        f"[bold]{cfg.model}[/] on {cfg.data}: {len(loaders.train_set)} train images, validation on "
        f"{loaders.val_description}; {cfg.epochs} epochs x {loaders.steps_per_epoch} steps, batch {cfg.batch_size}"
        f"{f' ({info.world} processes x {loaders.rank_batch})' if info.enabled else ''}, {learner.device.type}"
        f"{', AMP' if learner.amp else ''}{f', teacher {cfg.teacher}' if learner.teacher_info is not None else ''}"
    )


def epoch_line(row: dict[str, Any], epochs: int, improved: bool) -> str:
    """An epoch's losses, accuracies and throughput; ``*best*`` when it improved."""
    return (
        f"epoch {row['epoch'] + 1}/{epochs}  loss {row['train_loss']:.4f}  train acc {row['train_acc']:.3f}  "
        f"val acc {row['val_acc']:.4f}  mean class acc {row['val_mean_class_acc']:.4f}  "
        f"{row['images_per_s']:.1f} img/s{'  *best*' if improved else ''}"
    )


def interrupted_message(epoch: int, cfg: TrainConfig, last_path: Path) -> None:
    """On Ctrl-C: which epoch was lost, what ``last.pt`` holds and the command that resumes it (stderr)."""
    msg = [f"interrupted during epoch {epoch + 1}/{cfg.epochs}."]
    if last_path.exists():
        done = int(load_checkpoint(last_path)["epoch"]) + 1
        msg.append(f"{last_path} holds the last completed epoch ({done}).")
        msg.append(f"Resume with: edgefer train --resume {last_path}")
    else:
        msg.append("No epoch was completed, so no checkpoint was written.")
    print(" ".join(msg), file=sys.stderr)


def progress_bar(enabled: bool):
    """The per-step bar of an epoch (transient), or a stand-in with the same methods that draws nothing."""
    if not enabled:
        return _NullProgress()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
        transient=True,
    )


class _NullProgress(contextlib.nullcontext):
    def add_task(self, *args: Any, **kwargs: Any) -> int:
        return 0

    def update(self, *args: Any, **kwargs: Any) -> None:
        return None
