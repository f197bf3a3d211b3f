"""What a training run writes into its directory and when: claiming the directory, the checkpoints
and ``metrics.csv`` after every epoch, ``config.yaml`` before the first and the curves and
``summary.json`` after the last (the file list is :data:`RUN_FILES`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from edgefer.metrics import ClassificationReport
from edgefer.training import distributed as D
from edgefer.training.checkpoint import ResumeState, save_checkpoint
from edgefer.training.config import TrainConfig
from edgefer.training.epoch import EpochStats
from edgefer.training.history import plot_training_curves, write_metrics_csv
from edgefer.training.learner import Learner
from edgefer.training.loaders import Loaders
from edgefer.training.resume import TrainState, resolve_resume
from edgefer.utils.io import write_json, write_text
from edgefer.utils.outputs import check_outputs, record_outputs, remove_outputs


def _rng_states() -> dict[str, Any]:
    states: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


#: the files a training run writes into its directory
RUN_FILES = ("last.pt", "best.pt", "metrics.csv", "training_curves.png", "config.yaml", "summary.json")


_CHECKPOINTS = ("last.pt", "best.pt")


def claim_run_dir(run_dir: Path, cfg: TrainConfig) -> bool:
    """Check ``run_dir`` before any work; True when an earlier run there is to be replaced.

    Continuing (``resume`` from this directory) is always fine. Otherwise a checkpoint of an
    earlier run is refused unless ``overwrite``, and a file of the same name that edgefer did not
    write (``--out .`` beside the user's own ``config.yaml``) is refused always; the output policy
    of :mod:`edgefer.utils.outputs`.
    """
    if cfg.resume and resolve_resume(cfg.resume).resolve().parent == run_dir.resolve():
        return False
    hint = f"pass --resume {run_dir / 'last.pt'} to continue it, --overwrite to start afresh, or another --out"
    check_outputs(run_dir, _CHECKPOINTS, overwrite=cfg.overwrite, hint=hint)
    check_outputs(run_dir, [n for n in RUN_FILES if n not in _CHECKPOINTS], overwrite=True)
    return cfg.overwrite and any((run_dir / n).exists() for n in RUN_FILES)


def epoch_row(
    epoch: int, learner: Learner, stats: EpochStats, val_loss: float, report: ClassificationReport, seconds: float
) -> dict[str, Any]:
    """The epoch's line of the history (and of ``metrics.csv``); ``best`` is set by :meth:`TrainState.record`."""
    return {
        "epoch": epoch,
        "lr": learner.optimizer.param_groups[0]["lr"],
        "train_loss": stats.loss,
        "train_acc": stats.accuracy,
        "train_kl": stats.kl,
        "val_loss": val_loss,
        "val_acc": report.accuracy,
        "val_mean_class_acc": report.mean_class_accuracy,
        "val_macro_f1": report.macro_f1,
        "images_per_s": stats.images / stats.seconds,
        "epoch_time_s": seconds,
        "best": False,
    }


def run_metrics(row: dict[str, Any], best: dict[str, Any], report: ClassificationReport | None) -> dict[str, Any]:
    """The metrics of a checkpoint and of ``summary.json``: an epoch's row, the best epoch, the full report."""
    m = {
        "epoch": int(row["epoch"]),
        "train_loss": row["train_loss"],
        "train_acc": row["train_acc"],
        "val_loss": row["val_loss"],
        "val_acc": row["val_acc"],
        "val_mean_class_acc": row["val_mean_class_acc"],
        "val_macro_f1": row["val_macro_f1"],
        "best_val_acc": best["val_acc"],
        "best_epoch": int(best["epoch"]),
    }
    if row.get("train_kl") is not None:
        m["train_kl"] = row["train_kl"]
    if report is not None:
        m["val_report"] = report.to_dict()
    return m


def save_training_checkpoint(
    path: Path,
    cfg: TrainConfig,
    loaders: Loaders,
    learner: Learner,
    state: TrainState,
    info: D.DistInfo,
    epoch: int,
    metrics: dict[str, Any],
) -> None:
    """One training checkpoint: everything :func:`restore_state` needs, plus what later stages read."""
    save_checkpoint(
        path,
        model=learner.raw_model,
        model_name=cfg.model,
        model_args=learner.model_args,
        class_names=loaders.class_names,
        preprocessing=loaders.preprocessing,
        epoch=epoch,
        resume=ResumeState(
            ema_model=learner.ema.module if learner.ema is not None else None,
            optimizer=learner.optimizer,
            scheduler=learner.scheduler,
            scaler=learner.scaler if learner.amp else None,
            rng=_rng_states(),
        ),
        metrics=metrics,
        train_config=cfg.to_dict(),
        extra={
            "history": state.history,
            "best": state.best,
            "global_step": state.global_step,
            "ema_updates": learner.ema.updates if learner.ema is not None else 0,
            "world_size": info.world,
            "teacher": learner.teacher_info,
        },
    )


def write_epoch(
    run_dir: Path,
    cfg: TrainConfig,
    loaders: Loaders,
    learner: Learner,
    state: TrainState,
    info: D.DistInfo,
    metrics: dict[str, Any],
    improved: bool,
) -> None:
    """Rank 0 after every epoch: best.pt (when improved), last.pt, metrics.csv."""
    epoch = int(metrics["epoch"])
    # best.pt before last.pt: a run killed between the two writes must not resume from an
    # epoch recorded as best whose best.pt was never written (it would never be written).
    if improved:
        save_training_checkpoint(run_dir / "best.pt", cfg, loaders, learner, state, info, epoch, metrics)
    save_training_checkpoint(run_dir / "last.pt", cfg, loaders, learner, state, info, epoch, metrics)
    write_metrics_csv(run_dir / "metrics.csv", state.history)
    record_outputs(run_dir, [n for n in RUN_FILES if (run_dir / n).exists()], "train", grouped=False)


def write_summary(
    run_dir: Path, cfg: TrainConfig, class_names: tuple[str, ...], history: list[dict[str, Any]], final: dict
) -> None:
    """Rank 0 at the end: the training curves and ``summary.json``."""
    plot_training_curves(run_dir / "training_curves.png", history, title=f"{cfg.model} on {Path(cfg.data).name}")
    write_json(run_dir / "summary.json", {"metrics": final, "config": cfg.to_dict(), "class_names": class_names})
    record_outputs(run_dir, [n for n in RUN_FILES if (run_dir / n).exists()], "train", grouped=False)


def start_run_dir(run_dir: Path, cfg: TrainConfig, replacing: bool, console: Any) -> None:
    """Rank 0 before the first epoch: remove an earlier run (``--overwrite``), write ``config.yaml``."""
    if replacing:
        remove_outputs(run_dir, RUN_FILES)
        console.print(f"[yellow]{run_dir} held an earlier run; its files were removed (--overwrite)[/]")
    _write_config(run_dir / "config.yaml", cfg)
    record_outputs(run_dir, ["config.yaml"], "train", grouped=False)


def _write_config(path: Path, cfg: TrainConfig) -> None:
    import yaml

    write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
