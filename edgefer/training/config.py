"""Training configuration: one dataclass, filled from a YAML recipe and overridden by flags.

A recipe is a flat YAML mapping of :class:`TrainConfig` fields. ``load_config(name_or_path,
overrides)`` reads it and applies the overrides (the CLI flags that were given), so the flags
always win. A recipe can be named by path or by the name of a recipe shipped in
``edgefer/recipes`` (``msff_resnet50_rafdb`` or ``msff_resnet50_rafdb.yaml``).
"""

from __future__ import annotations

import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from edgefer.errors import EdgeferError
from edgefer.preprocess import IMAGENET_MEAN, IMAGENET_STD
from edgefer.utils.limits import MAX_BATCH, MAX_IMG_SIZE
from edgefer.utils.options import flag


class ConfigError(EdgeferError):
    """A training recipe or option that cannot be used."""


_OPTIMIZERS = ("sgd", "adamw")
_BALANCE = ("none", "loss", "sampler")
_BALANCE_METHODS = ("inverse", "effective")
_RESIZE = ("stretch", "center_crop")


#: AdamW's peak learning rate when no recipe or ``--lr`` sets one. From scratch it is 3e-3: with
#: 1e-3 (the old default for everything) ``edgefer train --data SYNTH --model msff_mobilenetv3
#: --epochs 3 --img-size 64`` ended at the class prior (40.5 % test, mean-class 17.6 %; prior 37.3 %);
#: with 3e-3 (and the default 1-epoch warm-up) it reached 53.9 % / 35.9 % after the same 3 epochs
#: (benchmarks/learning_probe.md has every variant), and the demo recipe (3e-3) learns on
#: five seeds out of five (benchmarks/demo.md, benchmarks/learning_probe.md). A shorter warm-up
#: alone did not help (38.9 %). Fine-tuning ImageNet weights keeps the gentler 1e-3, so the
#: pretrained features are not washed out in the first epochs.
ADAMW_LR_SCRATCH = 3e-3
ADAMW_LR_PRETRAINED = 1e-3
#: SGD keeps the old default (recipes that use SGD set their own, e.g. msff_resnet50_rafdb).
SGD_LR = 1e-3


def default_lr(optimizer: str, pretrained: str | None) -> float:
    """The learning rate used when none is given: see :data:`ADAMW_LR_SCRATCH`."""
    if optimizer == "adamw":
        return ADAMW_LR_PRETRAINED if pretrained else ADAMW_LR_SCRATCH
    return SGD_LR


