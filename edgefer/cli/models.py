"""``edgefer models``: the registered networks with size, compute and the papers' accuracy."""

from __future__ import annotations

import json

import typer


def register(app: typer.Typer) -> None:
    @app.command("models")
    def models_cmd(
        img_size: int = typer.Option(112, "--img-size", help="Input size (pixels) the GFLOPs are counted at."),
        family: str = typer.Option("", "--family", help="Only this family: paper, edge or baseline."),
        as_json: bool = typer.Option(False, "--json", help="Print the table as JSON instead."),
    ) -> None:
        """List the models: name, family, parameters, GFLOPs at --img-size, accuracy reported by the paper."""
        from rich.table import Table

        from edgefer.cli.console import table_console
        from edgefer.models.complexity import model_table

        rows = model_table(img_size, families=[family] if family else None)
        if as_json:
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
