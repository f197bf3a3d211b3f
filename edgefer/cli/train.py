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


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_cmd(
        data: str = typer.Option(None, "--data", help="Dataset root (RAF-DB, FER2013 csv, image folders)."),
        model: str = typer.Option(None, "--model", help="Registered model name (see `edgefer models`)."),
        out: str = typer.Option(None, "--out", help="Run directory (default runs/<model>)."),
        config: str = typer.Option(None, "--config", help="Recipe YAML path or shipped recipe name."),
        epochs: int = typer.Option(None, "--epochs"),
        batch_size: int = typer.Option(None, "--batch-size", help="Global batch (split across DDP processes)."),
        img_size: int = typer.Option(None, "--img-size", help="Square input size in pixels."),
        lr: float = typer.Option(None, "--lr", help="Peak learning rate (after warm-up)."),
        optimizer: str = typer.Option(None, "--optimizer", help="sgd or adamw."),
        weight_decay: float = typer.Option(None, "--weight-decay"),
        warmup_epochs: float = typer.Option(None, "--warmup-epochs"),
        label_smoothing: float = typer.Option(None, "--label-smoothing"),
        balance: str = typer.Option(None, "--balance", help="none, loss (class-weighted CE) or sampler."),
        ema_decay: float = typer.Option(None, "--ema-decay", help="Weight EMA decay per step (0 = off)."),
        grad_clip: float = typer.Option(None, "--grad-clip", help="Max gradient norm (0 = off)."),
        pretrained: str = typer.Option(None, "--pretrained", help="none or imagenet."),
        dropout: float = typer.Option(None, "--dropout"),
        teacher: str = typer.Option(None, "--teacher", help="Teacher checkpoint for knowledge distillation."),
        kd_temperature: float = typer.Option(None, "--kd-temperature"),
        kd_alpha: float = typer.Option(None, "--kd-alpha", help="Weight of the soft (teacher) loss."),
        val_split: float = typer.Option(None, "--val-split", help="Hold out this train fraction (0 = use test)."),
        resume: str = typer.Option(None, "--resume", help="Checkpoint (or run directory) to continue."),
        overwrite: bool = typer.Option(
            None, "--overwrite", help="Start afresh in an --out that holds an earlier run (its files are removed)."
        ),
        allow_missing_classes: bool = typer.Option(
            None, "--allow-missing-classes", help="Train even if the train split lacks some class."
        ),
        on_error: str = typer.Option(None, "--on-error", help="Unreadable images: skip (counted) or raise."),
        seed: int = typer.Option(None, "--seed"),
        workers: int = typer.Option(None, "--workers", help="Data-loader worker processes."),
        device: str = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N."),
        amp: bool = typer.Option(None, "--amp/--no-amp", help="Mixed precision (CUDA only)."),
        channels_last: bool = typer.Option(None, "--channels-last/--no-channels-last", help="CUDA only."),
        sets: List[str] = typer.Option([], "--set", help="Any other option as key=value (repeatable)."),
        no_progress: bool = typer.Option(
            False, "--no-progress", "--quiet", "-q", help="No progress bars or epoch lines."
        ),
        list_recipes: bool = typer.Option(False, "--list-recipes", help="List the shipped recipes and exit."),
    ) -> None:
        """Train a model; writes last.pt, best.pt, metrics.csv and training_curves.png into --out."""
        from edgefer.training import config as C

        if list_recipes:
            for name in C.list_recipes():
                typer.echo(name)
            return
        overrides: Dict[str, object] = {
            "data": data, "model": model, "out": out, "epochs": epochs, "batch_size": batch_size,
            "img_size": img_size, "lr": lr, "optimizer": optimizer, "weight_decay": weight_decay,
            "warmup_epochs": warmup_epochs, "label_smoothing": label_smoothing, "balance": balance,
            "ema_decay": ema_decay, "grad_clip": grad_clip, "dropout": dropout, "teacher": teacher,
            "kd_temperature": kd_temperature, "kd_alpha": kd_alpha, "val_split": val_split, "resume": resume,
            "seed": seed, "workers": workers, "device": device, "amp": amp, "channels_last": channels_last,
            "allow_missing_classes": allow_missing_classes, "on_error": on_error, "overwrite": overwrite,
        }  # fmt: skip
        if pretrained is not None:
            overrides["pretrained"] = None if pretrained.lower() in ("", "none") else pretrained
        if no_progress:
            overrides["progress"] = False
        overrides.update(_parse_sets(sets))
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
        typer.echo(
            f"best val acc {m['best_val_acc']:.4f} (epoch {m['best_epoch'] + 1}); last: val acc {m['val_acc']:.4f}, "
            f"mean class acc {m['val_mean_class_acc']:.4f}\nbest checkpoint: {result.best_checkpoint}"
        )

    @app.command("evaluate")
    def evaluate_cmd(
        checkpoint: str = typer.Option(..., "--checkpoint", help="A .pt checkpoint (e.g. runs/x/best.pt)."),
        data: str = typer.Option(..., "--data", help="Dataset root."),
        split: str = typer.Option("test", "--split"),
        tta_flip: bool = typer.Option(False, "--tta-flip", help="Average with the mirrored image."),
        out: str = typer.Option(None, "--out", help="Write metrics.json, confusion matrix PNG/JSON here."),
        batch_size: int = typer.Option(64, "--batch-size"),
        device: str = typer.Option("auto", "--device"),
        as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
        no_progress: bool = typer.Option(False, "--no-progress", "--quiet", "-q", help="No progress bars."),
        on_error: str = typer.Option("skip", "--on-error", help="Unreadable images: skip (counted) or raise."),
        allow_missing_classes: bool = typer.Option(
            False, "--allow-missing-classes", help="Evaluate a train split that lacks some class."
        ),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier evaluation in --out."),
    ) -> None:
        """Overall and mean class accuracy, per-class precision/recall/F1, confusion matrix."""
        from edgefer.training.evaluation import evaluate, format_report

        result = evaluate(
            checkpoint, data, split=split, flip_tta=tta_flip, out=out, batch_size=batch_size,
            progress=not no_progress, device=device, on_error=on_error, allow_missing_classes=allow_missing_classes,
            overwrite=overwrite,
        )  # fmt: skip
        if result.skipped:
            typer.echo(f"note: {result.skipped} unreadable images skipped (each readable image scored once)", err=True)
        if as_json:
            typer.echo(json.dumps(result.to_dict(), indent=2))
        else:
            typer.echo(format_report(result))
            if out:
                typer.echo(f"\nwrote {Path(out) / 'metrics.json'} and confusion_matrix.png/json")
