"""``edgefer data``: write the synthetic set, and describe any supported dataset.

Module level imports typer and the standard library only; the library is imported inside the
commands (see edgefer/cli/__init__.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from edgefer.cli import groups
from edgefer.cli.params import Param, Values, command

data_app = typer.Typer(help="Datasets: the synthetic default set and dataset inspection.", no_args_is_help=True)


SYNTH = [
    groups.output(
        out={"default": ..., "help": "Folder to write the RAF-DB-layout set into."},
        overwrite={"help": "Replace an existing, different set in OUT."},
    ),
    Param("n_train", ("--n-train",), int, 3000, "Training images."),
    Param("n_test", ("--n-test",), int, 750, "Test images."),
    groups.shape(
        only=("img_size",),
        img_size={"default": 100, "aliases": ("--size",), "help": "Image side in pixels (RAF-DB aligned is 100)."},
    ),
    groups.seed(seed={"help": "Random seed; the same seed gives the same bytes."}),
    Param("label_noise", ("--label-noise",), float, 0.03, "Fraction of deliberately wrong labels."),
    Param(
        "difficulty",
        ("--difficulty",),
        float,
        0.6,
        "0 (easy: strong expressions, no nuisances) .. 1 (hardest); 0.6 is the demo's.",
    ),
    groups.json_output(),
    groups.progress(),
]

INFO = [
    Param("path", (), Path, ..., "Dataset folder or FER2013 csv.", argument=True),
    Param("validate", ("--validate",), bool, False, "Decode every image and count unreadable ones."),
    groups.json_output(),
    groups.progress(),
]


@command(data_app, "synth", SYNTH)
def synth(v: Values) -> None:
    """Draw a synthetic face-expression set in the RAF-DB official layout (no download)."""
    import time

    from edgefer.data.synth import generate_synthetic

    start = time.perf_counter()
    root = generate_synthetic(
        v.out,
        n_train=v.n_train,
        n_test=v.n_test,
        image_size=v.img_size,
        seed=v.seed,
        label_noise=v.label_noise,
        progress=v.progress and not v.as_json,
        overwrite=v.overwrite,
        difficulty=v.difficulty,
    )
    seconds = time.perf_counter() - start
    if v.as_json:
        keys = ("n_train", "n_test", "img_size", "seed", "label_noise", "difficulty")
        typer.echo(json.dumps({"root": str(root), **{k: v[k] for k in keys}, "seconds": round(seconds, 3)}, indent=2))
        return
    typer.echo(
        f"synthetic RAF-DB-layout set at {root} ({v.n_train} train + {v.n_test} test, {v.img_size}px, "
        f"seed {v.seed}) in {seconds:.1f}s"
    )


@command(data_app, "info", INFO)
def info(v: Values) -> None:
    """Print the detected format, split sizes and the class histogram of a dataset."""
    from edgefer.data.readers import dataset_info

    path, validate = v.path, v.validate
    report = dataset_info(path, validate=validate, progress=validate and v.progress and not v.as_json)
    if v.as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    from rich.table import Table

    from edgefer.cli.console import table_console

    splits = report["splits"]
    table = Table(title=f"{report['format']} dataset at {report['path']}")
    table.add_column("class")
    for split in splits:
        table.add_column(split, justify="right")
    for name in report["class_names"]:
        table.add_row(name, *[str(s.get("histogram", {}).get(name, "-")) for s in splits.values()])
    table.add_section()
    table.add_row("total", *[str(s["size"]) for s in splits.values()], style="bold")
    table.add_row("skipped", *[str(s.get("skipped", "-")) for s in splits.values()])
    console = table_console()
    console.print(table)
    for split, s in splits.items():
        if "error" in s:
            console.print(f"[red]{split}: {s['error']}[/red]")
        elif s["missing_classes"]:
            console.print(f"[yellow]{split}: no images of {', '.join(s['missing_classes'])}[/yellow]")
    if "val" not in splits:
        console.print("no val split: training holds out part of train for validation")
    if not validate:
        console.print("[dim]images not decoded; --validate checks every file[/dim]")


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
