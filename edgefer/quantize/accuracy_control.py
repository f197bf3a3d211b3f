"""Accuracy-controlled PTQ: NNCF's ``quantize_with_accuracy_control`` with the benchmark gate as its metric.

NNCF quantizes, scores the FP32 and the INT8 model with our validation function, and while
``drop = metric(FP32) - metric(INT8)`` exceeds ``max_drop`` it ranks groups of quantizers by how
much removing them helps and puts the worst ones back into floating point. Both the OpenVINO and
the ONNX backends of NNCF 3.x support it.

**The metric is the gate, not accuracy alone.** Overall top-1 accuracy hides the damage the gate
exists to catch: an INT8 model can keep the accuracy while 10 % of its predictions flip and a
small class loses several points. So the validation function scores a candidate against the FP32
predictions with the benchmark's own numbers (:func:`edgefer.bench.metrics.compare_to_reference`)
and turns them into one number with :meth:`edgefer.bench.gate.Gate.severity` -- ``s``, the largest
normalised violation (drop / ``max-drop``, (1 - agreement) / (1 - ``min-agreement``), the per-class
McNemar rule's drop / ``max-class-drop``, ...), which is <= 1 exactly when the gate passes::

    metric = 1 - u * s        u = max-drop / 100 (0.01 when the gate has no max-drop or it is 0)
    NNCF max_drop = u         (DropType.ABSOLUTE; times 1 + 1e-9 for float rounding)

The FP32 model scores s = 0 against itself (no drop, full agreement), so NNCF's
``drop = u * s <= u  <=>  s <= 1  <=>`` the gate passes, and a model that passes accuracy control
passes ``edgefer benchmark --gate`` with the same spec on the same images. When the overall drop
is the binding rule, NNCF's logged drop is the accuracy drop as a fraction, as before.

Per-item values (NNCF ranks on them): item i scores ``(agrees_i + correct_i) / 2``. NNCF picks its
ranking subset where ``value(FP32) - value(INT8)`` is largest: images INT8 got wrong that FP32 got
right (1) first, then other flipped predictions (0.5); unchanged images score 0. It then ranks
each quantizer group by the *metric* on that subset (higher = removing the group helps more), so
the ranking optimises the same gate. Each item carries its index, so the FP32 predictions of any
subset NNCF hands over are known.

``max_drop`` is in accuracy *points*, absolute. Which layers stayed in FP is found by diffing the
quantized-op sets of a plain PTQ run and the accuracy-controlled result
(:func:`edgefer.quantize.ptq.quantized_op_names`), which does not depend on NNCF's log format;
OpenVINO's names are given as the ONNX node names they came from (a biased Convolution is
``<node>/WithoutBiases`` there), so the two targets' ``kept_fp`` lists compare directly.

For the ``trt``/``onnx`` targets the validation function scores the model *after*
:func:`edgefer.quantize.ptq.to_signed_int8`, i.e. the numerics TensorRT will run, so the budget
is checked on what is delivered.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np

from edgefer.bench.gate import Gate
from edgefer.data.calibration import ArrayData
from edgefer.export.targets import target_named
from edgefer.quantize import ptq
from edgefer.quantize.evaluate import Runner, accuracy
from edgefer.quantize.graph import input_name, onnx_to_openvino
from edgefer.quantize.ptq import nncf_dataset


class _Validator:
    """``validation_fn(model, items) -> (1 - unit * gate severity, per-item values)`` with one cached runner.

    An item is ``(image batch of 1, label, index)``; the index finds the FP32 logits of any subset
    NNCF passes. NNCF calls this once per candidate model on the full set and then on its ranking
    subset; the runner (an ORT session or an OpenVINO infer request) is built once per model object.
    """

    def __init__(
        self,
        target: str,
        gate: Gate,
        fp32_logits: np.ndarray,
        class_names: tuple[str, ...],
        unit: float,
        align: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        #: raw model outputs -> logits in ``class_names``' order (classes matched by name); identity if None
        self.align = align if align is not None else _same
        self.target = target
        self.gate = gate
        self.fp32_logits = np.asarray(fp32_logits, dtype=np.float32)
        self.class_names = tuple(class_names)
        self.unit = unit
        self._model: Any = None
        self._runner: Runner | None = None

    def _runner_for(self, model: Any) -> Runner:
        if self._model is not model or self._runner is None:
            runnable = model
            if type(model).__module__.startswith("onnx"):  # scored as the target will run it
                if not target_named(self.target).int8.qdq:  # OpenVINO's reading of the Q/DQ graph
                    runnable = onnx_to_openvino(model)
                else:
                    runnable = copy.deepcopy(model)
                    ptq.to_signed_int8(runnable)
            self._runner = Runner(runnable)
            self._model = model  # keep a reference so the identity check stays valid
        return self._runner

    def score(self, logits: np.ndarray, labels: np.ndarray, index: np.ndarray) -> tuple[float, list[float]]:
        """The metric and per-item values of ``logits`` on the items ``index`` (see the module docstring)."""
        return gate_metric(self.gate, logits, labels, self.fp32_logits[index], self.class_names, self.unit)

    def __call__(self, model: Any, items: Any) -> tuple[float, list[float]]:
        items = list(items)
        x = np.concatenate([it[0] for it in items])
        labels = np.asarray([it[1] for it in items], dtype=np.int64)
        index = np.asarray([it[2] for it in items], dtype=np.int64)
        return self.score(self.align(self._runner_for(model)(x)), labels, index)


def _same(x: np.ndarray) -> np.ndarray:
    return x


def metric_unit(gate: Gate) -> float:
    """``u`` of ``metric = 1 - u * s``: the overall budget as a fraction (0.01 without one)."""
    return float(gate.max_drop) / 100.0 if gate.max_drop else 0.01


def nncf_max_drop(gate: Gate) -> float:
    """NNCF's ``max_drop``: ``u``, with room for float rounding so that s exactly 1 (a rule met with
    equality, which the gate passes) is not refused."""
    return metric_unit(gate) * (1.0 + 1e-9)


def gate_metric(
    gate: Gate,
    logits: np.ndarray,
    labels: np.ndarray,
    fp32_logits: np.ndarray,
    class_names: tuple[str, ...],
    unit: float | None = None,
) -> tuple[float, list[float]]:
    """``(1 - unit * gate.severity(...), per-item values)`` of ``logits`` against the FP32 logits.

    The metric is what accuracy control compares (FP32 scores 1.0): ``1 - metric <= unit`` exactly
    when ``gate`` passes on these images. Per item: (same top-1 as FP32 + correct) / 2.
    """
    from edgefer.bench.metrics import compare_to_reference
    from edgefer.reference import Reference

    unit = metric_unit(gate) if unit is None else unit
    logits = np.asarray(logits, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    ids = np.arange(len(labels)).astype(str)
    ref = Reference(ids=ids, labels=labels, logits=fp32_logits, class_names=class_names)
    acc = compare_to_reference(logits, labels, ref, class_names)
    preds = logits.argmax(1)
    per_item = ((preds == ref.predictions).astype(np.float64) + (preds == labels)) / 2.0
    return 1.0 - unit * gate.severity(acc), [float(v) for v in per_item]


def _validation(
    target: str,
    fp32_model: Any,
    val: ArrayData,
    fp32_logits: np.ndarray,
    gate: Gate,
    class_names: tuple[str, ...],
    align: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[Any, _Validator, str | None]:
    """NNCF's validation dataset of ``val`` (items ``(x, label, index)``), the gate validator, and
    the ONNX input name (None for OpenVINO)."""
    import nncf

    name = None
    if type(fp32_model).__module__.startswith("onnx"):
        name = input_name(fp32_model)

    def to_input(item: tuple[np.ndarray, int, int]) -> Any:
        return {name: item[0]} if name else item[0]

    val_items = [(val.x[i : i + 1], int(val.labels[i]), i) for i in range(len(val))]
    validator = _Validator(target, gate, fp32_logits, class_names, metric_unit(gate), align)
    return nncf.Dataset(val_items, to_input), validator, name


def restore_accuracy(
    target: str,
    fp32_model: Any,
    quantized: Any,
    val: ArrayData,
    fp32_logits: np.ndarray,
    gate: Gate,
    class_names: tuple[str, ...],
    ranking_subset_size: int = 300,
    align: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Put layers of an already quantized model (QAT's) back into FP until ``gate`` holds on ``val``.

    The second half of accuracy control without its PTQ: NNCF's ``QuantizationAccuracyRestorer``
    (the loop ``quantize_with_accuracy_control`` runs after its own quantization) with the same gate
    metric, on ``quantized`` -- a Q/DQ ONNX whose weights are still floating point (before
    :func:`~edgefer.quantize.ptq.fold_weight_quantizers`), scored as ``target`` runs it (OpenVINO's
    reading of it for ``openvino``, the signed model on ONNX Runtime otherwise). ``fp32_model`` is
    the same network unquantized, exported the same way, with the same node names:
    reverting an operation removes its quantizers *and* writes back its FP32 weights and bias, so
    reverting everything gives the FP32 model itself, and the loop can always end within the
    budget. Returns ``(model, info)``: ``info`` has the quantized model's own numbers
    (``before_accuracy``, ``before_delta_pts``, ``before_agreement``, ``before_severity``; the keys
    :func:`quantize_with_accuracy_control` gives plain PTQ's under) and ``kept_fp``.
    """
    import nncf
    from nncf.quantization.algorithms.accuracy_control.algorithm import QuantizationAccuracyRestorer
    from nncf.quantization.algorithms.accuracy_control.evaluator import Evaluator

    val_ds, validator, _ = _validation(target, fp32_model, val, fp32_logits, gate, class_names, align)
    evaluator = Evaluator(validator)
    evaluator.enable_iteration_count()
    initial = evaluator.collect_metric_results(fp32_model, val_ds, model_name="initial")
    size = evaluator.num_passed_iterations
    evaluator.disable_iteration_count()
    before = evaluator.collect_metric_results(quantized, val_ds, model_name="quantized")
    before_logits = validator.align(validator._runner_for(quantized)(val.x))
    before_ops = ptq.quantized_op_names(quantized)
    restorer = QuantizationAccuracyRestorer(
        ranking_subset_size=ranking_subset_size,
        max_num_iterations=len(before_ops) or 1,
        max_drop=nncf_max_drop(gate),
        drop_type=nncf.DropType.ABSOLUTE,
    )
    model = restorer.apply(fp32_model, initial, quantized, before, val_ds, size, evaluator)
    fp32_acc = accuracy(fp32_logits, val.labels)
    before_acc = accuracy(before_logits, val.labels)
    return model, {
        "gate": str(gate),
        "before": "QAT",
        "before_accuracy": before_acc,
        "before_delta_pts": (before_acc - fp32_acc) * 100.0,
        "before_agreement": float((before_logits.argmax(1) == fp32_logits.argmax(1)).mean()),
        "before_severity": (1.0 - before.metric_value) / validator.unit,
        "kept_fp": sorted(onnx_names(before_ops - ptq.quantized_op_names(model))),
        "validation_images": len(val),
    }


