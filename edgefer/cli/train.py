"""``edgefer train`` and ``edgefer evaluate``: thin wrappers over :mod:`edgefer.training`.

Flags override the values of a ``--config`` recipe (a path or the name of a shipped recipe, see
``edgefer train --list-recipes``); ``--set key=value`` reaches every other option of
:class:`edgefer.training.TrainConfig`. ``--resume runs/x/last.pt`` without ``--config`` continues
with the configuration stored in the checkpoint (flags such as ``--epochs`` still override).
The same command under ``torchrun --nproc_per_node N`` trains with DDP.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

import typer

from edgefer.cli import groups
from edgefer.cli.groups import recipe_overridable
from edgefer.cli.params import Param, Values, command, from_field


def _parse_sets(items: List[str]) -> Dict[str, object]:
    import yaml

    from edgefer.training.config import ConfigError

    out: Dict[str, object] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip().replace("-", "_")] = yaml.safe_load(value)
    return out


#: the TrainConfig fields ``edgefer train`` sets by flag, in help order (the rest: --set key=value)
TRAIN_FIELDS = (
    "model", "epochs", "batch_size", "img_size", "lr", "optimizer", "weight_decay", "warmup_epochs",
    "label_smoothing", "balance", "ema_decay", "grad_clip", "pretrained", "dropout", "teacher", "kd_temperature",
    "kd_alpha", "val_split", "resume", "workers", "amp", "channels_last",
)  # fmt: skip


def train_params() -> list:
    """The flags of ``edgefer train``: :class:`TrainConfig` fields, without defaults of their own (a
    ``--config`` recipe's values stand unless a flag is given; ``--help`` shows the built-in ones)."""
    from edgefer.training.config import TrainConfig

    return [
        recipe_overridable(
            [
                *groups.data(TrainConfig, only=("data",)),
                *groups.output(TrainConfig),
                *[from_field(TrainConfig, n) for n in TRAIN_FIELDS],
                *groups.data(TrainConfig, only=("allow_missing_classes", "on_error")),
                *groups.seed(TrainConfig),
                *groups.device(TrainConfig, only=("device",)),
            ]
        ),
        Param("config", ("--config",), str, None, "Recipe YAML path or shipped recipe name."),
        Param("sets", ("--set",), str, None, "Any other option as key=value (repeatable).", multiple=True),
        groups.json_output(),
        groups.progress(TrainConfig),
        Param("list_recipes", ("--list-recipes",), bool, False, "List the shipped recipes and exit."),
    ]


def evaluate_params() -> list:
    """The flags of ``edgefer evaluate`` (the evaluation path has no options class: the groups' own)."""
    return [
        Param("checkpoint", ("--checkpoint", "-c"), str, ..., "A .pt checkpoint (e.g. runs/x/best.pt)."),
        groups.data(data={"default": ..., "type": str}),
        Param("tta_flip", ("--tta-flip",), bool, False, "Average with the mirrored image."),
        groups.output(out={"type": str, "help": "Write metrics.json, confusion matrix PNG/JSON here."}),
        groups.shape(only=("batch",), batch={"default": 64, "help": "Images per inference batch."}),
        groups.device(only=("device",), device={"default": "auto", "help": "auto, cpu, cuda or cuda:N."}),
        groups.json_output(),
        groups.progress(),
    ]


def register(app: typer.Typer) -> None:
    @command(app, "train", train_params)
    def train_cmd(v: Values) -> None:
        """Train a model; writes last.pt, best.pt, metrics.csv and training_curves.png into --out."""
        from edgefer.training import config as C

        if v.list_recipes:
            for name in C.list_recipes():
                typer.echo(name)
            return
        overrides: Dict[str, object] = v.pick(C.TrainConfig, given_only=True)
        for switch in ("overwrite", "allow_missing_classes"):  # a switch not given leaves the recipe's value
            if overrides.get(switch) is False:
                del overrides[switch]
        if overrides.get("progress") is True:
            del overrides["progress"]
        pretrained = overrides.get("pretrained")
        if isinstance(pretrained, str) and pretrained.lower() in ("", "none"):
            overrides["pretrained"] = None
        overrides.update(_parse_sets(v.sets or []))
        resume, config = overrides.get("resume"), v.config
        if resume and not config:
            cfg = C.config_from_checkpoint(resume, overrides)
        else:
            base = C.read_recipe(config) if config else {}
            model_name = overrides.get("model") or base.get("model")
            if not overrides.get("out") and not base.get("out") and model_name:
                overrides["out"] = str(Path("runs") / str(model_name))
            cfg = C.load_config(config, overrides)

        from edgefer.training import train

        result = train(cfg)
        m = result.metrics
        if v.as_json:
            typer.echo(json.dumps({**m, "best_checkpoint": str(result.best_checkpoint)}, indent=2, default=str))
            return
        typer.echo(
            f"best val acc {m['best_val_acc']:.4f} (epoch {m['best_epoch'] + 1}); last: val acc {m['val_acc']:.4f}, "
            f"mean class acc {m['val_mean_class_acc']:.4f}\nbest checkpoint: {result.best_checkpoint}"
        )

    @command(app, "evaluate", evaluate_params)
    def evaluate_cmd(v: Values) -> None:
        """Overall and mean class accuracy, per-class precision/recall/F1, confusion matrix."""
        from edgefer.training.evaluation import evaluate, format_report

        result = evaluate(
            v.checkpoint, v.data, split=v.split, flip_tta=v.tta_flip, out=v.out, batch_size=v.batch,
            progress=v.progress and not v.as_json, device=v.device, on_error=v.on_error,
            allow_missing_classes=v.allow_missing_classes, overwrite=v.overwrite,
        )  # fmt: skip
        if result.skipped:
            typer.echo(f"note: {result.skipped} unreadable images skipped (each readable image scored once)", err=True)
        if v.as_json:
            typer.echo(json.dumps(result.to_dict(), indent=2))
        else:
            typer.echo(format_report(result))
            if v.out:
                typer.echo(f"\nwrote {Path(v.out) / 'metrics.json'} and confusion_matrix.png/json")
