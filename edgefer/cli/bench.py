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

import json
from pathlib import Path
from typing import List

import typer

from edgefer.cli import groups
from edgefer.cli.groups import recipe_overridable
from edgefer.cli.params import Param, Values, command, from_fields


def parse_batches(text: str) -> List[int]:
    from edgefer.errors import EdgeferError

    try:
        values = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise EdgeferError(f"--batch takes comma-separated integers like 1,8,32, not {text!r}") from None
    if not values or min(values) < 1:
        raise EdgeferError(f"--batch needs positive integers, got {text!r}")
    return values


def write_csv(report: object, path: Path) -> Path:
    """The results table as CSV: the table's columns, one row per model and batch size (the same
    cells :func:`edgefer.bench.report.table_rows` formats, so the CSV and the table cannot disagree)."""
    import csv
    import io

    from edgefer.bench.report import COLUMNS, table_rows
    from edgefer.utils.io import ensure_writable_dir, write_text

    ensure_writable_dir(Path(path).parent if Path(path).parent != Path("") else Path("."))
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(COLUMNS)
    writer.writerows(table_rows(report.to_dict()))  # type: ignore[attr-defined]
    return write_text(path, buf.getvalue())


def params() -> list:
    """The flags of ``edgefer benchmark``: :class:`BenchOptions`' fields by group, without defaults of
    their own (a ``--suite`` file's values stand unless a flag is given; ``--help`` shows the defaults)."""
    from edgefer.bench.options import BenchOptions

    return [
        Param(
            "models",
            (),
            Path,
            None,
            "Artifacts (.onnx, .xml, .engine, .pt) and/or bundles.",
            argument=True,
            multiple=True,
        ),
        Param("suite", ("--suite",), Path, None, "A benchmark suite YAML (benchmarks/NAME.yaml)."),
        recipe_overridable(
            [
                *groups.data(BenchOptions, only=("data", "split", "allow_missing_classes")),
                Param("reference", ("--reference",), Path, None, "FP32 reference.npz to compare against."),
                *groups.batches(BenchOptions),
                *groups.timing(BenchOptions),
                *from_fields(BenchOptions, "cache_dir"),
                *groups.device(BenchOptions),
                *from_fields(BenchOptions, "gate", "max_images", "e2e", "plots", "allow_partial"),
                *groups.output(BenchOptions, dest="out_dir", only_out=True),
            ]
        ),
        Param("csv", ("--csv",), Path, None, "Also write the results table as CSV (one row per latency row)."),
        groups.json_output(),
        groups.progress(BenchOptions),
    ]


BUNDLE = [
    Param(
        "artifacts",
        (),
        Path,
        ...,
        "Artifacts to pack (.onnx, .xml + .bin, .engine + sidecar).",
        argument=True,
        multiple=True,
    ),
    groups.output(
        out={"default": ..., "help": "Bundle directory to create."},
        overwrite={"help": "Replace an existing bundle (never another folder)."},
    ),
    Param("reference", ("--reference",), Path, None, "reference.npz to ship with the artifacts."),
    Param("report", ("--report",), Path, None, "Benchmark report directory (or report.json)."),
    Param("archive", ("--archive",), bool, False, "Also write OUT.tar.gz."),
    Param(
        "allow_failed_gate",
        ("--allow-failed-gate",),
        bool,
        False,
        "Bundle a report whose gate failed (the verdict is recorded as failed).",
    ),
    groups.json_output(),
]


def register(app: typer.Typer) -> None:
    @command(app, "benchmark", params)
    def benchmark(v: Values) -> None:
        """Accuracy vs the FP32 reference, latency and size of every artifact on the same images: one table."""
        from edgefer.bench import run_benchmark
        from edgefer.bench.gate import GATE_EXIT_CODE
        from edgefer.bench.options import BenchOptions
        from edgefer.bench.suite import load_suite
        from edgefer.errors import EdgeferError

        kwargs: dict = {}
        if v.suite is not None:
            kwargs = load_suite(v.suite)
            kwargs.pop("name", None)
            if v.models:
                raise EdgeferError("give either MODEL arguments or --suite, not both")
        elif not v.models:
            raise EdgeferError("nothing to benchmark: give MODEL paths (or a bundle) or --suite FILE")
        else:
            kwargs["models"] = list(v.models)
        # flags override the suite; a switch that says "off" (--no-e2e, --no-plots) counts when given
        defaults = BenchOptions()
        given = {
            k: x
            for k, x in v.pick(BenchOptions).items()
            if x is not None and not (isinstance(x, bool) and x == getattr(defaults, k))
        }
        given.pop("progress", None)
        if "batches" in given:
            given["batches"] = parse_batches(given["batches"])
        if v.seconds is not None and v.iters is not None:
            raise EdgeferError("give --iters or --seconds, not both")
        kwargs.update(given)
        for key in ("data", "reference"):
            if v[key] is not None:
                kwargs[key] = v[key]
        if kwargs.get("data") is None:
            raise EdgeferError("--data is required (the dataset whose images every model is scored on)")
        from edgefer.bench.harness import ModelSpec
        from edgefer.bundle import gate_line, is_bundle, read_manifest

        for m in kwargs.get("models") or []:
            path = ModelSpec.of(m).path
            if is_bundle(path):  # what the workstation decided, before the device measures anything
                typer.echo(gate_line(read_manifest(path), f"bundle {path}"), err=True)
        out_dir = kwargs.pop("out_dir", kwargs.pop("out", None))
        # the options (BenchOptions) check every value -- flags and suite keys alike -- before any work
        report = run_benchmark(out_dir=out_dir, progress=v.progress and not v.as_json, **kwargs)
        if v.csv is not None:
            write_csv(report, v.csv)
        if v.as_json:
            typer.echo(json.dumps(report.to_dict(), indent=2, default=str))
        else:
            typer.echo(report.table())
        for note in report.notes:
            typer.echo(f"note: {note}", err=True)
        for warning in report.warnings:
            typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)
        if out_dir is not None:
            also = "report.json, plots" if set(report.files) - {"json", "markdown"} else "report.json"
            typer.echo(f"report: {Path(out_dir) / 'report.md'} (+ {also})", err=True)
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

    @command(app, "bundle", BUNDLE)
    def bundle(v: Values) -> None:
        """Pack artifacts + metadata + reference + report into one directory a device can re-verify."""
        from edgefer.bundle import gate_line, make_bundle, read_manifest

        path = make_bundle(
            v.artifacts, v.out, **v.take("reference", "report", "archive", "overwrite", "allow_failed_gate")
        )
        if v.as_json:
            typer.echo(json.dumps({"bundle": str(path), "manifest": read_manifest(path)}, indent=2, default=str))
        else:
            typer.echo(f"bundle: {path}")
        typer.echo(gate_line(read_manifest(path)), err=True)
        typer.echo(f"verify on the device: edgefer benchmark {path} --data DATASET --out REPORT_DIR", err=True)
