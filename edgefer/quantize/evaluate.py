"""Score models, saved or still in memory (what NNCF hands around), against labels and FP32.

One evaluation path with the benchmark: a saved artifact is opened with
:func:`edgefer.backends.open_model` and run by :func:`edgefer.bench.evalset.infer_all`, exactly as
``edgefer bench`` runs it. NNCF works on ``openvino.Model`` / ``onnx.ModelProto`` objects and calls
our validation function with compiled OpenVINO models or ONNX protos; those are compiled with the
backends' own settings (:func:`edgefer.backends.openvino.compile_config`,
:func:`edgefer.backends.onnxruntime.session_options`) for the model's precision and run by the same
``infer_all``, so a candidate is scored as its saved artifact will be. :func:`compare` turns two
sets of logits into what the quantize report states: accuracy of both, the drop overall and for
the worst class (in percentage points), and agreement (same top-1 as FP32).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgefer.errors import QuantizationError

_BATCH = 64


class _InMemory:
    """A model held in memory behind the backend calling convention (``infer``, ``max_batch``)."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], max_batch: int | None = None) -> None:
        self.infer = fn
        self.max_batch = max_batch

    def close(self) -> None:
        """Nothing to release (the session/request goes with the object)."""


class Runner:
    """A callable ``x (N,3,H,W) float32 -> logits (N,C)`` for an in-memory or saved model.

    ``precision`` is the precision an in-memory OpenVINO model is compiled for (its edgefer
    metadata wins when it has some); NNCF's candidates are INT8 models, hence the default.
    """

    def __init__(self, model: Any, threads: int | None = None, precision: str = "int8") -> None:
        self._backend = _make_backend(model, threads, precision)

    def __call__(self, x: Any, batch: int = _BATCH) -> np.ndarray:
        from edgefer.bench.evalset import infer_all

        if len(getattr(x, "x", x)) == 0:
            raise QuantizationError("no images to run the model on")
        return infer_all(self._backend, x, batch)

    def close(self) -> None:
        """Release the backend (a saved artifact's session or request)."""
        self._backend.close()

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ov_precision(model: Any, default: str) -> str:
    """The precision in an OpenVINO model's edgefer metadata (``rt_info``), else ``default``."""
    from edgefer.metadata import PROPS_KEY, ModelMetadata

    if model.has_rt_info(["framework", PROPS_KEY]):
        props = {PROPS_KEY: model.get_rt_info(["framework", PROPS_KEY]).astype(str)}
        return ModelMetadata.from_props(props).precision
    return default


def _ov_backend(compiled: Any) -> _InMemory:
    out = compiled.output(0)
    request = compiled.create_infer_request()
    batch_dim = compiled.input(0).get_partial_shape()[0]

    def fn(x: np.ndarray) -> np.ndarray:
        return np.array(request.infer([x])[out], dtype=np.float32)

    return _InMemory(fn, batch_dim.get_length() if batch_dim.is_static else None)


def _make_backend(model: Any, threads: int | None, precision: str) -> Any:
    kind = type(model).__module__.split(".")[0]
    if kind == "openvino":
        import openvino as ov

        if isinstance(model, ov.CompiledModel):  # NNCF compiled it (in f32, as the backend runs INT8)
            return _ov_backend(model)
        from edgefer.backends.openvino import StaticBatches, compile_config

        # compiled exactly as the benchmark's backend compiles the saved IR (one static shape per batch)
        config = compile_config(_ov_precision(model, precision), "CPU", threads)
        batches = StaticBatches(ov.Core(), model, "CPU", config)

        def fn(x: np.ndarray) -> np.ndarray:
            request, out = batches.request_for(len(x))
            return np.array(request.infer([x])[out], dtype=np.float32)

        return _InMemory(fn, None if batches.dynamic else int(model.input(0).get_partial_shape()[0].get_length()))
    if kind == "onnx":
        return _ort_backend(model.SerializeToString(), threads)
    if isinstance(model, (str, os.PathLike)):  # a saved artifact: run it the way the benchmark does
        from edgefer.backends import open_model

        return open_model(Path(model), threads=threads)
    if callable(model):
        return _InMemory(model)
    raise QuantizationError(f"cannot run a model of type {type(model).__name__}")


def _ort_backend(model: str | bytes, threads: int | None) -> _InMemory:
    import onnxruntime as ort

    from edgefer.backends.onnxruntime import _NP_TYPES, session_options

    sess = ort.InferenceSession(model, session_options(threads), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    dtype = _NP_TYPES.get(inp.type, np.float32)
    batch_dim = inp.shape[0] if inp.shape else None

    def fn(x: np.ndarray) -> np.ndarray:
        return np.asarray(sess.run(None, {inp.name: x.astype(dtype, copy=False)})[0], dtype=np.float32)

    return _InMemory(fn, batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else None)


def predict(model: Any, x: Any, threads: int | None = None, batch: int = _BATCH) -> np.ndarray:
    """Logits of ``model`` (OpenVINO/ONNX object or artifact path) on preprocessed images (an
    array, or an object holding one as ``.x``), ``batch`` images per call."""
    with Runner(model, threads) as runner:
        return runner(x, batch)


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
