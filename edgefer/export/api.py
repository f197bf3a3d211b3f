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
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from edgefer.errors import ExportError, MissingDependencyError
from edgefer.export.options import ExportOptions
from edgefer.export.result import ExportResult
from edgefer.formats import format_named, format_of
from edgefer.metadata import ModelMetadata, read_metadata
from edgefer.utils.io import ensure_writable_dir
from edgefer.utils.options import merged
from edgefer.utils.outputs import check_outputs, record_outputs, safe_name

DEFAULT_TRT_VERSION = "10.3"  # JetPack 6.1/6.2, the current Jetson release


class Int8Artifact(Protocol):
    """What an INT8 quantizer returns (:class:`edgefer.quantize.QuantizeResult` is one)."""

    artifact: Path
    files: list[Path]
    report: dict[str, Any]


#: Quantizes an FP32 ONNX to INT8 for ``target`` ("onnx", "openvino", "trt") into ``out_dir``, called
#: with keywords ``onnx``, ``target``, ``out_dir``, ``calib_data``, ``calib_size``, ``progress`` and
#: ``allow_missing_classes``. :func:`edgefer.deploy.ptq_int8` is the one edgefer uses.
Int8Quantizer = Callable[..., Int8Artifact]


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
    src_meta = read_metadata(src) if onnx is not None else None
    if src_meta is not None and src_meta.precision != "fp32" and opts.target != "trt":
        raise ExportError(f"{src.name} is {src_meta.precision}; {opts.target} export starts from the FP32 ONNX")
    needs_calib = opts.precision == "int8" and not (src_meta is not None and src_meta.precision == "int8")
    if needs_calib and opts.calib_data is None:
        raise ExportError(
            "--precision int8 needs calibration data: pass --calib-data PATH (a dataset; 300 training "
            "images are used to set the INT8 ranges)"
        )
    if needs_calib and int8 is None and not (opts.target == "trt" and opts.int8_mode == "entropy"):
        raise ExportError(
            "INT8 export needs a quantizer: call edgefer.deploy.export (what `edgefer export` runs), "
            "or pass int8=edgefer.deploy.ptq_int8"
        )
    for what, path in (("calibration", opts.calib_data), ("reference", opts.reference_data)):
        if path is not None and not Path(path).exists():
            raise ExportError(f"{what} dataset {path} does not exist")

    build_here = opts.target == "trt" and not opts.onnx_only
    if build_here and not format_named("trt").installed():
        raise MissingDependencyError(
            "tensorrt",
            "trt",
            "building TensorRT engines (on a machine without TensorRT, pass --onnx-only to write the ONNX "
            "and the trtexec command for the device)",
        )
    out = opts.out_path()
    if out.exists() and not out.is_dir():
        raise ExportError(f"output folder {out} exists and is not a folder")
    created = not out.exists()
    out = ensure_writable_dir(out)
    try:
        from edgefer.export.onnx import _tmp_dir

        with _tmp_dir(out) as stage:
            job = _Job(src, src_meta, checkpoint is not None, opts, stage, out, build_here, int8)
            result = _move_into_place(_export_staged(job), stage, out, opts.overwrite)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()  # only when still empty: a failed export into a new folder leaves nothing
        raise
    return result


@dataclass
class _Job:
    """One export under way: its source, its resolved options, and what it has produced so far."""

    src: Path
    src_meta: ModelMetadata | None
    from_checkpoint: bool
    opts: ExportOptions
    stage: Path
    out: Path
    build_here: bool
    int8: Int8Quantizer | None
    parity: dict[str, float] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


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


def _export_staged(job: _Job) -> ExportResult:
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
        if opts.img_size is not None and opts.img_size != meta.preprocessing.input_size:
            raise ExportError(f"{job.src.name} was exported at {meta.preprocessing.input_size} px; drop --img-size")
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
    artifact: Path
    engine_built = False
    commands: list[str] = []
    if opts.target == "onnx":
        artifact = _onnx_precision(job, fp32_onnx, precision, stem, meta)
    elif opts.target == "openvino":
        if precision == "int8":
            artifact = _quantize(job, fp32_onnx, "openvino")
        else:
            from edgefer.export.openvino import export_openvino

            assert fp32_onnx is not None
            xml, diff = export_openvino(fp32_onnx, job.stage, precision, name=stem)
            job.parity[f"openvino_{precision}_vs_onnx"] = float(diff or 0.0)
            artifact = xml
            job.files.extend(format_of(xml).files(xml))
    else:
        artifact, engine_built, commands = _trt(job, fp32_onnx, stem, meta)
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
        engine_built=engine_built,
        commands=commands,
        notes=job.notes,
    )


