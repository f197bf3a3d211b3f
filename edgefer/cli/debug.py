"""``edgefer debug FP32.onnx INT8_ARTIFACT``: which layer does INT8 hurt? (the tool for a failed INT8 gate).

Thin: everything is :func:`edgefer.quantize.debug.debug_int8`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("debug")
    def debug_cmd(
        fp32: Path = typer.Argument(..., help="The FP32 ONNX the INT8 artifact was quantized from."),
        int8: Path = typer.Argument(..., help="The INT8 artifact: Q/DQ .onnx (trt/onnx) or OpenVINO INT8 .xml."),
        data: Path = typer.Option(..., "--data", help="Dataset root; the sample comes from --split."),
        out: Path = typer.Option(Path("runs/debug"), "--out", "-o", help="Output directory."),
        samples: int = typer.Option(64, "--samples", help="Images compared (class-balanced, deterministic)."),
        top: int = typer.Option(5, "--top", help="Worst layers written to ignore.json."),
        split: str = typer.Option("test", "--split", help="Split the sample comes from."),
        keep_fp: bool = typer.Option(
            False, "--keep-fp", help="Slower: agreement when each layer alone is kept in FP (Q/DQ ONNX only)."
        ),
        keep_fp_max: Optional[int] = typer.Option(
            None, "--keep-fp-max", help="With --keep-fp: only the N worst-ranked layers (default all)."
        ),
        seed: int = typer.Option(0, "--seed", help="Seed of the sample."),
        allow_missing_classes: bool = typer.Option(
            False, "--allow-missing-classes", help="Accept a split that lacks some class."
        ),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier debug output in --out."),
    ) -> None:
        """Compare an INT8 artifact with its FP32 ONNX layer by layer; rank the layers by the error they add."""
        from edgefer.quantize.debug import debug_int8

        res = debug_int8(
            fp32,
            int8,
            data,
            out_dir=out,
            samples=samples,
            top=top,
            split=split,
            keep_fp=keep_fp,
            keep_fp_max=keep_fp_max,
            seed=seed,
            allow_missing_classes=allow_missing_classes,
            overwrite=overwrite,
        )
        typer.echo(res.markdown)
        typer.echo("written: " + "  ".join(str(f) for f in res.files))
