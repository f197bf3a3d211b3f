"""Accuracy-controlled PTQ: NNCF's ``quantize_with_accuracy_control`` with our metric.

NNCF quantizes, measures the drop on the validation images with our validation function (top-1
accuracy against the labels, the same number the report states), and while the drop exceeds the
budget it ranks groups of quantizers by how much removing them helps and puts the worst ones
back into floating point. Both the OpenVINO and the ONNX backends of NNCF 3.x support it.

``max_drop`` is in accuracy *points*, absolute (``DropType.ABSOLUTE``): 0.5 means INT8 may be at
most half a point below FP32. Which layers stayed in FP is found by diffing the quantized-op sets
of a plain PTQ run and the accuracy-controlled result (:func:`edgefer.quantize.ptq.quantized_op_names`),
which does not depend on NNCF's log format.

For the ``trt``/``onnx`` targets the validation function scores the model *after*
:func:`edgefer.quantize.ptq.to_signed_int8`, i.e. the numerics TensorRT will run, so the budget
is checked on what is delivered.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from edgefer.data.calibration import ArrayData
from edgefer.quantize import ptq
from edgefer.quantize.evaluate import Runner, accuracy
from edgefer.quantize.ptq import nncf_dataset


class _Validator:
    """``validation_fn(model, items) -> (accuracy, per-item correctness)`` with one cached runner.

    NNCF calls it once per candidate model on the full set and then per item while ranking; the
    runner (an ORT session or an OpenVINO infer request) is built once per model object.
    """

    def __init__(self, signed_qdq: bool) -> None:
        self.signed_qdq = signed_qdq
        self._model: Any = None
        self._runner: Runner | None = None

    def _runner_for(self, model: Any) -> Runner:
        if self._model is not model or self._runner is None:
            target = model
            if self.signed_qdq and type(model).__module__.startswith("onnx"):
                target = copy.deepcopy(model)
                ptq.to_signed_int8(target)
            self._runner = Runner(target)
            self._model = model  # keep a reference so the identity check stays valid
        return self._runner

    def __call__(self, model: Any, items: Any) -> tuple[float, list[float]]:
        items = list(items)
        x = np.concatenate([it[0] for it in items])
        labels = np.asarray([it[1] for it in items])
        correct = (self._runner_for(model)(x).argmax(1) == labels).astype(np.float64)
        return float(correct.mean()), [float(c) for c in correct]


def quantize_with_accuracy_control(
    target: str,
    fp32_model: Any,
    calib: ArrayData,
    val: ArrayData,
    fp32_logits: np.ndarray,
    max_drop_pt: float,
    kwargs: dict[str, Any],
) -> tuple[Any, dict[str, Any]]:
    """Quantize within ``max_drop_pt`` points; returns ``(model, info)``.

    ``info`` has ``plain_ptq_accuracy`` / ``plain_ptq_drop_pts`` (what PTQ alone gives on the same
    validation images), ``kept_fp`` (op names left in floating point) and the budget.
    """
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    onnx_like = target != "openvino"
    name = None
    if onnx_like:
        from edgefer.quantize.api import input_name

        name = input_name(fp32_model)
    calib_ds = nncf_dataset(calib.x, name)

    def to_input(item: tuple[np.ndarray, int]) -> Any:
        return {name: item[0]} if name else item[0]

    val_items = [(val.x[i : i + 1], int(val.labels[i])) for i in range(len(val))]
    val_ds = nncf.Dataset(val_items, to_input)

    # Plain PTQ first: the baseline accuracy control improves on, and the set of quantized ops
    # whose difference to the final model names the layers kept in FP.
    plain = ptq.run_nncf(nncf.quantize, copy.deepcopy(fp32_model) if onnx_like else fp32_model, calib_ds, **kwargs)
    if onnx_like:
        ptq.to_signed_int8(plain)
    plain_acc = accuracy(Runner(plain)(val.x), val.labels)
    fp32_acc = accuracy(fp32_logits, val.labels)

    acc_kwargs = dict(kwargs)
    advanced = acc_kwargs.pop("advanced_parameters", None)
    if advanced is not None:
        acc_kwargs["advanced_quantization_parameters"] = advanced
    model = ptq.run_nncf(
        nncf.quantize_with_accuracy_control,
        fp32_model,
        calib_ds,
        val_ds,
        _Validator(signed_qdq=onnx_like),
        max_drop=max_drop_pt / 100.0,
        drop_type=nncf.DropType.ABSOLUTE,
        advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
            max_num_iterations=len(ptq.quantized_op_names(plain)) or 1
        ),
        **acc_kwargs,
    )
    if onnx_like:
        ptq.to_signed_int8(model)
        ptq.check_qdq(model)
    kept = sorted(ptq.quantized_op_names(plain) - ptq.quantized_op_names(model))
    return model, {
        "max_drop_pts": max_drop_pt,
        "fp32_accuracy": fp32_acc,
        "plain_ptq_accuracy": plain_acc,
        "plain_ptq_delta_pts": (plain_acc - fp32_acc) * 100.0,
        "kept_fp": kept,
        "validation_images": len(val),
    }
