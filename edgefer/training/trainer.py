"""The training loop: ``train(cfg) -> TrainResult``. Read it top to bottom like torchvision's reference.

:func:`train` sets up torch (and DDP under ``torchrun``) and ``_train`` runs the steps, each a
function below it in this order: :func:`build_loaders` (splits, sampler, loaders),
:func:`build_learner` (network, EMA, DDP, optimiser, schedule, loss, teacher), :func:`restore_state`
(``resume``: weights, EMA, optimiser, schedule, scaler, history), then per epoch
:func:`train_one_epoch` and :func:`run_validation`, and the records (checkpoints, metrics, summary).

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
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
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
from edgefer.training.checkpoint import ResumeState, load_checkpoint, save_checkpoint
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
    console = _console(cfg.progress and info.is_main)
    run_dir = Path(cfg.out)
    replacing = _claim_run_dir(run_dir, cfg)  # never replace an earlier run (or a file edgefer did not write)

    loaders = build_loaders(cfg, info, device)
    resume_ckpt = _load_resume(cfg, loaders.class_names)
    if info.is_main:  # after the input checks: a typo in --data leaves no empty run directory behind
        ensure_writable_dir(run_dir)
    learner = build_learner(cfg, loaders, info, device)
    state = TrainState()
    if resume_ckpt is not None:
        state = restore_state(cfg, resume_ckpt, learner, loaders.steps_per_epoch)
        console.print(_resume_line(cfg, state.start_epoch))
    # a finished run resumed in its own folder only reports itself: its record stays as it was
    finished = resume_ckpt is not None and state.start_epoch >= cfg.epochs and not replacing
    keep_record = finished and _resolve_resume(cfg.resume).resolve().parent == run_dir.resolve()
    if info.is_main and not keep_record:
        _start_run_dir(run_dir, cfg, replacing, console)
        console.print(_banner(cfg, loaders, learner, info))

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
            row = _epoch_row(epoch, learner, stats, val_loss_sum / max(val_n, 1), report, time.perf_counter() - t0)
            improved = state.record(row)
            if info.is_main:
                _write_epoch(run_dir, cfg, loaders, learner, state, info, _metrics(row, state.best, report), improved)
                console.print(_epoch_line(row, cfg.epochs, improved))
            D.barrier(info)
    except KeyboardInterrupt:
        if info.is_main:
            _interrupted_message(epoch, cfg, run_dir / "last.pt")
        raise

    if not state.history:
        raise TrainingError(f"{cfg.resume} holds no training history; cannot report on it")
    final = _metrics(state.history[-1], state.best, None)
    if info.is_main and not keep_record:
        _write_summary(run_dir, cfg, loaders.class_names, state.history, final)
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


# --------------------------------------------------------------------------------------------
# data


@dataclass
class Loaders:
    """The data of a run as this rank sees it: the training shard, the validation shard, their loaders."""

    class_names: tuple[str, ...]
    preprocessing: Preprocessing
    train_set: AugmentedSubset
    sampler: EpochSampler
    train_loader: DataLoader
    val_loader: DataLoader
    class_counts: np.ndarray  # training images per class (for class-balanced weights)
    rank_batch: int  # images per step on this rank (the global batch over the ranks)
    steps_per_epoch: int
    val_description: str  # where the validation images come from, for the banner

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's data order and augmentation (both functions of (seed, epoch, sample))."""
        self.sampler.set_epoch(epoch)
        self.train_set.set_epoch(epoch)


def build_loaders(cfg: TrainConfig, info: D.DistInfo, device: torch.device) -> Loaders:
    """Open the splits, check they make at least one batch, and build this rank's loaders.

    Validation images are split over ranks by interleaving and the metrics summed over them;
    training batches follow the global-batch semantics of :class:`EpochSampler`.
    """
    train_reader, train_idx, val_reader, val_idx, class_names, val_what = _open_splits(cfg)
    pp = Preprocessing(input_size=cfg.img_size, mean=cfg.mean, std=cfg.std, resize=cfg.resize)
    aug = AugmentConfig(cfg.crop_scale, cfg.crop_ratio, cfg.hflip, cfg.rotation, cfg.color_jitter, cfg.random_erasing)
    train_set = AugmentedSubset(train_reader, train_idx, TrainAugment(pp, aug), seed=cfg.seed)
    val_set = AugmentedSubset(val_reader, np.asarray(val_idx)[info.rank :: info.world], EvalTransform(pp), cfg.seed)
    counts = class_counts(train_set.labels, len(class_names))

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
    loader_kw: dict[str, Any] = {"num_workers": cfg.workers, "pin_memory": device.type == "cuda"}
    return Loaders(
        class_names=class_names,
        preprocessing=pp,
        train_set=train_set,
        sampler=sampler,
        train_loader=DataLoader(train_set, batch_size=rank_batch, sampler=sampler, drop_last=True, **loader_kw),
        val_loader=DataLoader(val_set, batch_size=max(rank_batch, 32), shuffle=False, **loader_kw),
        class_counts=counts,
        rank_batch=rank_batch,
        steps_per_epoch=steps_per_epoch,
        val_description=val_what,
    )


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