def _check_printed_calib(job: _Job, source: Path, calib_cache: Path) -> None:
    """Refuse to print ``trtexec --int8 --calib=X`` where X is missing or made for another ONNX.

    trtexec does not check: with no file at X its calibrator feeds uniform random inputs and
    calibrates on them (NVIDIA/TensorRT samples/common/sampleEngines.cpp, ``RndInt8Calibrator``:
    only an existing cache file skips the random batches; issue 22 places it at 10.3.0 ~329-358),
    and a cache of another ONNX is matched by tensor names only. Nothing is written (one-line
    :class:`ExportError`).
    """
    from edgefer.export.calibrator import cache_problem
    from edgefer.utils.io import sha256_file

    problem = cache_problem(calib_cache, sha256_file(source))
    if problem is None:
        return
    onnx = str(job.src) if not job.from_checkpoint else "<the FP32 ONNX from `edgefer export --target onnx`>"
    make = (
        f"edgefer export --onnx {onnx} --target trt --precision int8 --int8-mode entropy "
        f"--calib-data {job.opts.calib_data} --out {job.out}"
    )
    raise ExportError(
        f"the printed `trtexec --int8 --calib={calib_cache}` needs a calibration cache of this ONNX and {problem} "
        f"(trtexec would calibrate on random data or another model's scales): make it first with one TensorRT <= 10 "
        f"build, `{make}`, on the device (it writes the cache and its key), or use the Q/DQ ONNX (--int8-mode qdq)"
    )


def _quantize(job: _Job, fp32_onnx: Path | None, target: str) -> Path:
    """INT8 for ``target`` by the job's quantizer, from the FP32 ONNX, into the staging folder."""
    if fp32_onnx is None:
        raise ExportError("INT8 quantization starts from the FP32 ONNX")
    if job.int8 is None:  # export() refuses this up front; kept for direct callers of the helpers
        raise ExportError("INT8 export needs a quantizer: call edgefer.deploy.export")
    res = job.int8(
        onnx=fp32_onnx,
        target=target,
        out_dir=job.stage,
        calib_data=job.opts.calib_data,
        calib_size=job.opts.calib_size,
        progress=job.opts.progress,
        allow_missing_classes=job.opts.allow_missing_classes,
    )
    for key in ("agreement", "delta_pts"):
        if isinstance(res.report.get(key), (int, float)):
            job.parity[f"int8_{key}"] = float(res.report[key])
    if (res.report.get("quantization") or {}).get("method") == "ptq":
        job.notes.append(
            "INT8 by plain PTQ, every layer INT8 and not held to a gate; `edgefer quantize` (ptq-acc by default) "
            "keeps layers in floating point until the production gate holds"
        )
    job.files.extend(f for f in res.files if f not in job.files)
    return Path(res.artifact)


def _onnx_precision(job: _Job, fp32_onnx: Path | None, precision: str, stem: str, meta: ModelMetadata) -> Path:
    """The ONNX at ``precision``: the FP32 hub, its FP16 conversion, or the Q/DQ INT8 ONNX."""
    if fp32_onnx is None:
        raise ExportError("this export starts from the FP32 ONNX")
    if precision == "fp32":
        return fp32_onnx
    if precision == "fp16":
        from edgefer.export.fp16 import check_fp16, to_fp16_onnx

        fp16 = to_fp16_onnx(fp32_onnx, job.stage / f"{stem}_fp16.onnx")
        job.files.append(fp16)
        job.parity["onnx_fp16_vs_fp32"] = check_fp16(fp32_onnx, fp16, meta)
        return fp16
    return _quantize(job, fp32_onnx, job.opts.target)