def quantize_with_accuracy_control(
    target: str,
    fp32_model: Any,
    calib: ArrayData,
    val: ArrayData,
    fp32_logits: np.ndarray,
    gate: Gate,
    class_names: tuple[str, ...],
    kwargs: dict[str, Any],
    align: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Quantize so that ``gate``'s accuracy rules hold on ``val``; returns ``(model, info)``.

    ``info`` has ``before_accuracy`` / ``before_delta_pts`` / ``before_agreement`` /
    ``before_severity`` (what plain PTQ gives on the same validation images; ``before`` names it),
    ``kept_fp`` (layers left in floating point, as ONNX node names) and the gate.
    """
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    onnx_like = target_named(target).int8.qdq  # NNCF quantizes the ONNX graph itself
    val_ds, validator, name = _validation(target, fp32_model, val, fp32_logits, gate, class_names, align)
    unit = validator.unit
    calib_ds = nncf_dataset(calib.x, name)

    # Plain PTQ first: the baseline accuracy control improves on, and the set of quantized ops
    # whose difference to the final model names the layers kept in FP.
    plain = ptq.run_nncf(nncf.quantize, copy.deepcopy(fp32_model) if onnx_like else fp32_model, calib_ds, **kwargs)
    if onnx_like:
        ptq.to_signed_int8(plain)
    plain_logits = validator.align(Runner(plain)(val.x))
    plain_metric, _ = validator.score(plain_logits, val.labels, np.arange(len(val)))
    fp32_acc = accuracy(fp32_logits, val.labels)
    plain_acc = accuracy(plain_logits, val.labels)
    info = {
        "gate": str(gate),
        "max_drop_pts": gate.max_drop,
        "fp32_accuracy": fp32_acc,
        "before": "plain PTQ",
        "before_accuracy": plain_acc,
        "before_delta_pts": (plain_acc - fp32_acc) * 100.0,
        "before_agreement": float((plain_logits.argmax(1) == fp32_logits.argmax(1)).mean()),
        "before_severity": (1.0 - plain_metric) / unit,
        "kept_fp": [],
        "validation_images": len(val),
    }
    if 1.0 - plain_metric <= nncf_max_drop(gate):
        # Plain PTQ already holds the gate: NNCF would quantize the same way again, score the FP32
        # and INT8 models, find the drop within budget and return that model -- the same, for a
        # second PTQ and two validation passes (the INT8 default's whole cost on a model PTQ does not
        # hurt). The FP32 model scores 1.0 against itself, so this is NNCF's own test.
        if onnx_like:
            ptq.check_qdq(plain)
        return plain, info

    acc_kwargs = dict(kwargs)
    advanced = acc_kwargs.pop("advanced_parameters", None)
    if advanced is not None:
        acc_kwargs["advanced_quantization_parameters"] = advanced
    model = ptq.run_nncf(
        nncf.quantize_with_accuracy_control,
        fp32_model,
        calib_ds,
        val_ds,
        validator,
        max_drop=nncf_max_drop(gate),
        drop_type=nncf.DropType.ABSOLUTE,
        advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
            max_num_iterations=len(ptq.quantized_op_names(plain)) or 1
        ),
        **acc_kwargs,
    )
    if onnx_like:
        ptq.to_signed_int8(model)
        ptq.check_qdq(model)
    info["kept_fp"] = sorted(onnx_names(ptq.quantized_op_names(plain) - ptq.quantized_op_names(model)))
    return model, info


#: Suffixes OpenVINO's ONNX frontend appends to the op a node became (a Conv with a bias is a
#: Convolution ``<node>/WithoutBiases`` plus an Add ``<node>``).
_OV_SUFFIXES = ("/WithoutBiases",)


def onnx_names(op_names: set[str]) -> set[str]:
    """Op names as the ONNX node names they came from, so OpenVINO and ONNX ``kept_fp`` compare."""
    out = set()
    for n in op_names:
        for suffix in _OV_SUFFIXES:
            if n.endswith(suffix):
                n = n[: -len(suffix)]
        out.add(n)
    return out
