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

import os
from pathlib import Path
from typing import Any

from edgefer.export.api import Int8Quantizer
from edgefer.export.api import export as _export
from edgefer.export.options import ExportOptions
from edgefer.export.result import ExportResult

__all__ = ["ExportOptions", "export", "ptq_int8"]


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
    Q/DQ ONNX for ``"onnx"`` and ``"trt"``. Returns the :class:`edgefer.quantize.QuantizeResult`.

    Plain PTQ on purpose, not ``edgefer quantize``'s default (``ptq-acc`` held to the production
    gate): ``edgefer export`` takes no budget (``--gate``/``--max-drop``) and has no exit status for
    a broken one, so a gate there could be neither chosen nor reported; the export says so in its
    notes and prints the INT8 agreement, and ``edgefer quantize`` is the command that holds INT8
    to a gate (its Q/DQ ONNX then goes to ``edgefer export --onnx ... --target trt``)."""
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


def export(
    checkpoint: str | os.PathLike | None = None,
    options: ExportOptions | None = None,
    *,
    onnx: str | os.PathLike | None = None,
    int8: Int8Quantizer | None = None,
    **fields: Any,
) -> ExportResult:
    """Export a checkpoint (or an edgefer ONNX) as ``options`` say; INT8 by NNCF PTQ.

    The arguments are those of :func:`edgefer.export.export`, which this calls with
    :func:`ptq_int8` as ``int8`` unless the caller gives another quantizer.
    """
    return _export(checkpoint, options, onnx=onnx, int8=int8 or ptq_int8, **fields)
