"""The training loop: ``train(cfg) -> TrainResult``. Read it top to bottom like torchvision's reference.

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
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from edgefer.errors import CheckpointError, DatasetError, EdgeferError
from edgefer.metrics import ClassificationReport, classification_report
from edgefer.preprocess import Preprocessing
from edgefer.training import distributed as D
from edgefer.training.augment import AugmentConfig, EvalTransform, TrainAugment
from edgefer.training.checkpoint import load_checkpoint, save_checkpoint
from edgefer.training.config import ConfigError, TrainConfig
from edgefer.training.data import AugmentedSubset, EpochSampler, class_counts, class_weights, stratified_split
from edgefer.training.distill import DistillationLoss, load_teacher
from edgefer.training.history import plot_training_curves, write_metrics_csv
from edgefer.training.optim import ModelEma, build_optimizer, build_scheduler
from edgefer.utils.io import ensure_writable_dir, write_json, write_text
from edgefer.utils.outputs import check_outputs, record_outputs, remove_outputs

#: Called after every optimiser step with (epoch, step_in_epoch, global_step).
StepHook = Callable[[int, int, int], None]


class TrainingError(EdgeferError):
    """A run that cannot continue (e.g. the loss became NaN)."""


@dataclass
class TrainResult:
    """What a finished run produced."""

    run_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# setup helpers


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available (use --device cpu)")
    return dev


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, rank, 0x70C4]).generate_state(1)[0])


def _rng_states() -> dict[str, Any]:
    states: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _open_splits(cfg: TrainConfig):
    """(train reader, train indices, val reader, val indices, class names, val description)."""
    from edgefer.data import open_dataset

    train_reader = open_dataset(
        cfg.data, "train", on_error=cfg.on_error, allow_missing_classes=cfg.allow_missing_classes
    )
    labels = np.asarray(train_reader.labels, dtype=np.int64)
    if cfg.val_split > 0:
        train_idx, val_idx = stratified_split(labels, cfg.val_split, cfg.seed)
        val_reader, what = train_reader, f"{len(val_idx)} images held out of train (val_split={cfg.val_split})"
    else:
        train_idx = np.arange(len(labels))
        val_reader = open_dataset(cfg.data, "test", on_error=cfg.on_error)
        val_idx = np.arange(len(val_reader))
        what = f"test split ({len(val_idx)} images), as RAF-DB papers do"
        if tuple(val_reader.class_names) != tuple(train_reader.class_names):
            raise DatasetError(
                f"train and test splits of {cfg.data} have different classes: "
                f"{list(train_reader.class_names)} vs {list(val_reader.class_names)}"
            )
    if len(val_idx) == 0:
        raise DatasetError(f"the validation set of {cfg.data} is empty")
    return train_reader, train_idx, val_reader, val_idx, tuple(train_reader.class_names), what


def _console(enabled: bool):
    from rich.console import Console

    return Console(stderr=True, quiet=not enabled)


#: the files a training run writes into its directory
RUN_FILES = ("last.pt", "best.pt", "metrics.csv", "training_curves.png", "config.yaml", "summary.json")
_CHECKPOINTS = ("last.pt", "best.pt")


def _claim_run_dir(run_dir: Path, cfg: TrainConfig) -> bool:
    """Check ``run_dir`` before any work; True when an earlier run there is to be replaced.

    Continuing (``resume`` from this directory) is always fine. Otherwise a checkpoint of an
    earlier run is refused unless ``overwrite``, and a file of the same name that edgefer did not
    write (``--out .`` beside the user's own ``config.yaml``) is refused always; the output policy
    of :mod:`edgefer.utils.outputs`.
    """
    if cfg.resume and _resolve_resume(cfg.resume).resolve().parent == run_dir.resolve():
        return False
    hint = f"pass --resume {run_dir / 'last.pt'} to continue it, --overwrite to start afresh, or another --out"
    check_outputs(run_dir, _CHECKPOINTS, overwrite=cfg.overwrite, hint=hint)
    check_outputs(run_dir, [n for n in RUN_FILES if n not in _CHECKPOINTS], overwrite=True)
    return cfg.overwrite and any((run_dir / n).exists() for n in RUN_FILES)


def _resolve_resume(path: str) -> Path:
    p = Path(path)
    return p / "last.pt" if p.is_dir() else p


# --------------------------------------------------------------------------------------------
# validation


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


# --------------------------------------------------------------------------------------------
# the loop


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
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_bench = torch.backends.cudnn.benchmark
    try:
        if cfg.deterministic:
            if device.type == "cuda":  # cuBLAS needs this for reproducible matmuls (read at first use)
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        else:
            torch.backends.cudnn.benchmark = device.type == "cuda"
        return _train(cfg, device, info, on_step)
    finally:
        torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn_only)
        torch.backends.cudnn.benchmark = prev_bench
        D.cleanup(info)


def _train(cfg: TrainConfig, device: torch.device, info: D.DistInfo, on_step: StepHook | None) -> TrainResult:
    from edgefer.models import create_model

    console = _console(cfg.progress and info.is_main)
    run_dir = Path(cfg.out)
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    cuda = device.type == "cuda"
    use_amp = cfg.amp and cuda
    channels_last = cfg.channels_last and cuda

    # ---- the run directory: never replace an earlier run (or a file edgefer did not write) silently
    replacing = _claim_run_dir(run_dir, cfg)

    # ---- data
    train_reader, train_idx, val_reader, val_idx, class_names, val_what = _open_splits(cfg)
    if info.is_main:  # after the data checks: a typo in --data leaves no empty run directory behind
        ensure_writable_dir(run_dir)
    k = len(class_names)
    pp = Preprocessing(input_size=cfg.img_size, mean=cfg.mean, std=cfg.std, resize=cfg.resize)
    aug = AugmentConfig(cfg.crop_scale, cfg.crop_ratio, cfg.hflip, cfg.rotation, cfg.color_jitter, cfg.random_erasing)
    train_set = AugmentedSubset(train_reader, train_idx, TrainAugment(pp, aug), seed=cfg.seed)
    val_set = AugmentedSubset(val_reader, np.asarray(val_idx)[info.rank :: info.world], EvalTransform(pp), cfg.seed)
    counts = class_counts(train_set.labels, k)

    if cfg.batch_size % info.world:
        raise ConfigError(f"batch_size {cfg.batch_size} (global) is not divisible by the {info.world} processes")
    rank_batch = cfg.batch_size // info.world
    sample_w = None
    if cfg.balance == "sampler":
        sample_w = class_weights(counts, cfg.balance_method, cfg.balance_beta)[train_set.labels]
    sampler = EpochSampler(len(train_set), seed=cfg.seed, weights=sample_w, rank=info.rank, world=info.world)
    steps_per_epoch = len(sampler) // rank_batch
    if steps_per_epoch < 1:
        raise ConfigError(
            f"the training split has {len(train_set)} images, fewer than one batch of {cfg.batch_size}; "
            "lower --batch-size"
        )
    loader_kw: dict[str, Any] = {"num_workers": cfg.workers, "pin_memory": cuda}
    train_loader = DataLoader(train_set, batch_size=rank_batch, sampler=sampler, drop_last=True, **loader_kw)
    val_loader = DataLoader(val_set, batch_size=max(rank_batch, 32), shuffle=False, **loader_kw)

    # ---- model
    torch.manual_seed(cfg.seed)
    model_args = {"dropout": cfg.dropout, **cfg.model_args}
    pretrained = cfg.pretrained if cfg.pretrained == "imagenet" else None
    model = create_model(cfg.model, num_classes=k, pretrained=pretrained, **model_args)

    resume_ckpt = None
    if cfg.resume:
        resume_path = _resolve_resume(cfg.resume)
        resume_ckpt = load_checkpoint(resume_path)
        _check_resume(resume_ckpt, resume_path, cfg, class_names)
        try:
            model.load_state_dict(resume_ckpt["state_dict"])
        except RuntimeError as exc:
            raise CheckpointError(f"{resume_path} does not fit model {cfg.model!r}: {str(exc)[:300]}") from exc
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    ema = ModelEma(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    if ema is not None and resume_ckpt is not None and resume_ckpt.get("ema_state_dict"):
        ema.load_state_dict(resume_ckpt["ema_state_dict"], resume_ckpt.get("extra", {}).get("ema_updates", 0))

    raw_model = model
    if info.enabled:
        if cfg.sync_bn and cuda:
            raw_model = model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if cuda else None)

    # ---- optimisation
    optimizer = build_optimizer(raw_model, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum, cfg.nesterov)
    total_steps = cfg.epochs * steps_per_epoch
    warmup_steps = round(cfg.warmup_epochs * steps_per_epoch)
    scheduler = build_scheduler(optimizer, total_steps, warmup_steps, cfg.warmup_start_factor, cfg.min_lr_ratio)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    loss_w = None
    if cfg.balance == "loss":
        loss_w = torch.tensor(class_weights(counts, cfg.balance_method, cfg.balance_beta), dtype=torch.float32)
        loss_w = loss_w.to(device)
    criterion = nn.CrossEntropyLoss(weight=loss_w, label_smoothing=cfg.label_smoothing)
    teacher = kd_loss = teacher_info = None
    if cfg.teacher:
        teacher, teacher_info = load_teacher(cfg.teacher, class_names, pp)
        teacher.to(device)
        if channels_last:
            teacher.to(memory_format=torch.channels_last)
        kd_loss = DistillationLoss(criterion, cfg.kd_temperature, cfg.kd_alpha)

    # ---- state (fresh or resumed)
    start_epoch, global_step, history = 0, 0, []
    best = {"val_acc": -1.0, "epoch": -1}
    if resume_ckpt is not None:
        optimizer.load_state_dict(resume_ckpt["optimizer"])
        if resume_ckpt.get("scheduler"):
            scheduler.load_state_dict(resume_ckpt["scheduler"])
        if use_amp and resume_ckpt.get("scaler"):
            scaler.load_state_dict(resume_ckpt["scaler"])
        extra = resume_ckpt.get("extra", {})
        start_epoch = int(resume_ckpt["epoch"]) + 1
        global_step = int(extra.get("global_step", start_epoch * steps_per_epoch))
        history = list(extra.get("history", []))
        best = dict(extra.get("best", best))
        if start_epoch >= cfg.epochs:  # idempotent: a finished run resumed again just reports itself
            console.print(f"{_resolve_resume(cfg.resume)} already completed {start_epoch} epochs; nothing to train "
                          "(pass a larger --epochs to train longer)")  # fmt: skip
        else:
            console.print(f"resuming from {_resolve_resume(cfg.resume)} at epoch {start_epoch + 1}/{cfg.epochs}")

    if info.is_main:
        if replacing:
            remove_outputs(run_dir, RUN_FILES)
            console.print(f"[yellow]{run_dir} held an earlier run; its files were removed (--overwrite)[/]")
        _write_config(run_dir / "config.yaml", cfg)
        record_outputs(run_dir, ["config.yaml"], "train", grouped=False)
        console.print(
            f"[bold]{cfg.model}[/] on {cfg.data}: {len(train_set)} train images, validation on {val_what}; "
            f"{cfg.epochs} epochs x {steps_per_epoch} steps, batch {cfg.batch_size}"
            f"{f' ({info.world} processes x {rank_batch})' if info.enabled else ''}, {device.type}"
            f"{', AMP' if use_amp else ''}{f', teacher {cfg.teacher}' if teacher is not None else ''}"
        )

    def save(epoch: int, metrics: dict[str, Any], path: Path = last_path) -> None:
        save_checkpoint(
            path,
            model=raw_model,
            model_name=cfg.model,
            model_args=model_args,
            class_names=class_names,
            preprocessing=pp,
            epoch=epoch,
            ema_model=ema.module if ema is not None else None,
            optimizer=optimizer,
            scheduler=scheduler,
            scaler=scaler if use_amp else None,
            metrics=metrics,
            train_config=cfg.to_dict(),
            rng=_rng_states(),
            extra={
                "history": history,
                "best": best,
                "global_step": global_step,
                "ema_updates": ema.updates if ema is not None else 0,
                "world_size": info.world,
                "teacher": teacher_info,
            },
        )

    epoch = start_epoch
    try:
        for epoch in range(start_epoch, cfg.epochs):
            torch.manual_seed(_epoch_seed(cfg.seed, epoch, info.rank))
            sampler.set_epoch(epoch)
            train_set.set_epoch(epoch)
            model.train()
            t0 = time.perf_counter()
            stats = torch.zeros(4, dtype=torch.float64, device=device)  # loss sum, correct, n, kl sum
            progress = _progress(cfg.progress and info.is_main)
            with progress:
                task = progress.add_task(f"epoch {epoch + 1}/{cfg.epochs}", total=steps_per_epoch, info="")
                for step, (x, y) in enumerate(train_loader):
                    x = x.to(device, non_blocking=True)
                    y = y.to(device, non_blocking=True)
                    if channels_last:
                        x = x.contiguous(memory_format=torch.channels_last)
                    with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                        logits = model(x)
                        if kd_loss is not None:
                            loss, kl = kd_loss(logits, teacher(x), y)
                        else:
                            loss, kl = criterion(logits, y), None
                    loss_value = float(loss.detach())
                    if not math.isfinite(loss_value):
                        raise TrainingError(
                            f"loss became {loss_value} at epoch {epoch + 1} step {step + 1}; "
                            "lower --lr or keep gradient clipping on"
                        )
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    if cfg.grad_clip > 0:
                        scaler.unscale_(optimizer)
                        nn.utils.clip_grad_norm_(raw_model.parameters(), cfg.grad_clip)
                    scaler.step(optimizer)
                    scaler.update()
                    scheduler.step()
                    global_step += 1
                    if ema is not None:
                        ema.update(raw_model)
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
                        on_step(epoch, step, global_step)
            train_time = time.perf_counter() - t0
            D.all_reduce_sum(stats, info)

            eval_model = ema.module if ema is not None else raw_model
            cm, val_loss_sum, val_n = run_validation(
                eval_model, val_loader, device, k, info, amp=use_amp, channels_last=channels_last
            )
            report = report_from_confusion(cm, class_names)
            row = {
                "epoch": epoch,
                "lr": optimizer.param_groups[0]["lr"],
                "train_loss": float(stats[0] / stats[2]),
                "train_acc": float(stats[1] / stats[2]),
                "train_kl": float(stats[3] / stats[2]) if teacher is not None else None,
                "val_loss": val_loss_sum / max(val_n, 1),
                "val_acc": report.accuracy,
                "val_mean_class_acc": report.mean_class_accuracy,
                "val_macro_f1": report.macro_f1,
                "images_per_s": float(stats[2]) / train_time,
                "epoch_time_s": time.perf_counter() - t0,
                "best": False,
            }
            improved = report.accuracy > best["val_acc"]
            if improved:
                best = {"val_acc": report.accuracy, "epoch": epoch}
                row["best"] = True
            history.append(row)
            metrics = _metrics(row, best, report)
            if info.is_main:
                # best.pt before last.pt: a run killed between the two writes must not resume from an
                # epoch recorded as best whose best.pt was never written (it would never be written).
                if improved:
                    save(epoch, metrics, best_path)
                save(epoch, metrics)
                write_metrics_csv(run_dir / "metrics.csv", history)
                record_outputs(run_dir, [n for n in RUN_FILES if (run_dir / n).exists()], "train", grouped=False)
                console.print(
                    f"epoch {epoch + 1}/{cfg.epochs}  loss {row['train_loss']:.4f}  train acc {row['train_acc']:.3f}  "
                    f"val acc {row['val_acc']:.4f}  mean class acc {row['val_mean_class_acc']:.4f}  "
                    f"{row['images_per_s']:.1f} img/s{'  *best*' if improved else ''}"
                )
            D.barrier(info)
    except KeyboardInterrupt:
        if info.is_main:
            _interrupted_message(epoch, cfg, last_path)
        raise

    if not history:
        raise TrainingError(f"{cfg.resume} holds no training history; cannot report on it")
    final = _metrics(history[-1], best, None)
    if info.is_main:
        plot_training_curves(run_dir / "training_curves.png", history, title=f"{cfg.model} on {Path(cfg.data).name}")
        write_json(run_dir / "summary.json", {"metrics": final, "config": cfg.to_dict(), "class_names": class_names})
        record_outputs(run_dir, [n for n in RUN_FILES if (run_dir / n).exists()], "train", grouped=False)
    D.barrier(info)
    return TrainResult(run_dir, best_path, last_path, final, history)


def _metrics(row: dict[str, Any], best: dict[str, Any], report: ClassificationReport | None) -> dict[str, Any]:
    m = {
        "epoch": int(row["epoch"]),
        "train_loss": row["train_loss"],
        "train_acc": row["train_acc"],
        "val_loss": row["val_loss"],
        "val_acc": row["val_acc"],
        "val_accuracy": row["val_acc"],
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


def _interrupted_message(epoch: int, cfg: TrainConfig, last_path: Path) -> None:
    msg = [f"interrupted during epoch {epoch + 1}/{cfg.epochs}."]
    if last_path.exists():
        done = int(load_checkpoint(last_path)["epoch"]) + 1
        msg.append(f"{last_path} holds the last completed epoch ({done}).")
        msg.append(f"Resume with: edgefer train --resume {last_path}")
    else:
        msg.append("No epoch was completed, so no checkpoint was written.")
    print(" ".join(msg), file=sys.stderr)


def _write_config(path: Path, cfg: TrainConfig) -> None:
    import yaml

    write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def _progress(enabled: bool):
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
