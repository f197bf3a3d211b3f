"""The TensorRT target: an engine (``.engine`` + JSON sidecar) built here where ``tensorrt`` imports,
else the ONNX the device builds it from (FP32, FP16 or Q/DQ INT8, numerics checked on ONNX Runtime)
and the ``trtexec`` / ``edgefer export`` commands for the device. INT8 is the Q/DQ ONNX of the
INT8 quantizer (``--int8-mode qdq``) or TensorRT's own entropy calibrator (``entropy``, TensorRT <= 10).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from edgefer.errors import ExportError, MissingDependencyError
from edgefer.export.job import Job, onnx_at, quantize
from edgefer.export.options import ExportOptions
from edgefer.export.targets.base import QDQ_ONNX, Built, Target
from edgefer.formats import format_named
from edgefer.metadata import read_metadata

if TYPE_CHECKING:
    from edgefer.metadata import ModelMetadata

DEFAULT_TRT_VERSION = "10.3"  # JetPack 6.1/6.2, the current Jetson release


class TensorRTTarget(Target):
    """``--target trt``."""

    name = "trt"
    int8 = QDQ_ONNX
    methods = ("ptq", "ptq-acc", "qat")
    int8_modes = ("qdq", "entropy")
    device_commands = True
    builds_from_lower_precision = True
    # the engines are built from the FP16 and Q/DQ INT8 ONNX, which run TensorRT's numerics on ONNX Runtime
    pipeline_stages = ("onnx-fp16", "onnx-int8", "trt-fp16", "trt-int8")
    missing_note = (
        "TensorRT engines were not built or benchmarked here: tensorrt is not installed. "
        "The FP16 and Q/DQ INT8 ONNX rows run the numerics TensorRT will execute on ONNX Runtime."
    )

    def needs_quantizer(self, opts: ExportOptions) -> bool:
        """The entropy calibrator is TensorRT's own: only ``qdq`` needs the INT8 quantizer."""
        return opts.int8_mode != "entropy"

    def build_here(self, opts: ExportOptions) -> bool:
        """Unless ``onnx_only``; a missing ``tensorrt`` is then a :class:`MissingDependencyError` before any work."""
        if opts.onnx_only:
            return False
        if not format_named(self.name).installed():
            raise MissingDependencyError(
                "tensorrt",
                "trt",
                "building TensorRT engines (on a machine without TensorRT, pass --onnx-only to write the ONNX "
                "and the trtexec command for the device)",
            )
        return True

    def build(self, job: Job, fp32_onnx: Path | None, stem: str, meta: ModelMetadata) -> Built:
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
            fp16 = onnx_at(job, fp32_onnx, "fp16", stem, meta)
            plan = trtmod.plan_build(version, "fp16", "fp16", dla_core, opts.fp16_mode)
            source = fp16 if (plan.strongly_typed or parse_trt_version(version)[0] >= 11) else fp32_onnx  # type: ignore[assignment]
        else:
            source = quantize(job, fp32_onnx, self.name)
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
            target=self.name,
            precision=precision,
            out_dir=str(out),
            workspace_mib=opts.workspace_mib,
            dla_core=dla_core,
            **(
                {"dynamic": True, "max_batch": profile.max, "opt_batch": profile.opt}
                if opts.dynamic and onnx_dynamic  # a static-batch ONNX (an imported one, often) builds its own batch
                else {
                    "dynamic": False,
                    "batch": opts.batch if onnx_dynamic else read_metadata(source).extra.get("batch"),
                }
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
            return Built(source, False, commands)
        build = trtmod.build_engine(
            source,
            job.stage / engine_name,
            spec,
        )
        job.files += [build.engine, build.sidecar]
        job.notes.append(f"engine built with TensorRT {version} ({build.info['build']['mode']})")
        return Built(build.engine, True, commands)


def _check_printed_calib(job: Job, source: Path, calib_cache: Path) -> None:
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
        f"--data {job.opts.calib_data} --out {job.out}"
    )
    raise ExportError(
        f"the printed `trtexec --int8 --calib={calib_cache}` needs a calibration cache of this ONNX and {problem} "
        f"(trtexec would calibrate on random data or another model's scales): make it first with one TensorRT <= 10 "
        f"build, `{make}`, on the device (it writes the cache and its key), or use the Q/DQ ONNX (--int8-mode qdq)"
    )


TARGET = TensorRTTarget()
