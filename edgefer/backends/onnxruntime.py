"""ONNX Runtime backend: FP32, FP16 and Q/DQ INT8 ONNX files on CPU, CUDA or TensorRT providers.

The metadata is read from the session's own ``custom_metadata_map`` (the ONNX ``metadata_props``
that ``edgefer export`` writes), so the ``onnx`` package is not needed on a device. The device
string picks the execution providers:

* ``cpu`` -> ``CPUExecutionProvider``
* ``gpu`` / ``cuda[:N]`` -> ``CUDAExecutionProvider`` (device N), CPU for unsupported nodes
* ``tensorrt[:N]`` -> ``TensorrtExecutionProvider``, then CUDA, then CPU

A requested GPU provider that is not installed is an error, not a silent fall-back to the CPU:
a benchmark row that claims CUDA must have run on CUDA.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgefer.backends.base import Backend, register_backend
from edgefer.backends.devices import parse_device
from edgefer.errors import BackendError
from edgefer.metadata import ModelMetadata

_NP_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


def select_providers(device: str, available: list[str]) -> list[str | tuple[str, dict[str, Any]]]:
    """Execution providers (with options) for a device string, given ORT's available providers.

    Pure function so the choice is tested without a GPU. Raises :class:`BackendError` naming the
    providers that *are* available when the device needs one that is not.
    """
    dev = parse_device(device)
    if dev.kind == "cpu":
        return ["CPUExecutionProvider"]
    if dev.kind == "gpu":
        wanted = ["CUDAExecutionProvider"]
    elif dev.kind == "tensorrt":
        wanted = ["TensorrtExecutionProvider", "CUDAExecutionProvider"]
    else:
        raise BackendError(f"onnxruntime cannot run on device {device!r} (use cpu, cuda[:N] or tensorrt[:N])")
    if wanted[0] not in available:
        raise BackendError(
            f"onnxruntime has no {wanted[0]} here (available: {', '.join(available)}); "
            "install onnxruntime-gpu with a matching CUDA, or use --device cpu"
        )
    opts = {"device_id": str(dev.ordinal)}
    chosen: list[str | tuple[str, dict[str, Any]]] = [(p, dict(opts)) for p in wanted if p in available]
    chosen.append("CPUExecutionProvider")
    return chosen


def session_options(threads: int | None = None) -> Any:
    """The ``onnxruntime.SessionOptions`` every edgefer session uses (saved artifact or, in
    :mod:`edgefer.quantize.evaluate`, a model still in memory), so both run the same way."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.inter_op_num_threads = 1
    if threads:
        so.intra_op_num_threads = int(threads)
    so.log_severity_level = 3  # errors only: the benchmark prints its own table
    return so


@register_backend
class OnnxRuntimeBackend(Backend):
    """An ``.onnx`` file in an ``onnxruntime.InferenceSession``."""

    name: ClassVar[str] = "onnxruntime"
    extra: ClassVar[str] = "runtime"
    #: InferenceSession.run may be called from several threads at once (ONNX Runtime's documentation)
    concurrent_infer: ClassVar[bool] = True

    def _load(self, path: Path) -> None:
        import onnxruntime as ort

        # throughput: requests run side by side, one core each (as many as requests_in_flight), instead of
        # one request spread over every core
        threads = self.threads or (1 if self.mode == "throughput" else None)
        so = session_options(threads)
        providers = select_providers(self.device, ort.get_available_providers())
        try:
            self._session = ort.InferenceSession(str(path), sess_options=so, providers=providers)
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types
            raise BackendError(f"onnxruntime cannot load {path.name}: {str(exc).strip()[:300]}") from exc
        wanted = providers[0] if isinstance(providers[0], str) else providers[0][0]
        if wanted not in self._session.get_providers():
            raise BackendError(f"onnxruntime did not enable {wanted} for {path.name}")
        self.metadata = ModelMetadata.from_props(dict(self._session.get_modelmeta().custom_metadata_map))
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or not outputs:
            raise BackendError(f"{path.name}: expected one image input and a logits output, got {len(inputs)} inputs")
        self._input = inputs[0]
        self._output_name = outputs[0].name
        # made once: a call passes these as they are (NodeArg.name is a pybind property, read per access)
        self._run_outputs = [self._output_name]
        self._input_name = self._input.name
        self._input_dtype = _NP_TYPES.get(self._input.type, np.float32)
        batch_dim = self._input.shape[0] if self._input.shape else None
        self.max_batch = batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else None

    def infer(self, batch: np.ndarray) -> np.ndarray:
        x = self.check_batch(batch)
        if self._input_dtype is not np.float32:
            x = x.astype(self._input_dtype)
        try:
            (out,) = self._session.run(self._run_outputs, {self._input_name: x})
        except Exception as exc:
            raise BackendError(f"onnxruntime failed on {self.path.name}: {str(exc).strip()[:300]}") from exc
        return np.asarray(out, dtype=np.float32)

    def info(self) -> dict[str, Any]:
        import onnxruntime as ort

        so = self._session.get_session_options()
        return {
            "backend": self.name,
            "version": ort.__version__,
            "device": self.device,
            "providers": self._session.get_providers(),
            "precision": self.precision,
            "threads": self.threads or so.intra_op_num_threads or None,
            "path": str(self.path),
            "input": {"name": self._input.name, "shape": list(self._input.shape), "type": self._input.type},
            "max_batch": self.max_batch,
        }
