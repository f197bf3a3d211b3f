"""The user-facing export: :func:`export` is what ``edgefer export`` and the pipeline call.

It is :func:`edgefer.export.export` with INT8 wired in. Building artifacts (:mod:`edgefer.export`)
and quantizing them (:mod:`edgefer.quantize`) are two layers, and quantize sits above export (it
exports the FP32 ONNX it starts from), so export may not import quantize. The one place that needs
both -- ``--precision int8`` on ``edgefer export`` -- lives here, above both, and hands NNCF
post-training quantization (:func:`ptq_int8`) to the export as its INT8 quantizer.

Importing this module is cheap: torch, onnx and NNCF are imported by the calls that need them.

>>> from edgefer.deploy import export  # doctest: +SKIP
>>> export("best.pt", target="openvino", precision="int8", calib_data="data/rafdb", out_dir="runs/x")  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

from edgefer.export.api import export as _export
from edgefer.export.result import ExportResult

__all__ = ["export", "ptq_int8"]


def ptq_int8(
    *,
    onnx: Path,
    target: str,
    out_dir: Path,
    calib_data: str | os.PathLike | None,
    calib_size: int,
    progress: bool = True,
    allow_missing_classes: bool = False,
) -> Any:
    """INT8 by NNCF post-training quantization of the FP32 ``onnx`` (an
    :data:`edgefer.export.api.Int8Quantizer`): an OpenVINO INT8 IR for ``target="openvino"``, the
    Q/DQ ONNX for ``"onnx"`` and ``"trt"``. Returns the :class:`edgefer.quantize.QuantizeResult`."""
    from edgefer.quantize import quantize

    return quantize(
        checkpoint=None,
        data=calib_data,
        target=target,
        method="ptq",
        calib_size=calib_size,
        out_dir=out_dir,
        onnx_path=onnx,
        progress=progress,
        allow_missing_classes=allow_missing_classes,
    )


def export(*args: Any, **kwargs: Any) -> ExportResult:
    """Export a checkpoint (or an edgefer ONNX) to ``target`` at ``precision``; INT8 by NNCF PTQ.

    Takes exactly the arguments of :func:`edgefer.export.export` (its signature is this one's) and
    passes :func:`ptq_int8` as ``int8`` unless the caller gives another quantizer.
    """
    kwargs.setdefault("int8", ptq_int8)
    return _export(*args, **kwargs)


export.__signature__ = inspect.signature(_export)  # type: ignore[attr-defined]
