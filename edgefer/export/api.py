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
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from edgefer.errors import ExportError, MissingDependencyError
from edgefer.export.profiles import DeviceProfile, load_profile
from edgefer.export.result import PRECISIONS, TARGETS, ExportResult
from edgefer.metadata import ModelMetadata, read_metadata
from edgefer.utils.io import ensure_writable_dir
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


def _resolve_profile(device_profile: str | os.PathLike | DeviceProfile | None) -> DeviceProfile | None:
    if device_profile is None or isinstance(device_profile, DeviceProfile):
        return device_profile
    return load_profile(device_profile)


def _pick(value: Any, profile: DeviceProfile | None, attr: str, default: Any) -> Any:
    if value is not None:
        return value
    if profile is not None and getattr(profile, attr) is not None:
        return getattr(profile, attr)
    return default


def _move(src: Path, dst_dir: Path) -> Path:
    dst = dst_dir / src.name
    os.replace(src, dst)
    return dst


def export(
    checkpoint: str | os.PathLike | None = None,
    target: str = "onnx",
    precision: str | None = None,
    out_dir: str | os.PathLike = "runs/export",
    batch: int | None = None,
    dynamic: bool | None = None,
    max_batch: int | None = None,
    opt_batch: int | None = None,
    img_size: int | None = None,
    reference_data: str | os.PathLike | None = None,
    reference_split: str = "test",
    calib_data: str | os.PathLike | None = None,
    calib_size: int = 300,
    device_profile: str | os.PathLike | DeviceProfile | None = None,
    onnx: str | os.PathLike | None = None,
    onnx_only: bool = False,
    workspace_mib: int | None = None,
    dla_core: int | None = None,
    trt_version: str | None = None,
    fp16_mode: str = "auto",
    int8_mode: str = "qdq",
    timing_cache: str | os.PathLike | None = None,
    opset: int = 17,
    name: str | None = None,
    progress: bool = True,
    allow_missing_classes: bool = False,
    overwrite: bool = False,
    int8: Int8Quantizer | None = None,
) -> ExportResult:
    """Export to ``target`` ("onnx", "openvino", "trt") at ``precision`` ("fp32", "fp16", "int8").

    Args:
        checkpoint: the training checkpoint; or give ``onnx`` (an edgefer FP32 ONNX, or for
            ``trt`` also an FP16 / Q-DQ ONNX) to skip PyTorch entirely (e.g. on a Jetson).
        batch / dynamic / max_batch / opt_batch: ``batch=N`` gives a static batch; the default
            (or ``dynamic=True``) a dynamic batch with ``max_batch`` recorded for TensorRT's
            optimisation profile (1, opt, max).
        reference_data: dataset whose ``reference_split`` the FP32 ONNX predicts into
            ``reference.npz``.
        calib_data: dataset for INT8 calibration (required for ``int8``).
        device_profile: a :class:`DeviceProfile` or YAML path (``export/jetson/*.yaml``); explicit
            arguments override it.
        onnx_only: ``trt`` only: write the ONNX and the device commands, build no engine.
        trt_version: the device's TensorRT (for the printed ``trtexec`` flags) when not building
            here; default: the profile's, else the installed one, else 10.3 (JetPack 6.1/6.2).
        fp16_mode: "auto" (strongly typed FP16 ONNX where TensorRT has it), "flag" (FP16 builder
            flag, TensorRT <= 10) or "strongly-typed".
        int8_mode: "qdq" (Q/DQ ONNX from the ``int8`` quantizer, default) or "entropy"
            (the legacy TensorRT calibrator, TensorRT <= 10).
        int8: the quantizer that makes INT8 artifacts from the FP32 ONNX (see
            :data:`Int8Quantizer`); :func:`edgefer.deploy.export` passes NNCF PTQ. Without it an
            INT8 export that needs quantization is refused before any work is done.
    """
    if name is not None:
        safe_name(name, "--name")
    for flag, value in (
        ("--batch", batch),
        ("--max-batch", max_batch),
        ("--opt-batch", opt_batch),
        ("--calib-size", calib_size),
        ("--img-size", img_size),
    ):
        if value is not None and value < 1:
            raise ExportError(f"{flag} must be positive, got {value}")
    prof = _resolve_profile(device_profile)
    if target not in TARGETS:
        raise ExportError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    precision = _pick(precision, prof, "precision", "fp32")
    if precision not in PRECISIONS:
        raise ExportError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if int8_mode not in ("qdq", "entropy"):
        raise ExportError(f"int8_mode must be 'qdq' or 'entropy', not {int8_mode!r}")
    if int8_mode == "entropy" and target != "trt":
        raise ExportError("the entropy calibrator is a TensorRT feature: use --target trt (or int8_mode='qdq')")
    if (checkpoint is None) == (onnx is None):
        raise ExportError("pass exactly one of a checkpoint or an ONNX model (--checkpoint / --onnx)")
    src = Path(checkpoint if checkpoint is not None else onnx)  # type: ignore[arg-type]
    if not src.exists():
        from edgefer.errors import CheckpointError

        raise (CheckpointError if checkpoint is not None else ExportError)(f"{src} does not exist")
    src_meta = read_metadata(src) if onnx is not None else None
    if src_meta is not None and src_meta.precision != "fp32" and target != "trt":
        raise ExportError(f"{src.name} is {src_meta.precision}; {target} export starts from the FP32 ONNX")
    needs_calib = precision == "int8" and not (src_meta is not None and src_meta.precision == "int8")
    if needs_calib and calib_data is None:
        raise ExportError(
            "--precision int8 needs calibration data: pass --calib-data PATH (a dataset; 300 training "
            "images are used to set the INT8 ranges)"
        )
    if needs_calib and int8 is None and not (target == "trt" and int8_mode == "entropy"):
        raise ExportError(
            "INT8 export needs a quantizer: call edgefer.deploy.export (what `edgefer export` runs), "
            "or pass int8=edgefer.deploy.ptq_int8"
        )
    if calib_data is not None and not Path(calib_data).exists():
        raise ExportError(f"calibration dataset {calib_data} does not exist")
    if reference_data is not None and not Path(reference_data).exists():
        raise ExportError(f"reference dataset {reference_data} does not exist")

    from edgefer.export.tensorrt import tensorrt_available

    build_here = target == "trt" and not onnx_only
    if build_here and not tensorrt_available():
        raise MissingDependencyError(
            "tensorrt",
            "trt",
            "building TensorRT engines (on a machine without TensorRT, pass --onnx-only to write the ONNX "
            "and the trtexec command for the device)",
        )
    dla_core = _pick(dla_core, prof, "dla_core", None)
    workspace_mib = int(_pick(workspace_mib, prof, "workspace_mib", 1024))
    if dynamic is None:
        dynamic = prof.dynamic if (prof is not None and batch is None) else batch is None
    batch = int(_pick(batch, prof, "batch", 1))
    max_batch = _pick(max_batch, prof, "max_batch", None) if dynamic else None
    opt_batch = _pick(opt_batch, prof, "opt_batch", None) if dynamic else None
    img_size = _pick(img_size, prof, "img_size", None)

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ExportError(f"output folder {out} exists and is not a folder")
    created = not out.exists()
    out = ensure_writable_dir(out)
    try:
        result = _export_in(
            out,
            overwrite,
            dict(
                src=src,
                src_meta=src_meta,
                from_checkpoint=checkpoint is not None,
                target=target,
                precision=precision,
                out=out,
                batch=batch,
                dynamic=bool(dynamic),
                max_batch=max_batch,
                opt_batch=opt_batch,
                img_size=img_size,
                reference_data=reference_data,
                reference_split=reference_split,
                calib_data=calib_data,
                calib_size=calib_size,
                prof=prof,
                build_here=build_here,
                workspace_mib=workspace_mib,
                dla_core=dla_core,
                trt_version=trt_version,
                fp16_mode=fp16_mode,
                int8_mode=int8_mode,
                timing_cache=timing_cache,
                opset=opset,
                name=name,
                progress=progress,
                allow_missing_classes=allow_missing_classes,
                int8=int8,
            ),
        )
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()  # only when still empty: a failed export into a new folder leaves nothing
        raise
    return result


