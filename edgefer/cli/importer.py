"""``edgefer import MODEL.onnx --out DIR``: bring your own FP32 ONNX.

Thin: everything is :func:`edgefer.export.importer.import_model`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from edgefer.cli import groups
from edgefer.cli.params import Param, Values, command


def _values(text: Optional[str]) -> tuple:
    """``"0.5"`` or ``"0.485,0.456,0.406"`` -> a tuple of the comma-separated items (empty when not given)."""
    return tuple(v.strip() for v in text.split(",") if v.strip()) if text else ()


PARAMS = [
    Param("model", (), Path, ..., "The FP32 ONNX made outside edgefer.", argument=True),
    groups.output(
        out={"default": ..., "help": "Output folder for the imported ONNX (+ reference.npz)."},
        overwrite={"help": "Replace an earlier import in --out."},
    ),
    Param(
        "classes",
        ("--classes",),
        str,
        ...,
        "Class names in the MODEL'S OUTPUT ORDER, comma-separated (angry,disgust,...).",
    ),
    Param("color", ("--color",), str, ..., "What the input channels are: gray, rgb or bgr."),
    Param("mean", ("--mean",), str, ..., "Mean subtracted: one value or one per channel (0-1 scale)."),
    Param("std", ("--std",), str, ..., "Std divided by: one value or one per channel (0-1 scale)."),
    Param("scale", ("--scale",), float, 1.0, "Unit of --mean/--std: 1 (pixels 0..1) or 255 (0..255)."),
    Param("layout", ("--layout",), str, None, "nchw or nhwc (default: read from the graph)."),
    groups.shape(
        only=("img_size",),
        img_size={"aliases": ("--input-size",), "help": "Square input side (default: read from the graph)."},
    ),
    Param("resize", ("--resize",), str, "stretch", "stretch or center_crop (face crop -> input)."),
    Param("interpolation", ("--interpolation",), str, "linear", "linear, area, cubic or nearest."),
    Param(
        "outputs",
        ("--outputs",),
        str,
        "auto",
        "logits, probabilities or auto (probabilities if the graph ends in Softmax).",
    ),
    Param("name", ("--name",), str, None, "Model name and file stem (default: the file's)."),
    groups.data(
        only=("data", "allow_missing_classes"),
        data={"type": str, "aliases": ("--reference-data",), "help": "Dataset for reference.npz (FP32)."},
    ),
    Param("reference_split", ("--reference-split",), str, "test", "Split reference.npz is predicted on."),
    groups.json_output(),
]


def register(app: typer.Typer) -> None:
    @command(app, "import", PARAMS)
    def import_cmd(v: Values) -> None:
        """Import an expression ONNX made outside edgefer: a copy with edgefer's metadata, nothing else changed."""
        from edgefer.export.importer import ImportOptions, import_model

        options = ImportOptions(
            classes=_values(v.classes),
            color=v.color,
            mean=_values(v.mean),
            std=_values(v.std),
            scale=v.scale,
            layout=v.layout,
            input_size=v.img_size,
            resize=v.resize,
            interpolation=v.interpolation,
            outputs=v.outputs,
            name=v.name,
            reference_data=v.data,
            reference_split=v.reference_split,
            allow_missing_classes=v.allow_missing_classes,
            overwrite=v.overwrite,
        )
        model = v.model
        res = import_model(model, v.out, options)
        meta = res.metadata
        if v.as_json:
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
