"""``edgefer data``: write the synthetic set, and describe any supported dataset.

Module level imports typer and the standard library only; the library is imported inside the
commands (see edgefer/cli/__init__.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

data_app = typer.Typer(help="Datasets: the synthetic default set and dataset inspection.", no_args_is_help=True)


@data_app.command("synth")
def synth(
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write the RAF-DB-layout set into."),
    n_train: int = typer.Option(3000, "--n-train", help="Training images."),
    n_test: int = typer.Option(750, "--n-test", help="Test images."),
    size: int = typer.Option(100, "--size", help="Image side in pixels (RAF-DB aligned is 100)."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same bytes."),
    label_noise: float = typer.Option(0.03, "--label-noise", help="Fraction of deliberately wrong labels."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing, different set in OUT."),
    difficulty: float = typer.Option(
        0.6, "--difficulty", help="0 (easy: strong expressions, no nuisances) .. 1 (hardest); 0.6 is the demo's."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Draw a synthetic face-expression set in the RAF-DB official layout (no download)."""
    import time

    from edgefer.data.synth import generate_synthetic

    start = time.perf_counter()
    root = generate_synthetic(
        out,
        n_train=n_train,
        n_test=n_test,
        image_size=size,
        seed=seed,
        label_noise=label_noise,
        progress=progress,
        overwrite=overwrite,
        difficulty=difficulty,
    )
    typer.echo(
        f"synthetic RAF-DB-layout set at {root} ({n_train} train + {n_test} test, {size}px, "
        f"seed {seed}) in {time.perf_counter() - start:.1f}s"
    )


@data_app.command("info")
def info(
    path: Path = typer.Argument(..., help="Dataset folder or FER2013 csv."),
    validate: bool = typer.Option(False, "--validate", help="Decode every image and count unreadable ones."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Print the detected format, split sizes and the class histogram of a dataset."""
    from edgefer.data.readers import dataset_info

    report = dataset_info(path, validate=validate, progress=validate and not as_json)
    if as_json:
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
