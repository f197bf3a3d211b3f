"""``edgefer export``: a thin wrapper over :func:`edgefer.deploy.export`.

``--target trt`` on a machine without TensorRT: with ``--onnx-only`` (implied by
``--print-trtexec``) the ONNX the device builds from is written, the ``trtexec`` / ``edgefer
export`` commands for the device are printed, it is said that no engine was built, and the exit
status is 0. Without it the missing ``tensorrt`` package is an error (exit 2) and nothing is
written. ``--onnx`` starts from an exported ONNX instead of a checkpoint (no PyTorch needed, e.g.
on a Jetson).

Every flag but the source and what is printed is a field of :class:`ExportOptions` (its metadata
holds the flag, help and default); ``--data`` is the dataset for both the FP32 ``reference.npz``
and INT8 calibration (``--reference-data`` / ``--calib-data``, the older spellings, still set one each).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from edgefer.cli import groups
from edgefer.cli.params import Param, Values, command, from_fields

#: where the model comes from (not an option of how to export)
SOURCE = [
    Param("checkpoint", ("--checkpoint", "-c"), Path, None, "Training checkpoint (.pt)."),
    Param("onnx", ("--onnx",), Path, None, "Start from an edgefer ONNX instead (torch-free)."),
]


def params() -> list:
    """The flags of ``edgefer export``: the source, then :class:`ExportOptions`' fields by group."""
    from edgefer.export.options import ExportOptions

    return [
        SOURCE,
        from_fields(ExportOptions, "target", "precision"),
        groups.shape(ExportOptions),
        from_fields(ExportOptions, "dynamic", "max_batch", "opt_batch"),
        groups.output(ExportOptions, dest="out_dir"),
        groups.data(
            ExportOptions,
            only=("data", "allow_missing_classes"),
            data={"help": "Dataset for the FP32 reference.npz and INT8 calibration."},
        ),
        Param("reference_data", ("--reference-data",), Path, None, replaced_by="--data"),
        Param("calib_data", ("--calib-data",), Path, None, replaced_by="--data"),
        from_fields(ExportOptions, "reference_split"),
        groups.calibration(ExportOptions, only=("calib_size",)),
        from_fields(ExportOptions, "device_profile", "onnx_only"),
        Param("print_trtexec", ("--print-trtexec",), bool, False, "Print the equivalent trtexec command."),
        from_fields(
            ExportOptions,
            "workspace_mib",
            "dla_core",
            "trt_version",
            "fp16_mode",
            "int8_mode",
            "timing_cache",
            "opset",
            "name",
        ),
        groups.json_output(),
        groups.progress(ExportOptions),
    ]


def register(app: typer.Typer) -> None:
    @command(app, "export", params)
    def export_cmd(v: Values) -> None:
        """Export a checkpoint to ONNX, OpenVINO IR or a TensorRT engine, with metadata and parity checks."""
        from edgefer.deploy import export
        from edgefer.export.options import ExportOptions
        from edgefer.export.targets import target_named
        from edgefer.formats import format_named

        fields = v.pick(ExportOptions)
        fields["reference_data"] = v.reference_data or v.data
        fields["calib_data"] = v.calib_data or v.data
        if v.print_trtexec and target_named(v.target).device_commands and not format_named(v.target).installed():
            fields["onnx_only"] = True
        fields["progress"] = v.progress and not v.as_json
        res = export(v.checkpoint, ExportOptions(**fields), onnx=v.onnx)
        if v.as_json:
            typer.echo(json.dumps(res.to_dict(), indent=2))
            return
        typer.echo(f"{res.target} {res.precision}: {res.artifact}")
        for key, value in res.parity.items():
            typer.echo(f"  {key}: {value:.3g}")
        if res.reference is not None:
            typer.echo(f"  reference: {res.reference}")
        for note in res.notes:
            typer.secho(f"  note: {note}", fg=typer.colors.YELLOW if not res.engine_built else None)
        if target_named(res.target).device_commands and (v.print_trtexec or not res.engine_built):
            typer.echo("run on the device:" if not res.engine_built else "equivalent trtexec command:")
            cmds = res.commands if not res.engine_built else res.commands[:1]
            for cmd in cmds:
                typer.echo(f"  {cmd}")
