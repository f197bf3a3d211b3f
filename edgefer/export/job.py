"""One export under way (:class:`Job`) and the steps every target's build shares: the ONNX at a
precision and INT8 by the caller's quantizer.

:func:`edgefer.export.export` makes the job; the target module (:mod:`edgefer.export.targets`)
builds its artifact from it. Kept apart from :mod:`edgefer.export.api` so the targets can use
these steps without importing the function that calls them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from edgefer.errors import ExportError
from edgefer.export.options import ExportOptions
from edgefer.metadata import ModelMetadata


class Int8Artifact(Protocol):
    """What an INT8 quantizer returns (:class:`edgefer.quantize.QuantizeResult` is one)."""

    artifact: Path
    files: list[Path]
    report: dict[str, Any]


#: Quantizes an FP32 ONNX to INT8 for ``target`` ("onnx", "openvino", "trt") into ``out_dir``, called
#: with keywords ``onnx``, ``target``, ``out_dir``, ``calib_data``, ``calib_size``, ``progress`` and
#: ``allow_missing_classes``. :func:`edgefer.deploy.ptq_int8` is the one edgefer uses.
Int8Quantizer = Callable[..., Int8Artifact]


@dataclass
class Job:
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


def quantize(job: Job, fp32_onnx: Path | None, target: str) -> Path:
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


def onnx_at(job: Job, fp32_onnx: Path | None, precision: str, stem: str, meta: ModelMetadata) -> Path:
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
    return quantize(job, fp32_onnx, job.opts.target)
