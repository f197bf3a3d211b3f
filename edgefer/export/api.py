"""``edgefer.export.export``: one call from a checkpoint (or an FP32/FP16/Q-DQ ONNX) to a device
artifact with its metadata, parity numbers and, optionally, the FP32 reference predictions.

INT8 artifacts need a quantizer, which lives one layer up (:mod:`edgefer.quantize` imports this
package, never the reverse): the caller passes it as ``int8`` (an :data:`Int8Quantizer`).
:func:`edgefer.deploy.export` -- what ``edgefer export`` and the pipeline call -- passes NNCF PTQ.

Everything is produced in a scratch directory inside ``out_dir`` and moved into place only when
every step (export, parity checks, conversion, smoke inference, engine build) succeeded, so a
failed export leaves no partial files; a scratch directory left by a killed export is removed at
the next start. The output policy of :mod:`edgefer.utils.outputs` applies: an earlier artifact of
the same name is replaced only with ``overwrite=True`` (CLI ``--overwrite``), a file edgefer did
not write never, and ``name`` must be a plain file name.

TensorRT on a machine without ``tensorrt``: with ``onnx_only=True`` the ONNX the device builds
from (FP32, FP16 or Q/DQ, numerics already checked on ONNX Runtime) is written and
``result.commands`` holds the ``trtexec`` and ``edgefer export`` commands to run on the device;
``result.engine_built`` is False. Without ``onnx_only`` a missing ``tensorrt`` is a
:class:`MissingDependencyError` raised before any work is done.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from edgefer.errors import ExportError
from edgefer.export.job import Int8Quantizer, Job
from edgefer.export.options import ExportOptions
from edgefer.export.result import ExportResult
from edgefer.export.source import check_img_size, require_fp32
from edgefer.export.targets import target_named
from edgefer.formats import format_of
from edgefer.metadata import read_metadata
from edgefer.utils.io import ensure_writable_dir
from edgefer.utils.options import merged
from edgefer.utils.outputs import check_outputs, record_outputs, safe_name


def _move(src: Path, dst_dir: Path) -> Path:
    dst = dst_dir / src.name
    os.replace(src, dst)
    return dst


def export(
    checkpoint: str | os.PathLike | None = None,
    options: ExportOptions | None = None,
    *,
    onnx: str | os.PathLike | None = None,
    int8: Int8Quantizer | None = None,
    **fields: Any,
) -> ExportResult:
    """Export a checkpoint -- or an edgefer ONNX -- as :class:`ExportOptions` say.

    Args:
        checkpoint: the training checkpoint; or give ``onnx`` (an edgefer FP32 ONNX, or for
            ``trt`` also an FP16 / Q-DQ ONNX) to skip PyTorch entirely (e.g. on a Jetson).
        options: how to export (target, precision, batch shape, ...); see :class:`ExportOptions`.
        fields: shorthand for options fields, ``export(ckpt, target="trt", precision="fp16")``;
            they replace the same fields of ``options``.
        int8: the quantizer that makes INT8 artifacts from the FP32 ONNX (see
            :data:`Int8Quantizer`); :func:`edgefer.deploy.export` passes NNCF PTQ. Without it an
            INT8 export that needs quantization is refused before any work is done.
    """
    opts = merged(ExportOptions, options, fields, ExportError).resolved()
    if (checkpoint is None) == (onnx is None):
        raise ExportError("pass exactly one of a checkpoint or an ONNX model (--checkpoint / --onnx)")
    src = Path(checkpoint if checkpoint is not None else onnx)  # type: ignore[arg-type]
    if not src.exists():
        from edgefer.errors import CheckpointError

        raise (CheckpointError if checkpoint is not None else ExportError)(f"{src} does not exist")
    target = target_named(opts.target)
    src_meta = read_metadata(src) if onnx is not None else None
    if src_meta is not None and not target.builds_from_lower_precision:
        require_fp32(src, src_meta, f"{opts.target} export", ExportError)
    needs_calib = opts.precision == "int8" and not (src_meta is not None and src_meta.precision == "int8")
    if needs_calib and opts.calib_data is None:
        raise ExportError(
            "--precision int8 needs calibration data: pass --data PATH (a dataset; 300 training "
            "images are used to set the INT8 ranges)"
        )
    if needs_calib and int8 is None and target.needs_quantizer(opts):
        raise ExportError(
            "INT8 export needs a quantizer: call edgefer.deploy.export (what `edgefer export` runs), "
            "or pass int8=edgefer.deploy.ptq_int8"
        )
    for what, path in (("calibration", opts.calib_data), ("reference", opts.reference_data)):
        if path is not None and not Path(path).exists():
            raise ExportError(f"{what} dataset {path} does not exist")

    build_here = target.build_here(opts)  # a target that should build here and cannot says so now
    out = opts.out_path()
    if out.exists() and not out.is_dir():
        raise ExportError(f"output folder {out} exists and is not a folder")
    created = not out.exists()
    out = ensure_writable_dir(out)
    try:
        from edgefer.export.onnx import _tmp_dir

        with _tmp_dir(out) as stage:
            job = Job(src, src_meta, checkpoint is not None, opts, stage, out, build_here, int8)
            result = _move_into_place(_export_staged(job), stage, out, opts.overwrite)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()  # only when still empty: a failed export into a new folder leaves nothing
        raise
    return result


def _move_into_place(result: ExportResult, stage: Path, out: Path, overwrite: bool) -> ExportResult:
    """Every step succeeded: check the output policy, then move the staged files into ``out``."""
    staged = [f for f in result.files if f.parent == stage]
    check_outputs(out, [f.name for f in staged], overwrite=overwrite)
    primary = [f for f in staged if f in (result.artifact, result.artifact.with_suffix(".xml"))]
    order = [f for f in staged if f not in primary] + primary  # the artifact last: complete once visible
    moved = {f: _move(f, out) for f in order}
    record_outputs(out, [f.name for f in order], "export")
    result.files = [moved.get(f, f) for f in result.files]
    result.artifact = moved.get(result.artifact, result.artifact)
    result.onnx = moved.get(result.onnx, result.onnx) if result.onnx else None
    result.reference = moved.get(result.reference, result.reference) if result.reference else None
    result.commands = [c.replace(str(stage), str(out)) for c in result.commands]
    return result


def _export_staged(job: Job) -> ExportResult:
    from edgefer.export.onnx import export_onnx

    opts = job.opts
    # 1. the FP32 ONNX hub (or the ONNX we were given)
    if job.from_checkpoint:
        base = export_onnx(
            job.src,
            job.stage,
            img_size=opts.img_size,
            opset=opts.opset,
            dynamic=bool(opts.dynamic),
            max_batch=opts.max_batch,
            batch=opts.batch,
            name=opts.name,
        )
        fp32_onnx: Path | None = base.artifact
        meta = base.metadata
        job.parity.update(base.parity)
        job.files.append(base.artifact)
    else:
        assert job.src_meta is not None
        meta = job.src_meta
        fp32_onnx = job.src if meta.precision == "fp32" else None
        check_img_size(job.src, meta, opts.img_size, ExportError)
    stem = safe_name(opts.name or meta.model_name, "--name" if opts.name else "the model name in the metadata")

    reference = None
    if opts.reference_data is not None:
        if fp32_onnx is None:
            raise ExportError("reference predictions need the FP32 ONNX; pass it (not an FP16/Q-DQ ONNX)")
        from edgefer.export.reference import make_reference

        reference = job.stage / "reference.npz"
        make_reference(
            fp32_onnx,
            opts.reference_data,
            split=opts.reference_split,
            out=reference,
            progress=opts.progress,
            allow_missing_classes=opts.allow_missing_classes,
        )
        job.files.append(reference)

    precision = str(opts.precision)
    built = target_named(opts.target).build(job, fp32_onnx, stem, meta)
    artifact = built.artifact
    # an ONNX or an IR carries its own metadata; an engine's is the model's at the engine's precision
    in_file = format_of(artifact).metadata in ("onnx", "openvino")
    final_meta = read_metadata(artifact) if in_file else meta.replace(precision=precision)
    return ExportResult(
        target=opts.target,
        precision=precision,
        artifact=artifact,
        onnx=fp32_onnx,
        metadata=final_meta,
        parity=job.parity,
        files=job.files,
        reference=reference,
        engine_built=built.engine_built,
        commands=built.commands,
        notes=job.notes,
    )
