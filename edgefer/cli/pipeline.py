"""``edgefer pipeline``: data -> train -> export -> quantize -> benchmark -> bundle, resumable.

Every option is checked before a stage runs or a file is written (a bad ``--gate`` is exit 2 with
nothing under ``--out``). A re-run skips the stages that are up to date; an option that changes
a stage's result (``--calib-size``, ``--gate``, ``--epochs``, ...) reruns that stage and what depends
on it, while ``--quiet``, ``--overwrite`` and ``--workers`` never make a stage stale.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from edgefer.cli import groups
from edgefer.cli.params import Param, Values, command, from_field


def params() -> list:
    """The flags of ``edgefer pipeline`` (each maps to a :class:`PipelineConfig` field), by group."""
    from edgefer.bench.options import BenchOptions
    from edgefer.quantize.options import QuantizeOptions

    return [
        groups.data(
            only=("data",),
            data={"default": "synthetic", "type": str, "help": "Dataset path, or 'synthetic' for the built-in faces."},
        ),
        Param(
            "model",
            ("--arch",),
            str,
            "msff_mobilenetv3",
            "Registered architecture name (edgefer models).",
            aliases=("--model",),
        ),
        Param("targets", ("--targets",), str, "openvino,onnx", "Comma list of openvino, onnx, trt."),
        groups.output(
            dest="out",
            out={"default": Path("runs/pipeline"), "help": "Run directory."},
            overwrite={
                "help": "Redo every stage (without it, changed options rerun only what they affect).",
                "aliases": ("--force",),
            },
        ),
        Param("checkpoint", ("--checkpoint", "-c"), Path, None, "Skip training: use this checkpoint."),
        Param("recipe", ("--config",), str, None, "Training recipe (name or YAML path)."),
        Param("epochs", ("--epochs",), int, None, "Training epochs (default: the recipe's)."),
        groups.shape(only=("img_size",)),
        Param(
            "batch_size",
            ("--train-batch",),
            int,
            None,
            "Training batch size (default: the recipe's).",
            aliases=("--batch-size",),
        ),
        Param("lr", ("--lr",), float, None, "Peak learning rate (default: the recipe's)."),
        Param("pretrained", ("--pretrained",), str, None, "'imagenet' loads torchvision weights."),
        Param(
            "workers",
            ("--workers",),
            int,
            None,
            "Data-loader worker processes (speed only: changing it reruns nothing).",
        ),
        Param("synthetic_train", ("--synthetic-train",), int, 3000, "Synthetic train images."),
        Param("synthetic_test", ("--synthetic-test",), int, 750, "Synthetic test images."),
        Param(
            "synthetic_difficulty",
            ("--synthetic-difficulty",),
            float,
            0.6,
            "Synthetic set difficulty, 0 (easy) .. 1 (hardest).",
        ),
        groups.seed(),
        groups.calibration(only=("calib_size",)),
        from_field(QuantizeOptions, "method").but(dest="int8_method", aliases=()),
        Param("max_drop", ("--max-drop",), float, None, "Accuracy budget (points), enforced by ptq-acc and qat."),
        Param(
            "gate",
            ("--gate",),
            str,
            None,
            "Benchmark gate, e.g. max-drop=0.5,min-agreement=0.98 \\[default: the pipeline's demo gate].",
        ),
        groups.batches(BenchOptions),
        groups.timing(BenchOptions, iters={"default": 50, "show_default": None}),
        groups.device(
            BenchOptions,
            only=("threads",),
            threads={"help": "Benchmark inference threads (latencies depend on it: reruns the benchmark)."},
        ),
        groups.json_output(),
        groups.progress(),
    ]


def register(app: typer.Typer) -> None:
    @command(app, "pipeline", params)
    def pipeline(v: Values) -> None:
        """Run the whole flow; finished stages are skipped, a failed stage prints how to reproduce it."""
        from rich.table import Table

        from edgefer.cli.bench import parse_batches
        from edgefer.cli.console import table_console
        from edgefer.pipeline.flow import DEFAULT_GATE, SUMMARY_COLUMNS, PipelineConfig, run_pipeline, summary_rows

        console = table_console()
        fields = v.pick(PipelineConfig)
        fields.update(
            targets=tuple(v.targets.split(",")),
            out=str(v.out),
            checkpoint=str(v.checkpoint) if v.checkpoint else None,
            gate=v.gate or DEFAULT_GATE,
            batches=tuple(parse_batches(v.batches)),
            force=v.overwrite,
            progress=v.progress and not v.as_json,
        )
        cfg = PipelineConfig(**fields)
        model, data = cfg.model, cfg.data
        if v.as_json:  # stage lines go to stderr; stdout is the one JSON document
            console = table_console(stderr=True)
        result = run_pipeline(cfg, on_event=lambda line: console.print(line, highlight=False, markup=False))
        if v.as_json:
            summary = {
                "report": result.report,
                "report_dir": str(result.report_dir),
                "bundle": str(result.bundle),
                "notes": list(result.notes),
                "gate_passed": result.gate_passed,
                "gate_failures": list(result.gate_failures),
            }
            typer.echo(json.dumps(summary, indent=2, default=str))
            if not result.gate_passed:
                raise typer.Exit(3)
            return
        table = Table(title=f"edgefer pipeline: {model} on {data}", title_justify="left")
        for col in SUMMARY_COLUMNS:
            table.add_column(col, overflow="fold")
        for row in summary_rows(result.report):
            table.add_row(*row)
        console.print(table)
        for note in result.notes:
            console.print(f"note: {note}", highlight=False)
        console.print(f"report: {result.report_dir / 'report.md'}  bundle: {result.bundle}", highlight=False)
        if not result.gate_passed:
            for failure in result.gate_failures:
                console.print(f"[red]gate failed:[/red] {failure}", highlight=False)
            raise typer.Exit(3)
        console.print("[green]gate passed[/green]")
