"""``edgefer models``: the registered networks with size, compute and the papers' accuracy."""

from __future__ import annotations

import json

import typer

from edgefer.cli import groups
from edgefer.cli.params import Param, Values, command


def register(app: typer.Typer) -> None:
    params = [
        groups.shape(
            only=("img_size",), img_size={"default": 112, "help": "Input size (pixels) the GFLOPs are counted at."}
        ),
        Param("family", ("--family",), str, "", "Only this family: paper, edge or baseline."),
        groups.json_output(),
    ]

    @command(app, "models", params)
    def models_cmd(v: Values) -> None:
        """List the models: name, family, parameters, GFLOPs at --img-size, accuracy reported by the paper."""
        from rich.table import Table

        from edgefer.cli.console import table_console
        from edgefer.models.complexity import model_table

        img_size, family = v.img_size, v.family
        rows = model_table(img_size, families=[family] if family else None)
        if v.as_json:
            typer.echo(json.dumps(rows, indent=2))
            return
        table = Table(title=f"edgefer models (GFLOPs at {img_size}x{img_size}, 1 multiply-add = 2 FLOPs)")
        for col, justify in (
            ("name", "left"),
            ("family", "left"),
            ("params (M)", "right"),
            ("GFLOPs", "right"),
            ("paper accuracy", "left"),
        ):
            table.add_column(col, justify=justify, no_wrap=col == "name")
        for r in rows:
            acc = ", ".join(f"{k} {v:.2f}%" for k, v in r["paper_accuracy"].items()) or "-"
            table.add_row(r["name"], r["family"], f"{r['params'] / 1e6:.2f}", f"{r['gflops']:.2f}", acc)
        table_console().print(table)
