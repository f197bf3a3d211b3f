"""INT8 quantization: NNCF PTQ, accuracy-controlled PTQ, QAT and explicit Q/DQ ONNX for TensorRT.

``import edgefer.quantize`` is cheap and torch-free; :func:`quantize` and friends are loaded on
first use (PEP 562), so the CLI and ``edgefer.export`` can reference them without paying for NNCF.

>>> from edgefer.quantize import quantize  # doctest: +SKIP
>>> res = quantize("best.pt", "data/rafdb", target="trt", method="ptq", out_dir="runs/q")  # doctest: +SKIP
>>> res.artifact, res.report["delta_pts"], res.report["agreement"]  # doctest: +SKIP
"""

from __future__ import annotations

from edgefer.extras import require_train_python
from edgefer.utils.lazy import lazy_getattr

require_train_python("edgefer.quantize")

_LAZY = {
    "quantize": "edgefer.quantize.api",
    "QuantizeResult": "edgefer.quantize.api",
    "QuantizeOptions": "edgefer.quantize.options",
    "TARGETS": "edgefer.formats",
    "METHODS": "edgefer.quantize.options",
    "DEFAULT_MAX_DROP": "edgefer.quantize.options",
    "check_qdq": "edgefer.quantize.ptq",
    "calibration_arrays": "edgefer.data.calibration",
    "MIN_CALIB_SIZE": "edgefer.data.calibration",
    "sensitivity": "edgefer.quantize.sensitivity_report",
    "SensitivityResult": "edgefer.quantize.sensitivity_report",
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