def _export_in(out: Path, overwrite: bool, kwargs: dict[str, Any]) -> ExportResult:
    """Run the export in a staging folder inside ``out``; move its files in only when all succeeded."""
    from edgefer.export.onnx import _tmp_dir

    with _tmp_dir(out) as stage:
        result = _export_staged(stage=stage, **kwargs)
        # every step succeeded: check the output policy, then move the staged files into place
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


def _export_staged(
    *,
    src: Path,
    src_meta: ModelMetadata | None,
    from_checkpoint: bool,
    target: str,
    precision: str,
    stage: Path,
    out: Path,
    batch: int,
    dynamic: bool,
    max_batch: int | None,
    opt_batch: int | None,
    img_size: int | None,
    reference_data: Any,
    reference_split: str,
    calib_data: Any,
    calib_size: int,
    prof: DeviceProfile | None,
    build_here: bool,
    workspace_mib: int,
    dla_core: int | None,
    trt_version: str | None,
    fp16_mode: str,
    int8_mode: str,
    timing_cache: Any,
    opset: int,
    name: str | None,
    progress: bool,
    allow_missing_classes: bool = False,
    int8: Int8Quantizer | None = None,
) -> ExportResult:
    from edgefer.export.onnx import export_onnx

    files: list[Path] = []
    parity: dict[str, float] = {}
    notes: list[str] = []
    # 1. the FP32 ONNX hub (or the ONNX we were given)
    if from_checkpoint:
        base = export_onnx(
            src, stage, img_size=img_size, opset=opset, dynamic=dynamic, max_batch=max_batch, batch=batch, name=name
        )
        fp32_onnx: Path | None = base.artifact
        meta = base.metadata
        parity.update(base.parity)
        files.append(base.artifact)
    else:
        assert src_meta is not None
        meta = src_meta
        fp32_onnx = src if src_meta.precision == "fp32" else None
        if img_size is not None and img_size != meta.preprocessing.input_size:
            raise ExportError(f"{src.name} was exported at {meta.preprocessing.input_size} px; drop --img-size")
    stem = safe_name(name or meta.model_name, "--name" if name else "the model name in the metadata")

    reference = None
    if reference_data is not None:
        if fp32_onnx is None:
            raise ExportError("reference predictions need the FP32 ONNX; pass it (not an FP16/Q-DQ ONNX)")
        from edgefer.export.reference import make_reference

        reference = stage / "reference.npz"
        make_reference(
            fp32_onnx,
            reference_data,
            split=reference_split,
            out=reference,
            progress=progress,
            allow_missing_classes=allow_missing_classes,
        )
        files.append(reference)

    artifact: Path
    engine_built = False
    commands: list[str] = []
    if target == "onnx":
        artifact = _onnx_precision(
            fp32_onnx,
            precision,
            stage,
            stem,
            calib_data,
            calib_size,
            "onnx",
            progress,
            parity,
            files,
            meta,
            allow_missing_classes,
            int8,
        )
    elif target == "openvino":
        if precision == "int8":
            artifact = _quantize(
                fp32_onnx,
                "openvino",
                stage,
                calib_data,
                calib_size,
                progress,
                parity,
                files,
                allow_missing_classes,
                int8,
            )
        else:
            from edgefer.export.openvino import export_openvino

            assert fp32_onnx is not None
            xml, diff = export_openvino(fp32_onnx, stage, precision, name=stem)
            parity[f"openvino_{precision}_vs_onnx"] = float(diff or 0.0)
            artifact = xml
            files += [xml.with_suffix(".bin"), xml]
    else:
        artifact, engine_built, commands = _trt(
            src_meta=src_meta,
            given_onnx=None if from_checkpoint else src,
            fp32_onnx=fp32_onnx,
            precision=precision,
            stage=stage,
            out=out,
            stem=stem,
            calib_data=calib_data,
            calib_size=calib_size,
            prof=prof,
            build_here=build_here,
            dynamic=dynamic,
            batch=batch,
            max_batch=max_batch,
            opt_batch=opt_batch,
            workspace_mib=workspace_mib,
            dla_core=dla_core,
            trt_version=trt_version,
            fp16_mode=fp16_mode,
            int8_mode=int8_mode,
            timing_cache=timing_cache,
            progress=progress,
            parity=parity,
            files=files,
            notes=notes,
            meta=meta,
            allow_missing_classes=allow_missing_classes,
            int8=int8,
        )
    final_meta = read_metadata(artifact) if artifact.suffix in (".onnx", ".xml") else meta.replace(precision=precision)
    return ExportResult(
        target=target,
        precision=precision,
        artifact=artifact,
        onnx=fp32_onnx,
        metadata=final_meta,
        parity=parity,
        files=files,
        reference=reference,
        engine_built=engine_built,
        commands=commands,
        notes=notes,
    )


