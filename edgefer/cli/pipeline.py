"""``edgefer pipeline``: data -> train -> export -> quantize -> benchmark -> bundle, resumable.

Every option is checked before a stage runs or a file is written (a bad ``--gate`` is exit 2 with
nothing under ``--out``). A re-run skips the stages that are up to date; an option that changes
a stage's result (``--calib-size``, ``--gate``, ``--epochs``, ...) reruns that stage and what depends
on it, while ``--quiet``, ``--force`` and ``--workers`` never make a stage stale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("pipeline")
    def pipeline(
        data: str = typer.Option("synthetic", "--data", help="Dataset path, or 'synthetic' for the built-in faces."),
        model: str = typer.Option("msff_mobilenetv3", "--model", help="Registered model name (edgefer models)."),
        targets: str = typer.Option("openvino,onnx", "--targets", help="Comma list of openvino, onnx, trt."),
        out: Path = typer.Option(Path("runs/pipeline"), "--out", help="Run directory."),
        checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="Skip training: use this checkpoint."),
        config: Optional[str] = typer.Option(None, "--config", help="Training recipe (name or YAML path)."),
        epochs: Optional[int] = typer.Option(None, "--epochs"),
        img_size: Optional[int] = typer.Option(None, "--img-size"),
        batch_size: Optional[int] = typer.Option(None, "--batch-size"),
        lr: Optional[float] = typer.Option(None, "--lr"),
        pretrained: Optional[str] = typer.Option(None, "--pretrained", help="'imagenet' loads torchvision weights."),
        workers: Optional[int] = typer.Option(
            None, "--workers", help="Data-loader worker processes (speed only: changing it reruns nothing)."
        ),
        synthetic_train: int = typer.Option(3000, "--synthetic-train", help="Synthetic train images."),
        synthetic_test: int = typer.Option(750, "--synthetic-test", help="Synthetic test images."),
        synthetic_difficulty: float = typer.Option(
            0.6, "--synthetic-difficulty", help="Synthetic set difficulty, 0 (easy) .. 1 (hardest)."
        ),
        seed: int = typer.Option(0, "--seed"),
        calib_size: int = typer.Option(300, "--calib-size", help="INT8 calibration images."),
        int8_method: str = typer.Option(
            "ptq-acc",
            "--int8-method",
            help="ptq-acc (default: layers kept in floating point until the INT8 model passes --gate's accuracy "
            "rules) | ptq (plain PTQ, every layer INT8) | qat",
        ),
        max_drop: Optional[float] = typer.Option(
            None, "--max-drop", help="Accuracy budget (points), enforced by ptq-acc and qat."
        ),
        gate: Optional[str] = typer.Option(None, "--gate", help="Benchmark gate, e.g. max-drop=0.5,min-agreement=0.98"),
        batch: str = typer.Option("1,8", "--batch", help="Batch sizes for latency."),
        warmup: int = typer.Option(5, "--warmup", help="Untimed iterations before each measurement."),
        iters: int = typer.Option(30, "--iters", help="Timed iterations per measurement."),
        threads: Optional[int] = typer.Option(
            None, "--threads", help="Benchmark inference threads (latencies depend on it: reruns the benchmark)."
        ),
        force: bool = typer.Option(
            False, "--force", help="Redo every stage (without it, changed options rerun only what they affect)."
        ),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    ) -> None:
        """Run the whole flow; finished stages are skipped, a failed stage prints how to reproduce it."""
        from rich.table import Table

        from edgefer.cli.bench import parse_batches
        from edgefer.cli.console import table_console
        from edgefer.pipeline.flow import DEFAULT_GATE, SUMMARY_COLUMNS, PipelineConfig, run_pipeline, summary_rows

        console = table_console()
        cfg = PipelineConfig(
            data=data,
            model=model,
            targets=tuple(targets.split(",")),
            out=str(out),
            checkpoint=str(checkpoint) if checkpoint else None,
            recipe=config,
            epochs=epochs,
            img_size=img_size,
            batch_size=batch_size,
            lr=lr,
            pretrained=pretrained,
            workers=workers,
            synthetic_train=synthetic_train,
            synthetic_test=synthetic_test,
            synthetic_difficulty=synthetic_difficulty,
            seed=seed,
            calib_size=calib_size,
            int8_method=int8_method,
            max_drop=max_drop,
            gate=gate or DEFAULT_GATE,
            batches=tuple(parse_batches(batch)),
            warmup=warmup,
            iters=iters,
            threads=threads,
            force=force,
            progress=not quiet,
        )
        result = run_pipeline(cfg, on_event=lambda line: console.print(line, highlight=False, markup=False))
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
