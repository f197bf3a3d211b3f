"""Export stage: checkpoint -> FP32 ONNX (the hub) -> FP16 ONNX, OpenVINO IR, TensorRT engine.

Importing this package is cheap: torch, onnx, openvino and tensorrt are imported by the
functions that need them (so a Jetson can build engines from an ONNX without PyTorch).

* :class:`ExportOptions` — how to export, validated on construction (:mod:`edgefer.export.options`)
* :func:`export` — checkpoint or ONNX -> artifact (:mod:`edgefer.export.api`); INT8 takes its
  quantizer as an argument, since this package never imports :mod:`edgefer.quantize`. The call
  behind ``edgefer export``, with NNCF PTQ wired in, is :func:`edgefer.deploy.export`.
* :func:`edgefer.export.targets.target_named` — the deployment targets, one module each
  (:mod:`edgefer.export.targets`): what export and quantize ask instead of branching on a name
* :func:`torch_to_onnx`, :func:`export_onnx` — :mod:`edgefer.export.onnx`
* :func:`make_reference` — FP32 reference predictions (:mod:`edgefer.export.reference`)
* :func:`to_fp16_onnx` — :mod:`edgefer.export.fp16`
* :func:`export_openvino` — :mod:`edgefer.export.openvino`
* :func:`build_engine`, :func:`trtexec_command`, :class:`EngineBuildSpec` — :mod:`edgefer.export.tensorrt` (the engine
  sidecar and its compatibility check are in :mod:`edgefer.engine_sidecar`)
"""

from __future__ import annotations

from edgefer.export.options import ExportOptions
from edgefer.export.result import PRECISIONS, TARGETS, ExportResult
from edgefer.utils.lazy import lazy_getattr

_LAZY = {
    "export": "edgefer.export.api",
    "torch_to_onnx": "edgefer.export.onnx",
    "export_onnx": "edgefer.export.onnx",
    "make_reference": "edgefer.export.reference",
    "to_fp16_onnx": "edgefer.export.fp16",
    "export_openvino": "edgefer.export.openvino",
    "build_engine": "edgefer.export.tensorrt",
    "trtexec_command": "edgefer.export.tensorrt",
    "EngineBuildSpec": "edgefer.export.tensorrt",
    "load_profile": "edgefer.export.profiles",
    "import_model": "edgefer.export.importer",
    "ImportOptions": "edgefer.export.importer",
}

__all__ = ["PRECISIONS", "TARGETS", "ExportOptions", "ExportResult", *_LAZY]


__getattr__ = lazy_getattr(__name__, _LAZY)
