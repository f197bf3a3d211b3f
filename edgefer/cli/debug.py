"""``edgefer debug FP32.onnx INT8_ARTIFACT``: which layer does INT8 hurt? (the tool for a failed INT8 gate).

Thin: everything is :func:`edgefer.quantize.debug.debug_int8`.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from edgefer.cli import groups
from edgefer.cli.params import Param, Values, command

PARAMS = [
    Param("fp32", (), Path, ..., "The FP32 ONNX the INT8 artifact was quantized from.", argument=True),
    Param("int8", (), Path, ..., "The INT8 artifact: Q/DQ .onnx (trt/onnx) or OpenVINO INT8 .xml.", argument=True),
    groups.data(
        only=("data", "split"),
        data={"default": ..., "help": "Dataset root; the sample comes from --split."},
        split={"help": "Split the sample comes from."},
    ),
    groups.output(out={"default": Path("runs/debug")}, overwrite={"help": "Replace an earlier debug output in --out."}),
    Param("samples", ("--samples",), int, 64, "Images compared (class-balanced, deterministic)."),
    Param("top", ("--top",), int, 5, "Worst layers written to ignore.json."),
    Param(
        "keep_fp",
        ("--keep-fp",),
        bool,
        False,
        "Slower: agreement when each layer alone is kept in FP (Q/DQ ONNX only).",
    ),
    Param(
        "keep_fp_max", ("--keep-fp-max",), int, None, "With --keep-fp: only the N worst-ranked layers (default all)."
    ),
    groups.seed(seed={"help": "Seed of the sample."}),
    groups.data(only=("allow_missing_classes",)),
    groups.json_output(),
    groups.progress()[0].but(help="Print only the files written (no per-layer table)."),
]


def register(app: typer.Typer) -> None:
    @command(app, "debug", PARAMS)
    def debug_cmd(v: Values) -> None:
        """Compare an INT8 artifact with its FP32 ONNX layer by layer; rank the layers by the error they add."""
        from edgefer.quantize.debug import debug_int8

        names = ("samples", "top", "split", "keep_fp", "keep_fp_max", "seed", "allow_missing_classes", "overwrite")
        res = debug_int8(v.fp32, v.int8, v.data, out_dir=v.out, **v.take(*names))
        if v.as_json:
            typer.echo(json.dumps({"files": [str(f) for f in res.files], "markdown": res.markdown}, indent=2))
            return
        if v.progress:
            typer.echo(res.markdown)
        typer.echo("written: " + "  ".join(str(f) for f in res.files))