def _quantize(
    fp32_onnx: Path | None,
    target: str,
    stage: Path,
    calib_data: Any,
    calib_size: int,
    progress: bool,
    parity: dict[str, float],
    files: list[Path],
    allow_missing_classes: bool = False,
    int8: Int8Quantizer | None = None,
) -> Path:
    if fp32_onnx is None:
        raise ExportError("INT8 quantization starts from the FP32 ONNX")
    if int8 is None:  # export() refuses this up front; kept for direct callers of the helpers
        raise ExportError("INT8 export needs a quantizer: call edgefer.deploy.export")
    res = int8(
        onnx=fp32_onnx,
        target=target,
        out_dir=stage,
        calib_data=calib_data,
        calib_size=calib_size,
        progress=progress,
        allow_missing_classes=allow_missing_classes,
    )
    for key in ("agreement", "delta_pts"):
        if isinstance(res.report.get(key), (int, float)):
            parity[f"int8_{key}"] = float(res.report[key])
    files.extend(f for f in res.files if f not in files)
    return Path(res.artifact)


def _onnx_precision(
    fp32_onnx: Path | None,
    precision: str,
    stage: Path,
    stem: str,
    calib_data: Any,
    calib_size: int,
    q_target: str,
    progress: bool,
    parity: dict[str, float],
    files: list[Path],
    meta: ModelMetadata,
    allow_missing_classes: bool = False,
    int8: Int8Quantizer | None = None,
) -> Path:
    """The ONNX at ``precision``: the FP32 hub, its FP16 conversion, or the Q/DQ INT8 ONNX."""
    if fp32_onnx is None:
        raise ExportError("this export starts from the FP32 ONNX")
    if precision == "fp32":
        return fp32_onnx
    if precision == "fp16":
        from edgefer.export.fp16 import check_fp16, to_fp16_onnx

        fp16 = to_fp16_onnx(fp32_onnx, stage / f"{stem}_fp16.onnx")
        files.append(fp16)
        parity["onnx_fp16_vs_fp32"] = check_fp16(fp32_onnx, fp16, meta)
        return fp16
    return _quantize(
        fp32_onnx, q_target, stage, calib_data, calib_size, progress, parity, files, allow_missing_classes, int8
    )