# --------------------------------------------------------------------------------------------
# model, loss and optimiser


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


# --------------------------------------------------------------------------------------------
# state and resume


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


def _load_resume(cfg: TrainConfig, class_names: tuple[str, ...]) -> dict[str, Any] | None:
    """The checkpoint ``cfg.resume`` names, checked against this run before anything is built (None without)."""
    if not cfg.resume:
        return None
    path = _resolve_resume(cfg.resume)
    ckpt = load_checkpoint(path)
    _check_resume(ckpt, path, cfg, class_names)
    return ckpt


def restore_state(cfg: TrainConfig, ckpt: dict[str, Any], learner: Learner, steps_per_epoch: int) -> TrainState:
    """Load a training checkpoint into ``learner`` and return the state to continue from.

    Weights, EMA, optimiser, schedule and scaler all come back, so the continued run computes what an
    uninterrupted one would have.
    """
    path = _resolve_resume(cfg.resume)
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


# --------------------------------------------------------------------------------------------
# one epoch


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
    progress = _progress(cfg.progress and info.is_main)
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
# records: what an epoch and a run write, and what they print


def _epoch_row(
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


def _metrics(row: dict[str, Any], best: dict[str, Any], report: ClassificationReport | None) -> dict[str, Any]:
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


def _save(
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


def _write_epoch(
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
        _save(run_dir / "best.pt", cfg, loaders, learner, state, info, epoch, metrics)
    _save(run_dir / "last.pt", cfg, loaders, learner, state, info, epoch, metrics)
    write_metrics_csv(run_dir / "metrics.csv", state.history)
    record_outputs(run_dir, [n for n in RUN_FILES if (run_dir / n).exists()], "train", grouped=False)


def _write_summary(
    run_dir: Path, cfg: TrainConfig, class_names: tuple[str, ...], history: list[dict[str, Any]], final: dict
) -> None:
    """Rank 0 at the end: the training curves and ``summary.json``."""
    plot_training_curves(run_dir / "training_curves.png", history, title=f"{cfg.model} on {Path(cfg.data).name}")
    write_json(run_dir / "summary.json", {"metrics": final, "config": cfg.to_dict(), "class_names": class_names})
    record_outputs(run_dir, [n for n in RUN_FILES if (run_dir / n).exists()], "train", grouped=False)


def _start_run_dir(run_dir: Path, cfg: TrainConfig, replacing: bool, console: Any) -> None:
    """Rank 0 before the first epoch: remove an earlier run (``--overwrite``), write ``config.yaml``."""
    if replacing:
        remove_outputs(run_dir, RUN_FILES)
        console.print(f"[yellow]{run_dir} held an earlier run; its files were removed (--overwrite)[/]")
    _write_config(run_dir / "config.yaml", cfg)
    record_outputs(run_dir, ["config.yaml"], "train", grouped=False)


def _resume_line(cfg: TrainConfig, start_epoch: int) -> str:
    path = _resolve_resume(cfg.resume)
    if start_epoch >= cfg.epochs:  # idempotent: a finished run resumed again just reports itself
        return (
            f"{path} already completed {start_epoch} epochs; nothing to train (pass a larger --epochs to train longer)"
        )
    return f"resuming from {path} at epoch {start_epoch + 1}/{cfg.epochs}"


def _banner(cfg: TrainConfig, loaders: Loaders, learner: Learner, info: D.DistInfo) -> str:
    return (
        f"[bold]{cfg.model}[/] on {cfg.data}: {len(loaders.train_set)} train images, validation on "
        f"{loaders.val_description}; {cfg.epochs} epochs x {loaders.steps_per_epoch} steps, batch {cfg.batch_size}"
        f"{f' ({info.world} processes x {loaders.rank_batch})' if info.enabled else ''}, {learner.device.type}"
        f"{', AMP' if learner.amp else ''}{f', teacher {cfg.teacher}' if learner.teacher_info is not None else ''}"
    )


def _epoch_line(row: dict[str, Any], epochs: int, improved: bool) -> str:
    return (
        f"epoch {row['epoch'] + 1}/{epochs}  loss {row['train_loss']:.4f}  train acc {row['train_acc']:.3f}  "
        f"val acc {row['val_acc']:.4f}  mean class acc {row['val_mean_class_acc']:.4f}  "
        f"{row['images_per_s']:.1f} img/s{'  *best*' if improved else ''}"
    )


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
