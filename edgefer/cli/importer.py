"""``edgefer import MODEL.onnx --out DIR``: bring your own FP32 ONNX.

Thin: everything is :func:`edgefer.export.importer.import_model`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def _values(text: Optional[str]) -> tuple:
    """``"0.5"`` or ``"0.485,0.456,0.406"`` -> a tuple of the comma-separated items (empty when not given)."""
    return tuple(v.strip() for v in text.split(",") if v.strip()) if text else ()


def register(app: typer.Typer) -> None:
    @app.command("import")
    def import_cmd(
        model: Path = typer.Argument(..., help="The FP32 ONNX made outside edgefer."),
        out: Path = typer.Option(..., "--out", "-o", help="Output folder for the imported ONNX (+ reference.npz)."),
        classes: str = typer.Option(
            ..., "--classes", help="Class names in the MODEL'S OUTPUT ORDER, comma-separated (angry,disgust,...)."
        ),
        color: str = typer.Option(..., "--color", help="What the input channels are: gray, rgb or bgr."),
        mean: str = typer.Option(..., "--mean", help="Mean subtracted: one value or one per channel (0-1 scale)."),
        std: str = typer.Option(..., "--std", help="Std divided by: one value or one per channel (0-1 scale)."),
        scale: float = typer.Option(1.0, "--scale", help="Unit of --mean/--std: 1 (pixels 0..1) or 255 (0..255)."),
        layout: Optional[str] = typer.Option(None, "--layout", help="nchw or nhwc (default: read from the graph)."),
        input_size: Optional[int] = typer.Option(
            None, "--input-size", help="Square input side (default: read from the graph)."
        ),
        resize: str = typer.Option("stretch", "--resize", help="stretch or center_crop (face crop -> input)."),
        interpolation: str = typer.Option("linear", "--interpolation", help="linear, area, cubic or nearest."),
        outputs: str = typer.Option(
            "auto", "--outputs", help="logits, probabilities or auto (probabilities if the graph ends in Softmax)."
        ),
        name: Optional[str] = typer.Option(None, "--name", help="Model name and file stem (default: the file's)."),
        reference_data: Optional[str] = typer.Option(
            None, "--reference-data", help="Dataset for reference.npz (FP32)."
        ),
        reference_split: str = typer.Option("test", "--reference-split"),
        allow_missing_classes: bool = typer.Option(
            False, "--allow-missing-classes", help="Reference on a split that lacks some class."
        ),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier import in --out."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    ) -> None:
        """Import an expression ONNX made outside edgefer: a copy with edgefer's metadata, nothing else changed."""
        from edgefer.export.importer import ImportOptions, import_model

        options = ImportOptions(
            classes=_values(classes),
            color=color,
            mean=_values(mean),
            std=_values(std),
            scale=scale,
            layout=layout,
            input_size=input_size,
            resize=resize,
            interpolation=interpolation,
            outputs=outputs,
            name=name,
            reference_data=reference_data,
            reference_split=reference_split,
            allow_missing_classes=allow_missing_classes,
            overwrite=overwrite,
        )
        res = import_model(model, out, options)
        meta = res.metadata
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "artifact": str(res.artifact),
                        "reference": str(res.reference) if res.reference else None,
                        "metadata": meta.to_dict(),
                        "notes": res.notes,
                    },
                    indent=2,
                )
            )
            return
        pp = meta.preprocessing
        typer.echo(
            f"imported {model} -> {res.artifact}\n"
            f"  input {pp.layout} {pp.channels}x{pp.input_size}x{pp.input_size} {pp.color_order}, "
            f"mean {list(pp.mean)} std {list(pp.std)} (0-1 scale), resize {pp.resize}\n"
            f"  classes (output order): {', '.join(meta.class_names)}; outputs: {meta.outputs}"
        )
        for note in res.notes:
            typer.echo(f"  note: {note}")
        if res.reference is not None:
            typer.echo(f"  reference: {res.reference}")