def _trt(
    *,
    src_meta: ModelMetadata | None,
    given_onnx: Path | None,
    fp32_onnx: Path | None,
    precision: str,
    stage: Path,
    out: Path,
    stem: str,
    calib_data: Any,
    calib_size: int,
    prof: DeviceProfile | None,
    build_here: bool,
    dynamic: bool,
    batch: int,
    max_batch: int | None,
    opt_batch: int | None,
    workspace_mib: int,
    dla_core: int | None,
    trt_version: str | None,
    fp16_mode: str,
    int8_mode: str,
    timing_cache: Any,
    progress: bool,
    parity: dict[str, float],
    files: list[Path],
    notes: list[str],
    meta: ModelMetadata,
    allow_missing_classes: bool = False,
    int8: Int8Quantizer | None = None,
) -> tuple[Path, bool, list[str]]:
    from edgefer.engine_sidecar import parse_trt_version
    from edgefer.export import tensorrt as trtmod

    if build_here:
        import tensorrt

        version = str(tensorrt.__version__)
    else:
        version = trt_version or (prof.tensorrt if prof is not None else DEFAULT_TRT_VERSION)
    # which ONNX the engine is built from
    given_kind = trtmod.onnx_kind_of(src_meta) if src_meta is not None else "fp32"
    calib = precision == "int8" and int8_mode == "entropy"
    if given_kind != "fp32":
        expected = "fp16" if given_kind == "fp16" else "int8"
        if precision != expected:
            raise ExportError(f"the given ONNX is {given_kind}; it builds a {expected} engine, not {precision}")
        assert given_onnx is not None
        source = given_onnx
    elif precision == "fp32" or calib:
        source = fp32_onnx  # type: ignore[assignment]
    elif precision == "fp16":
        # The FP16 ONNX is always made: it is what a strongly typed build (TensorRT >= 10) runs and its
        # numerics are checked here on ORT. TensorRT 8.x builds the FP32 ONNX with the FP16 flag.
        fp16 = _onnx_precision(fp32_onnx, "fp16", stage, stem, None, 0, "trt", progress, parity, files, meta)
        plan = trtmod.plan_build(version, "fp16", "fp16", dla_core, fp16_mode)
        source = fp16 if (plan.strongly_typed or parse_trt_version(version)[0] >= 11) else fp32_onnx  # type: ignore[assignment]
    else:
        source = _quantize(
            fp32_onnx, "trt", stage, calib_data, calib_size, progress, parity, files, allow_missing_classes, int8
        )
    kind = "fp32" if calib else trtmod.onnx_kind_of(read_metadata(source))
    profile = trtmod.batch_profile(batch, dynamic, max_batch, opt_batch)
    # a dynamic-batch ONNX needs shapes even for a static engine (min = opt = max = batch)
    onnx_dynamic = bool(read_metadata(source).extra.get("dynamic_batch", True))
    img = meta.preprocessing.input_size
    engine_name = f"{stem}_{precision}" + (f"_dla{dla_core}" if dla_core is not None else "") + ".engine"
    cache = Path(timing_cache) if timing_cache is not None else out / "trt_timing.cache"
    calib_cache = (out / f"{stem}.calib.cache") if calib else None
    cmd = trtmod.trtexec_command(
        out / source.name,
        out / engine_name,
        trtmod.EngineBuildSpec(
            precision,
            profile if onnx_dynamic else None,
            workspace_mib,
            dla_core,
            cache,
            fp16_mode,
            calib_cache=calib_cache,
        ),
        img,
        version,
        onnx_kind=kind,
    )
    edgefer_cmd = [
        "edgefer",
        "export",
        "--onnx",
        str(out / source.name),
        "--target",
        "trt",
        "--precision",
        precision,
        "--out",
        str(out),
        "--workspace",
        str(workspace_mib),
    ]
    edgefer_cmd += (
        ["--dynamic", "--max-batch", str(profile.max), "--opt-batch", str(profile.opt)]
        if dynamic
        else ["--batch", str(batch)]
    )
    if dla_core is not None:
        edgefer_cmd += ["--dla-core", str(dla_core)]
    commands = [shlex.join(cmd), shlex.join(edgefer_cmd)]
    if calib:
        notes.append("trtexec reuses the calibration cache written by a first `edgefer export` build (--calib)")
    if not build_here:
        notes.append(
            f"no TensorRT engine was built here; the device builds it from {source.name} "
            f"(commands below assume TensorRT {version})"
        )
        return source, False, commands
    build = trtmod.build_engine(
        source,
        stage / engine_name,
        trtmod.EngineBuildSpec(
            precision,
            profile if onnx_dynamic else None,
            workspace_mib,
            dla_core,
            cache,
            fp16_mode,
            calib_data=calib_data if calib else None,
            calib_cache=calib_cache,
            calib_size=calib_size,
        ),
    )
    files += [build.engine, build.sidecar]
    notes.append(f"engine built with TensorRT {version} ({build.info['build']['mode']})")
    return build.engine, True, commands
