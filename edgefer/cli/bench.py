"""``edgefer benchmark`` and ``edgefer bundle``: the harness and the device bundle on the command line.

Thin and torch-free: the library is imported inside the commands. Exit status of ``benchmark``:

* 0: at least one model ran (and the gate, if any, passed);
* 2: a user error (bad path, bad option), or no model ran at all (every row failed: the table and
  report still say why for each);
* 3: the gate failed (each failing row and number is printed). A gate run on a reference some of
  whose images are not in the data fails the gate too (exit 3), unless ``--allow-partial``:
  a gate must not pass on part of what it was asked to check.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def parse_batches(text: str) -> List[int]:
    from edgefer.errors import EdgeferError

    try:
        values = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise EdgeferError(f"--batch takes comma-separated integers like 1,8,32, not {text!r}") from None
    if not values or min(values) < 1:
        raise EdgeferError(f"--batch needs positive integers, got {text!r}")
    return values


def register(app: typer.Typer) -> None:
    @app.command("benchmark")
    def benchmark(
        models: List[Path] = typer.Argument(None, help="Artifacts (.onnx, .xml, .engine, .pt) and/or bundles."),
        suite: Optional[Path] = typer.Option(None, "--suite", help="A benchmark suite YAML (benchmarks/NAME.yaml)."),
        data: Optional[Path] = typer.Option(None, "--data", help="Dataset root (RAF-DB, FER2013, folders, synthetic)."),
        split: Optional[str] = typer.Option(None, "--split", help="Split to evaluate on \\[default: test]."),
        reference: Optional[Path] = typer.Option(None, "--reference", help="FP32 reference.npz to compare against."),
        batch: Optional[str] = typer.Option(None, "--batch", help="Batch sizes, comma-separated \\[default: 1,8]."),
        warmup: Optional[int] = typer.Option(None, "--warmup", help="Untimed warm-up calls \\[default: 10]."),
        iters: Optional[int] = typer.Option(
            None, "--iters", help="Timed calls per measurement \\[default: 50; bundle or Jetson: --seconds 5]."
        ),
        seconds: Optional[float] = typer.Option(
            None, "--seconds", help="Time budget per measurement instead of --iters."
        ),
        cache_dir: Optional[Path] = typer.Option(
            None, "--cache-dir", help="OpenVINO model cache: compile once, reopen from it (a camera that restarts)."
        ),
        mode: Optional[str] = typer.Option(
            None,
            "--mode",
            help="latency (one request at a time) or throughput (requests in flight; FPS measured) "
            "\\[default: latency].",
        ),
        threads: Optional[int] = typer.Option(None, "--threads", help="Inference threads (backend default if unset)."),
        device: Optional[str] = typer.Option(
            None, "--device", help="cpu | gpu | cuda:N | npu | tensorrt \\[default: cpu]."
        ),
        gate: Optional[str] = typer.Option(
            None, "--gate", help="e.g. max-drop=0.5,max-class-drop=1.0,min-agreement=0.98 (exit 3 when broken)."
        ),
        out: Optional[Path] = typer.Option(
            None, "--out", "-o", help="Report directory (report.json, report.md, PNGs)."
        ),
        max_images: Optional[int] = typer.Option(
            None, "--max-images", help="Use only the first N images (quick runs)."
        ),
        no_e2e: bool = typer.Option(False, "--no-e2e", help="Skip end-to-end (decode + preprocess) latency."),
        no_plots: bool = typer.Option(False, "--no-plots", help="Do not draw PNG plots."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
        allow_partial: bool = typer.Option(
            False, "--allow-partial", help="Let a gate pass although some reference images are not in the data."
        ),
        allow_missing_classes: bool = typer.Option(
            False, "--allow-missing-classes", help="Benchmark on a train split that lacks some class."
        ),
    ) -> None:
        """Accuracy vs the FP32 reference, latency and size of every artifact on the same images: one table."""
        from edgefer.bench import run_benchmark
        from edgefer.bench.gate import GATE_EXIT_CODE
        from edgefer.bench.suite import load_suite
        from edgefer.errors import EdgeferError

        kwargs: dict = {}
        if suite is not None:
            kwargs = load_suite(suite)
            kwargs.pop("name", None)
            if models:
                raise EdgeferError("give either MODEL arguments or --suite, not both")
        elif not models:
            raise EdgeferError("nothing to benchmark: give MODEL paths (or a bundle) or --suite FILE")
        else:
            kwargs["models"] = list(models)
        overrides = {
            "data": data,
            "split": split,
            "reference": reference,
            "warmup": warmup,
            "iters": iters,
            "seconds": seconds,
            "cache_dir": cache_dir,
            "mode": mode,
            "threads": threads,
            "device": device,
            "gate": gate,
            "out": out,
            "max_images": max_images,
        }
        kwargs.update({k: v for k, v in overrides.items() if v is not None})
        if allow_partial:
            kwargs["allow_partial"] = True
        if allow_missing_classes:
            kwargs["allow_missing_classes"] = True
        if batch is not None:
            kwargs["batches"] = parse_batches(batch)
        if seconds is not None and iters is not None:
            raise EdgeferError("give --iters or --seconds, not both")
        if no_e2e:
            kwargs["e2e"] = False
        if no_plots:
            kwargs["plots"] = False
        if kwargs.get("data") is None:
            raise EdgeferError("--data is required (the dataset whose images every model is scored on)")
        from edgefer.bench.harness import ModelSpec
        from edgefer.bundle import gate_line, is_bundle, read_manifest

        for m in kwargs.get("models") or []:
            path = ModelSpec.of(m).path
            if is_bundle(path):  # what the workstation decided, before the device measures anything
                typer.echo(gate_line(read_manifest(path), f"bundle {path}"), err=True)
        out_dir = kwargs.pop("out", None)
        # the options (BenchOptions) check every value -- flags and suite keys alike -- before any work
        report = run_benchmark(out_dir=out_dir, progress=not quiet, **kwargs)
        typer.echo(report.table())
        for note in report.notes:
            typer.echo(f"note: {note}", err=True)
        for warning in report.warnings:
            typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)
        if out_dir is not None:
            typer.echo(f"report: {Path(out_dir) / 'report.md'} (+ report.json, plots)", err=True)
        if not report.ok_rows and report.gate is None:
            first = report.rows[0]["status"] if report.rows else "no rows"
            raise EdgeferError(f"no model ran: all {len(report.rows)} rows failed (first: {first})")
        if report.gate is not None:
            if report.passed:
                typer.secho("gate passed", fg=typer.colors.GREEN, err=True)
            else:
                for failure in report.gate_failures:
                    typer.secho(f"gate failed: {failure}", fg=typer.colors.RED, err=True)
                raise typer.Exit(GATE_EXIT_CODE)

    @app.command("bundle")
    def bundle(
        artifacts: List[Path] = typer.Argument(..., help="Artifacts to pack (.onnx, .xml + .bin, .engine + sidecar)."),
        out: Path = typer.Option(..., "--out", "-o", help="Bundle directory to create."),
        reference: Optional[Path] = typer.Option(None, "--reference", help="reference.npz to ship with the artifacts."),
        report: Optional[Path] = typer.Option(None, "--report", help="Benchmark report directory (or report.json)."),
        archive: bool = typer.Option(False, "--archive", help="Also write OUT.tar.gz."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing bundle (never another folder)."),
        allow_failed_gate: bool = typer.Option(
            False, "--allow-failed-gate", help="Bundle a report whose gate failed (the verdict is recorded as failed)."
        ),
    ) -> None:
        """Pack artifacts + metadata + reference + report into one directory a device can re-verify."""
        from edgefer.bundle import gate_line, make_bundle, read_manifest

        path = make_bundle(
            artifacts,
            out,
            reference=reference,
            report=report,
            archive=archive,
            overwrite=overwrite,
            allow_failed_gate=allow_failed_gate,
        )
        typer.echo(f"bundle: {path}")
        typer.echo(gate_line(read_manifest(path)), err=True)
        typer.echo(f"verify on the device: edgefer benchmark {path} --data DATASET --out REPORT_DIR", err=True)
