"""``edgefer export``: a thin wrapper over :func:`edgefer.deploy.export`.

``--target trt`` on a machine without TensorRT: with ``--onnx-only`` (implied by
``--print-trtexec``) the ONNX the device builds from is written, the ``trtexec`` / ``edgefer
export`` commands for the device are printed, it is said that no engine was built, and the exit
status is 0. Without it the missing ``tensorrt`` package is an error (exit 2) and nothing is
written. ``--onnx`` starts from an exported ONNX instead of a checkpoint (no PyTorch needed, e.g.
on a Jetson).
"""

from __future__ import annotations

import json

import typer


def register(app: typer.Typer) -> None:
    @app.command("export")
    def export_cmd(
        checkpoint: str = typer.Option(None, "--checkpoint", "-c", help="Training checkpoint (.pt)."),
        onnx: str = typer.Option(None, "--onnx", help="Start from an edgefer ONNX instead (torch-free)."),
        target: str = typer.Option("onnx", "--target", "-t", help="onnx, openvino or trt."),
        precision: str = typer.Option(None, "--precision", "-p", help="fp32, fp16 or int8 (default fp32)."),
        batch: int = typer.Option(None, "--batch", help="Static batch size."),
        dynamic: bool = typer.Option(None, "--dynamic/--static", help="Dynamic batch (the default)."),
        max_batch: int = typer.Option(None, "--max-batch", help="Largest batch of a dynamic export."),
        opt_batch: int = typer.Option(None, "--opt-batch", help="Batch TensorRT optimises for (default min(4, max))."),
        img_size: int = typer.Option(None, "--img-size", help="Input size (default: the checkpoint's)."),
        out: str = typer.Option("runs/export", "--out", "-o", help="Output directory."),
        reference_data: str = typer.Option(None, "--reference-data", help="Dataset for reference.npz (FP32)."),
        reference_split: str = typer.Option("test", "--reference-split"),
        calib_data: str = typer.Option(None, "--calib-data", help="Dataset for INT8 calibration."),
        calib_size: int = typer.Option(300, "--calib-size"),
        profile: str = typer.Option(None, "--profile", help="Device profile YAML (export/jetson/*.yaml)."),
        onnx_only: bool = typer.Option(False, "--onnx-only", help="trt: write the ONNX + device commands only."),
        print_trtexec: bool = typer.Option(False, "--print-trtexec", help="Print the equivalent trtexec command."),
        workspace: int = typer.Option(None, "--workspace", help="TensorRT workspace limit in MiB."),
        dla_core: int = typer.Option(None, "--dla-core", help="Jetson DLA core (GPU fallback on)."),
        trt_version: str = typer.Option(None, "--trt-version", help="Device TensorRT for printed commands."),
        fp16_mode: str = typer.Option("auto", "--fp16-mode", help="auto, strongly-typed or flag."),
        int8_mode: str = typer.Option("qdq", "--int8-mode", help="qdq (default) or entropy (TensorRT <= 10)."),
        timing_cache: str = typer.Option(None, "--timing-cache", help="TensorRT timing cache file."),
        opset: int = typer.Option(17, "--opset"),
        name: str = typer.Option(None, "--name", help="File stem (default: the model name)."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
        allow_missing_classes: bool = typer.Option(
            False, "--allow-missing-classes", help="Calibrate/reference on a split that lacks some class."
        ),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace earlier artifacts of the same name."),
    ) -> None:
        """Export a checkpoint to ONNX, OpenVINO IR or a TensorRT engine, with metadata and parity checks."""
        from edgefer.deploy import export
        from edgefer.export.options import ExportOptions
        from edgefer.export.targets import target_named
        from edgefer.formats import format_named

        if print_trtexec and target_named(target).device_commands and not format_named(target).installed():
            onnx_only = True
        options = ExportOptions(
            target=target,
            precision=precision,
            out_dir=out,
            batch=batch,
            dynamic=dynamic,
            max_batch=max_batch,
            opt_batch=opt_batch,
            img_size=img_size,
            reference_data=reference_data,
            reference_split=reference_split,
            calib_data=calib_data,
            calib_size=calib_size,
            device_profile=profile,
            onnx_only=onnx_only,
            workspace_mib=workspace,
            dla_core=dla_core,
            trt_version=trt_version,
            fp16_mode=fp16_mode,
            int8_mode=int8_mode,
            timing_cache=timing_cache,
            opset=opset,
            name=name,
            progress=not quiet and not as_json,
            allow_missing_classes=allow_missing_classes,
            overwrite=overwrite,
        )
        res = export(checkpoint, options, onnx=onnx)
        if as_json:
            typer.echo(json.dumps(res.to_dict(), indent=2))
            return
        typer.echo(f"{res.target} {res.precision}: {res.artifact}")
        for key, value in res.parity.items():
            typer.echo(f"  {key}: {value:.3g}")
        if res.reference is not None:
            typer.echo(f"  reference: {res.reference}")
        for note in res.notes:
            typer.secho(f"  note: {note}", fg=typer.colors.YELLOW if not res.engine_built else None)
        if target_named(res.target).device_commands and (print_trtexec or not res.engine_built):
            typer.echo("run on the device:" if not res.engine_built else "equivalent trtexec command:")
            cmds = res.commands if not res.engine_built else res.commands[:1]
            for cmd in cmds:
                typer.echo(f"  {cmd}")