def _trt(job: _Job, fp32_onnx: Path | None, stem: str, meta: ModelMetadata) -> tuple[Path, bool, list[str]]:
    """The TensorRT engine (built here) or the ONNX the device builds it from, and the commands."""
    from edgefer.engine_sidecar import parse_trt_version
    from edgefer.export import tensorrt as trtmod

    opts, prof, out = job.opts, job.opts.profile(), job.out
    precision, dla_core = str(opts.precision), opts.dla_core
    if job.build_here:
        import tensorrt

        version = str(tensorrt.__version__)
    else:
        version = opts.trt_version or (prof.tensorrt if prof is not None else DEFAULT_TRT_VERSION)
    # which ONNX the engine is built from
    given_kind = trtmod.onnx_kind_of(job.src_meta) if job.src_meta is not None else "fp32"
    calib = precision == "int8" and opts.int8_mode == "entropy"
    if given_kind != "fp32":
        expected = "fp16" if given_kind == "fp16" else "int8"
        if precision != expected:
            raise ExportError(f"the given ONNX is {given_kind}; it builds a {expected} engine, not {precision}")
        source = job.src
    elif precision == "fp32" or calib:
        source = fp32_onnx  # type: ignore[assignment]
    elif precision == "fp16":
        # The FP16 ONNX is always made: it is what a strongly typed build (TensorRT >= 10) runs and its
        # numerics are checked here on ORT. TensorRT 8.x builds the FP32 ONNX with the FP16 flag.
        fp16 = _onnx_precision(job, fp32_onnx, "fp16", stem, meta)
        plan = trtmod.plan_build(version, "fp16", "fp16", dla_core, opts.fp16_mode)
        source = fp16 if (plan.strongly_typed or parse_trt_version(version)[0] >= 11) else fp32_onnx  # type: ignore[assignment]
    else:
        source = _quantize(job, fp32_onnx, "trt")
    kind = "fp32" if calib else trtmod.onnx_kind_of(read_metadata(source))
    profile = trtmod.batch_profile(int(opts.batch or 1), bool(opts.dynamic), opts.max_batch, opts.opt_batch)
    # a dynamic-batch ONNX needs shapes even for a static engine (min = opt = max = batch)
    onnx_dynamic = bool(read_metadata(source).extra.get("dynamic_batch", True))
    engine_name = f"{stem}_{precision}" + (f"_dla{dla_core}" if dla_core is not None else "") + ".engine"
    cache = Path(opts.timing_cache) if opts.timing_cache is not None else out / "trt_timing.cache"
    calib_cache = (out / f"{stem}.calib.cache") if calib else None
    # one build spec for the engine built here and the trtexec command printed for the device
    spec = trtmod.EngineBuildSpec(
        precision,
        profile if onnx_dynamic else None,
        int(opts.workspace_mib or 1024),
        dla_core,
        cache,
        opts.fp16_mode,
        calib_data=opts.calib_data if calib else None,
        calib_cache=calib_cache,
        calib_size=opts.calib_size,
    )
    cmd = trtmod.trtexec_command(
        out / source.name,
        out / engine_name,
        spec,
        meta.preprocessing.input_shape,
        version,
        input_name=str(meta.extra.get("input_name", "input")),
        onnx_kind=kind,
    )
    # the device's own build, from the ONNX written here: the options that shape the engine, nothing else
    device = ExportOptions(
        target="trt",
        precision=precision,
        out_dir=str(out),
        workspace_mib=opts.workspace_mib,
        dla_core=dla_core,
        **(
            {"dynamic": True, "max_batch": profile.max, "opt_batch": profile.opt}
            if opts.dynamic and onnx_dynamic  # a static-batch ONNX (an imported one, often) builds its own batch
            else {"dynamic": False, "batch": opts.batch if onnx_dynamic else read_metadata(source).extra.get("batch")}
        ),
    )
    commands = [shlex.join(cmd), shlex.join(device.to_argv(onnx=out / source.name))]
    if calib and not job.build_here:
        _check_printed_calib(job, source, calib_cache)  # type: ignore[arg-type]
    if calib:
        job.notes.append("trtexec reuses the calibration cache written by a first `edgefer export` build (--calib)")
    if not job.build_here:
        job.notes.append(
            f"no TensorRT engine was built here; the device builds it from {source.name} "
            f"(commands below assume TensorRT {version})"
        )
        return source, False, commands
    build = trtmod.build_engine(
        source,
        job.stage / engine_name,
        spec,
    )
    job.files += [build.engine, build.sidecar]
    job.notes.append(f"engine built with TensorRT {version} ({build.info['build']['mode']})")
    return build.engine, True, commands