@dataclass
class TrainConfig:
    """Every knob of a training run (see ``edgefer/recipes/*.yaml`` for complete examples).

    Validation: RAF-DB ships only train and test, and the papers report the accuracy on the test
    split, which they also use to pick the best epoch. ``val_split=0`` does the same here (the
    ``test`` split validates); ``val_split=0.1`` instead holds out a stratified 10 % of train,
    chosen deterministically from ``seed``, and leaves test untouched.

    Each field a flag sets carries it in its metadata (``--val-fraction`` for ``val_split``, ``--arch``
    for ``model``, ``--batch`` for ``batch_size``); ``edgefer train`` is built from them.

    ``batch_size`` is the *global* batch: under ``torchrun`` each of N processes gets
    ``batch_size / N`` samples per step, so a recipe means the same on 1 or 8 GPUs.
    """

    data: str = flag(MISSING, "--data", help="Dataset root (RAF-DB, FER2013 csv, image folders).")
    model: str = flag(
        MISSING, "--arch", aliases=("--model",), help="Registered architecture name (see `edgefer models`)."
    )
    out: str = flag(MISSING, "--out", help="Run directory (default runs/<arch>).")
    epochs: int = flag(30, "--epochs", help="Training epochs.")
    batch_size: int = flag(64, "--batch", aliases=("--batch-size",), help="Global batch (split across DDP processes).")
    img_size: int = flag(112, "--img-size", help="Square input size in pixels.")
    lr: float | None = flag(
        None, "--lr", type=float, help="Peak learning rate (after warm-up; default by optimizer)."
    )  # None: default_lr(optimizer, pretrained), resolved on construction
    seed: int = flag(0, "--seed", help="Random seed (the same seed gives the same run).")
    workers: int = flag(2, "--workers", help="Data-loader worker processes.")
    progress: bool = flag(True, None, false="--quiet", help="No progress bars or epoch lines.")

    # optimisation
    optimizer: str = flag("adamw", "--optimizer", help="sgd or adamw.")  # sgd | adamw
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = flag(
        0.05, "--weight-decay", help="Weight decay (not on biases and norm weights)."
    )  # not applied to biases and norm weights
    warmup_epochs: float = flag(1.0, "--warmup-epochs", help="Linear learning-rate warm-up, in epochs.")
    warmup_start_factor: float = 0.01
    min_lr_ratio: float = 0.01  # cosine floor as a fraction of lr
    label_smoothing: float = flag(0.1, "--label-smoothing", help="Label smoothing of the cross-entropy.")
    balance: str = flag(
        "none", "--balance", help="none, loss (class-weighted CE) or sampler."
    )  # none | loss (class-weighted CE) | sampler (WeightedRandomSampler-like)
    balance_method: str = "inverse"  # inverse | effective (Cui et al., CVPR 2019)
    balance_beta: float = 0.999
    grad_clip: float = flag(5.0, "--grad-clip", help="Max gradient norm (0 = off).")  # max global grad norm; 0 disables
    ema_decay: float = flag(
        0.0, "--ema-decay", help="Weight EMA decay per step (0 = off)."
    )  # 0 disables; e.g. 0.999 (per step)

    # augmentation (train only; eval uses edgefer.preprocess.preprocess_image). The defaults are
    # deliberately light, for short runs and fine-tuning; the shipped recipes for long runs use the
    # full strength of the FER papers (crop 0.8-1.0, +-10 deg, jitter 0.2, random erasing 0.25).
    crop_scale: tuple[float, float] = (0.9, 1.0)
    crop_ratio: tuple[float, float] = (0.9, 1.1)
    hflip: float = 0.5
    rotation: float = 5.0  # degrees, uniform in [-rotation, rotation]
    color_jitter: float = 0.1  # brightness/contrast/saturation strength
    random_erasing: float = 0.0  # probability

    # model
    pretrained: str | None = flag(None, "--pretrained", type=str, help="none or imagenet.")  # None | "imagenet"
    dropout: float = flag(0.0, "--dropout", help="Dropout before the classifier.")
    model_args: dict[str, Any] = field(default_factory=dict)

    # preprocessing recorded in the checkpoint (the one source of truth downstream)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    resize: str = "stretch"  # stretch | center_crop

    # knowledge distillation
    teacher: str | None = flag(
        None, "--teacher", type=str, help="Teacher checkpoint for knowledge distillation."
    )  # path of a trained teacher checkpoint
    kd_temperature: float = flag(4.0, "--kd-temperature", help="Distillation temperature.")
    kd_alpha: float = flag(0.7, "--kd-alpha", help="Weight of the soft (teacher) loss.")

    # data
    val_split: float = flag(
        0.0,
        "--val-fraction",
        aliases=("--val-split",),
        help="Hold out this train fraction for validation (0 = use test).",
    )  # 0: validate on the test split (RAF-DB papers); else a train fraction
    on_error: str = flag(
        "skip", "--on-error", help="Unreadable images: skip (counted) or raise."
    )  # unreadable images: skip (counted) | raise
    allow_missing_classes: bool = flag(
        False, "--allow-missing-classes", help="Train even if the train split lacks some class."
    )  # a train split without some class is an error unless set

    # runtime
    device: str = flag("auto", "--device", help="auto, cpu, cuda or cuda:N.")  # auto | cpu | cuda | cuda:N
    amp: bool = flag(True, "--amp", false="--no-amp", help="Mixed precision (CUDA only).")  # CUDA only
    channels_last: bool = flag(
        True, "--channels-last", false="--no-channels-last", help="Channels-last memory format (CUDA only)."
    )  # CUDA only
    sync_bn: bool = False  # SyncBatchNorm under DDP on CUDA
    deterministic: bool = True
    resume: str | None = flag(None, "--resume", type=str, help="Checkpoint (or run directory) to continue.")
    overwrite: bool = flag(
        False, "--overwrite", help="Start afresh in an --out that holds an earlier run (its files are removed)."
    )  # start afresh in an ``out`` that holds an earlier run (its files are removed)

    def __post_init__(self) -> None:
        if self.lr is None:
            self.lr = default_lr(self.optimizer, self.pretrained)
        for name in ("crop_scale", "crop_ratio", "mean", "std"):
            setattr(self, name, tuple(float(v) for v in getattr(self, name)))
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` for values that cannot work."""

        def check(ok: bool, msg: str) -> None:
            if not ok:
                raise ConfigError(msg)

        check(bool(self.data), "data is required (--data PATH)")
        check(bool(self.model), "model is required (--arch NAME)")
        check(bool(self.out), "out is required (--out DIR)")
        check(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        check(self.img_size >= 16, f"img_size must be >= 16, got {self.img_size}")
        check(self.batch_size <= MAX_BATCH, f"batch_size must be at most {MAX_BATCH}, got {self.batch_size}")
        check(self.img_size <= MAX_IMG_SIZE, f"img_size must be at most {MAX_IMG_SIZE}, got {self.img_size}")
        check(self.lr > 0, f"lr must be > 0, got {self.lr}")
        check(self.workers >= 0, "workers must be >= 0")
        check(self.optimizer in _OPTIMIZERS, f"optimizer must be one of {_OPTIMIZERS}, not {self.optimizer!r}")
        check(self.balance in _BALANCE, f"balance must be one of {_BALANCE}, not {self.balance!r}")
        check(self.balance_method in _BALANCE_METHODS, f"balance_method must be one of {_BALANCE_METHODS}")
        check(0.0 < self.balance_beta < 1.0, "balance_beta must be in (0, 1)")
        check(self.resize in _RESIZE, f"resize must be one of {_RESIZE}, not {self.resize!r}")
        check(0.0 <= self.label_smoothing < 1.0, "label_smoothing must be in [0, 1)")
        check(0.0 <= self.ema_decay < 1.0, "ema_decay must be in [0, 1) (0 disables EMA)")
        check(self.warmup_epochs >= 0, "warmup_epochs must be >= 0")
        check(0.0 <= self.min_lr_ratio <= 1.0, "min_lr_ratio must be in [0, 1]")
        check(self.grad_clip >= 0, "grad_clip must be >= 0 (0 disables)")
        check(
            len(self.crop_scale) == 2 and 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1,
            "crop_scale must be two values 0 < lo <= hi <= 1",
        )
        check(
            len(self.crop_ratio) == 2 and 0 < self.crop_ratio[0] <= self.crop_ratio[1],
            "crop_ratio must be two values 0 < lo <= hi",
        )
        check(0 <= self.hflip <= 1 and 0 <= self.random_erasing <= 1, "probabilities must be in [0, 1]")
        check(self.rotation >= 0 and self.color_jitter >= 0, "rotation and color_jitter must be >= 0")
        check(0.0 <= self.val_split < 1.0, "val_split must be in [0, 1)")
        check(self.kd_temperature > 0, "kd_temperature must be > 0")
        check(0.0 <= self.kd_alpha <= 1.0, "kd_alpha must be in [0, 1]")
        check(self.pretrained in (None, "", "none", "imagenet"), "pretrained must be none or imagenet")
        check(0.0 <= self.dropout < 1.0, "dropout must be in [0, 1)")
        check(self.on_error in ("raise", "skip"), "on_error must be raise or skip")
        check(
            not (self.resume and self.overwrite),
            "give resume (continue the run) or overwrite (start it afresh), not both",
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tuples become lists) for YAML, JSON and the checkpoint."""
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d


FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(TrainConfig))
_REQUIRED = ("data", "model", "out")


def list_recipes() -> list[str]:
    """Names of the recipes shipped in ``edgefer/recipes``."""
    root = resources.files("edgefer") / "recipes"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def resolve_recipe(name_or_path: str | os.PathLike) -> Path:
    """A recipe file: an existing path, or the name of a shipped recipe (with or without .yaml)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    stem = p.name[:-5] if p.name.endswith(".yaml") else p.name
    if p.parent == Path("."):
        shipped = resources.files("edgefer") / "recipes" / f"{stem}.yaml"
        if shipped.is_file():
            return Path(str(shipped))
    raise ConfigError(
        f"recipe {str(name_or_path)!r} is neither a file nor a shipped recipe; shipped: {', '.join(list_recipes())}"
    )


def read_recipe(name_or_path: str | os.PathLike) -> dict[str, Any]:
    """The mapping of a recipe file; unknown keys are an error (typos must not pass silently)."""
    import yaml

    path = resolve_recipe(name_or_path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"recipe {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {path} must be a mapping of option: value")
    unknown = sorted(set(data) - set(FIELD_NAMES))
    if unknown:
        raise ConfigError(f"recipe {path} has unknown option(s) {', '.join(unknown)}; known: {', '.join(FIELD_NAMES)}")
    return data


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """A validated :class:`TrainConfig` from a mapping (unknown keys or wrong types -> ConfigError)."""
    unknown = sorted(set(values) - set(FIELD_NAMES))
    if unknown:
        raise ConfigError(f"unknown training option(s): {', '.join(unknown)}")
    missing = [k for k in _REQUIRED if not values.get(k)]
    if missing:
        raise ConfigError(f"missing required option(s): {', '.join(missing)} (e.g. --{missing[0]} ...)")
    types = {f.name: f.type for f in fields(TrainConfig)}
    coerced: dict[str, Any] = {}
    for key, value in values.items():
        t = str(types[key])
        try:
            if value is None or t.startswith(("str |", "dict", "tuple")):
                coerced[key] = value
            elif t == "bool":
                coerced[key] = _to_bool(value)
            elif t == "int":
                coerced[key] = int(value)
            elif t == "float":
                coerced[key] = float(value)
            elif t == "str":
                coerced[key] = str(value)
            else:
                coerced[key] = value
        except (TypeError, ValueError):
            raise ConfigError(f"option {key}={value!r} should be of type {t}") from None
    try:
        return TrainConfig(**coerced)
    except TypeError as exc:
        raise ConfigError(f"invalid training options: {exc}") from exc


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return value.lower() in ("1", "true", "yes", "on")
    if isinstance(value, int):
        return bool(value)
    raise ValueError(value)


def load_config(yaml_path: str | os.PathLike | None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Recipe values (when ``yaml_path`` is given) overridden by ``overrides`` (None values ignored)."""
    values: dict[str, Any] = read_recipe(yaml_path) if yaml_path else {}
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return config_from_dict(values)


def train_argv(values: dict[str, Any], recipe: str | os.PathLike | None = None) -> list[str]:
    """The ``edgefer train`` command line that trains with ``recipe`` overridden by ``values``
    (:class:`TrainConfig` field names), spelt with each field's flag from its metadata -- what the
    pipeline prints for its train stage. A field with no flag is a :class:`ConfigError` naming
    ``--set``'s form instead of a command that would train something else."""
    from edgefer.utils.options import cli_field

    argv = ["edgefer", "train"] + (["--config", os.fspath(recipe)] if recipe else [])
    for key, value in values.items():
        if value is None:
            continue
        f = cli_field(TrainConfig, key)
        if isinstance(value, bool):
            chosen = f.flag if value else f.flag_false
            if chosen is None and value == f.default:
                continue  # the built-in value, which only a recipe could have changed
            if chosen is None:
                raise ConfigError(f"{key}={value} has no flag: use --set {key}={str(value).lower()}")
            argv.append(chosen)
        elif f.flag is None:
            raise ConfigError(f"{key} has no flag: use --set {key}=...")
        else:
            argv += [f.flag, os.fspath(value) if isinstance(value, os.PathLike) else str(value)]
    return argv


def config_from_checkpoint(checkpoint: str | os.PathLike, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The configuration stored in a training checkpoint, with ``overrides`` applied and ``resume`` set.

    ``checkpoint`` may be a run directory (its ``last.pt`` is used). This is what
    ``edgefer train --resume runs/x/last.pt`` uses when no ``--config`` is given.
    """
    from edgefer.training.checkpoint import load_checkpoint

    path = Path(checkpoint)
    if path.is_dir():
        path = path / "last.pt"
    stored = dict(load_checkpoint(path).get("train_config") or {})
    if not stored:
        raise ConfigError(f"{path} stores no training configuration; pass --config or the options to resume with")
    values = {k: v for k, v in stored.items() if k in FIELD_NAMES and k != "overwrite"}
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    values["resume"] = str(path)
    return config_from_dict(values)
