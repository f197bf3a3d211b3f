"""Score models that are still in memory (what NNCF hands around) against labels and FP32.

NNCF works on ``openvino.Model`` / ``onnx.ModelProto`` objects and calls our validation function
with compiled OpenVINO models or ONNX protos; saved artifacts are scored through
:func:`edgefer.backends.open_model` like the benchmark does. :func:`compare` turns two sets of
logits into what the quantize report states: accuracy of both, the drop overall and for the worst
class (in percentage points), and agreement (same top-1 as FP32).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from edgefer.errors import QuantizationError

_BATCH = 64


class Runner:
    """A callable ``x (N,3,H,W) float32 -> logits (N,C)`` for an in-memory or saved model."""

    def __init__(self, model: Any, threads: int | None = None) -> None:
        self._fn = _make_fn(model, threads)

    def __call__(self, x: np.ndarray, batch: int = _BATCH) -> np.ndarray:
        outs = [self._fn(np.ascontiguousarray(x[i : i + batch], dtype=np.float32)) for i in range(0, len(x), batch)]
        if not outs:
            raise QuantizationError("no images to run the model on")
        return np.concatenate(outs).astype(np.float32)


def _ov_fn(compiled: Any):
    out = compiled.output(0)
    request = compiled.create_infer_request()

    def fn(x: np.ndarray) -> np.ndarray:
        return np.array(request.infer([x])[out])

    return fn


def _make_fn(model: Any, threads: int | None):
    kind = type(model).__module__.split(".")[0]
    if kind == "openvino":
        import openvino as ov

        if isinstance(model, ov.CompiledModel):
            return _ov_fn(model)
        config = {"INFERENCE_NUM_THREADS": threads} if threads else {}
        config["INFERENCE_PRECISION_HINT"] = "f32"  # score the model's own precision, not bf16
        return _ov_fn(ov.Core().compile_model(model, "CPU", config))
    if kind == "onnx":
        return _ort_fn(model.SerializeToString(), threads)
    if isinstance(model, (str, os.PathLike)):  # a saved artifact: run it the way the benchmark does
        from edgefer.backends import open_model

        return open_model(Path(model), threads=threads).infer
    if callable(model):
        return model
    raise QuantizationError(f"cannot run a model of type {type(model).__name__}")


def _ort_fn(model: str | bytes, threads: int | None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    def fn(x: np.ndarray) -> np.ndarray:
        return sess.run(None, {name: x})[0]

    return fn


def predict(model: Any, x: np.ndarray, threads: int | None = None) -> np.ndarray:
    """Logits of ``model`` (OpenVINO/ONNX object or artifact path) on a preprocessed batch."""
    return Runner(model, threads)(x)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((np.asarray(logits).argmax(1) == np.asarray(labels)).mean()) if len(labels) else float("nan")


def compare(
    ref_logits: np.ndarray, logits: np.ndarray, labels: np.ndarray, ids: list[str], class_names: tuple[str, ...]
) -> dict[str, Any]:
    """FP32 vs quantized on the same images, with the benchmark's own metrics
    (:func:`edgefer.bench.metrics.compare_to_reference`): accuracy, ``delta_pts`` (negative = worse),
    ``worst_class_delta_pts``, ``agreement`` with the FP32 top-1, KL divergence."""
    from edgefer.bench.metrics import compare_to_reference
    from edgefer.reference import Reference

    ref = Reference(ids=np.asarray(ids), labels=labels, logits=ref_logits, class_names=class_names)
    out = compare_to_reference(logits, labels, ref, class_names)
    out.pop("confusion_matrix", None)
    return out
