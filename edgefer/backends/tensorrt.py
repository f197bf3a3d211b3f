"""TensorRT backend: a serialized engine (``.engine`` / ``.plan``) with its JSON sidecar.

Engines are not portable: before deserialising, the sidecar is checked against the running
TensorRT and GPU by :func:`edgefer.engine_sidecar.check_engine_compat`, which refuses a mismatch
with a message that says to rebuild on this device.

API versions (checked against NVIDIA's TensorRT Python API docs and migration guides):

* TensorRT >= 8.5 (JetPack 5.1+, 6.x, x86 10.x/11.x): the name-based I/O tensor API —
  ``engine.num_io_tensors``, ``get_tensor_name``, ``get_tensor_mode``, ``get_tensor_dtype``,
  ``get_tensor_profile_shape``, ``context.set_input_shape``, ``set_tensor_address`` and
  ``execute_async_v3(stream)``. TensorRT 10 removed the binding API; TensorRT 11 changed the
  *builder* (strong typing), not this runtime path.
* TensorRT < 8.5: the binding API — ``num_bindings``, ``binding_is_input``,
  ``get_profile_shape``, ``set_binding_shape`` and ``execute_async_v2(bindings, stream)``.

Device buffers come from :mod:`edgefer.backends.cuda_mem` (pycuda or cuda-python); the GPU time of
the last ``infer`` (CUDA events around the execute call, copies excluded) is ``last_device_ms``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgefer.backends.base import Backend, register_backend
from edgefer.backends.devices import parse_device
from edgefer.engine_sidecar import parse_trt_version
from edgefer.errors import BackendError
from edgefer.metadata import read_metadata


def uses_named_tensors(version: str) -> bool:
    """Whether this TensorRT has the name-based I/O API (added in 8.5, the only one from 10.0)."""
    return parse_trt_version(version)[:2] >= (8, 5)


@dataclass(frozen=True)
class IOTensor:
    """One engine input or output: name, role, shape (-1 = dynamic), numpy dtype, binding index."""

    name: str
    is_input: bool
    shape: tuple[int, ...]
    dtype: Any
    index: int
    profile: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None = None  # (min, opt, max)


def batch_limits(tensor: IOTensor) -> tuple[int, int]:
    """(min, max) batch an input accepts: its static batch, or its optimisation profile's range."""
    if tensor.shape and tensor.shape[0] > 0:
        return tensor.shape[0], tensor.shape[0]
    if tensor.profile is None:
        raise BackendError(f"engine input {tensor.name!r} has a dynamic batch but no optimisation profile")
    return int(tensor.profile[0][0]), int(tensor.profile[2][0])


def concrete_shape(shape: tuple[int, ...], batch: int) -> tuple[int, ...]:
    """Replace a dynamic (-1) batch dimension; any other dynamic dimension is an error."""
    out = (batch, *shape[1:]) if shape and shape[0] < 0 else tuple(shape)
    if any(d < 0 for d in out):
        raise BackendError(f"engine tensor shape {shape} has dynamic non-batch dimensions")
    return out


def read_io_tensors(engine: Any, trt: Any) -> list[IOTensor]:
    """Describe an engine's I/O with whichever API this TensorRT has (profile 0)."""
    out: list[IOTensor] = []
    if uses_named_tensors(trt.__version__):
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            shape = tuple(engine.get_tensor_shape(name))
            profile = None
            if is_input and any(d < 0 for d in shape):
                profile = tuple(tuple(s) for s in engine.get_tensor_profile_shape(name, 0))
            out.append(IOTensor(name, is_input, shape, trt.nptype(engine.get_tensor_dtype(name)), i, profile))
    else:
        for i in range(engine.num_bindings):
            name = engine.get_binding_name(i)
            is_input = engine.binding_is_input(i)
            shape = tuple(engine.get_binding_shape(i))
            profile = None
            if is_input and any(d < 0 for d in shape):
                profile = tuple(tuple(s) for s in engine.get_profile_shape(0, i))
            out.append(IOTensor(name, is_input, shape, trt.nptype(engine.get_binding_dtype(i)), i, profile))
    return out


@register_backend
class TensorRTBackend(Backend):
    """A TensorRT engine on one CUDA GPU."""

    name: ClassVar[str] = "tensorrt"
    extra: ClassVar[str] = "trt"

    def _load(self, path: Path) -> None:
        import tensorrt as trt

        from edgefer.backends.cuda_mem import open_allocator
        from edgefer.engine_sidecar import check_engine_compat

        dev = parse_device(self.device if self.device != "cpu" else "gpu")
        if dev.kind != "gpu":
            raise BackendError(f"tensorrt runs on a CUDA GPU, not {self.device!r} (use --device cuda[:N])")
        self.device = str(dev)
        self.metadata = read_metadata(path)
        check_engine_compat(path, device=dev.ordinal)  # EngineMismatchError: rebuild on this device
        self._trt = trt
        self._alloc = open_allocator(dev.ordinal)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise BackendError(f"TensorRT could not deserialize {path.name} (see the TensorRT log above)")
        self._engine = engine
        self._context = engine.create_execution_context()
        self._named = uses_named_tensors(trt.__version__)
        self._io = read_io_tensors(engine, trt)
        inputs = [t for t in self._io if t.is_input]
        self._outputs = [t for t in self._io if not t.is_input]
        if len(inputs) != 1 or not self._outputs:
            raise BackendError(f"{path.name}: expected one image input and a logits output")
        self._input = inputs[0]
        self._min_batch, self.max_batch = batch_limits(self._input)
        self._capacity = 0
        self._ptrs: dict[str, int] = {}
        self.last_device_ms: float | None = None

    def _ensure_capacity(self, batch: int) -> None:
        """(Re)allocate device buffers for at least ``batch`` images (grows, never shrinks)."""
        if batch <= self._capacity:
            return
        for ptr in self._ptrs.values():
            self._alloc.free(ptr)
        self._ptrs = {}
        for t in self._io:
            shape = concrete_shape(t.shape, batch)
            self._ptrs[t.name] = self._alloc.malloc(int(np.prod(shape)) * np.dtype(t.dtype).itemsize)
        self._capacity = batch

    def infer(self, batch: np.ndarray) -> np.ndarray:
        x = self.check_batch(batch)
        n = x.shape[0]
        if n < self._min_batch:
            raise BackendError(f"tensorrt: batch {n} is below the engine profile's minimum {self._min_batch}")
        x = np.ascontiguousarray(x, dtype=self._input.dtype)
        self._ensure_capacity(n)
        out_t = self._outputs[0]
        ctx = self._context
        if self._named:
            if not ctx.set_input_shape(self._input.name, x.shape):
                raise BackendError(f"tensorrt rejected input shape {x.shape}")
            out_shape = tuple(ctx.get_tensor_shape(out_t.name))
            for t in self._io:
                ctx.set_tensor_address(t.name, self._ptrs[t.name])
        else:
            if not ctx.set_binding_shape(self._input.index, x.shape):
                raise BackendError(f"tensorrt rejected input shape {x.shape}")
            out_shape = tuple(ctx.get_binding_shape(out_t.index))
        out = self._alloc.host_buffer(out_shape, out_t.dtype)
        self._alloc.htod_async(self._ptrs[self._input.name], x)
        start = self._alloc.record()
        if self._named:
            ok = ctx.execute_async_v3(self._alloc.stream_handle)
        else:
            bindings = [self._ptrs[t.name] for t in sorted(self._io, key=lambda t: t.index)]
            ok = ctx.execute_async_v2(bindings, self._alloc.stream_handle)
        end = self._alloc.record()
        self._alloc.dtoh_async(out, self._ptrs[out_t.name])
        self._alloc.synchronize()
        if not ok:
            raise BackendError(f"tensorrt execution failed on {self.path.name}")
        self.last_device_ms = self._alloc.elapsed_ms(start, end)
        return np.array(out, dtype=np.float32, copy=True)

    def info(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "version": self._trt.__version__,
            "device": self.device,
            "allocator": self._alloc.name,
            "precision": self.precision,
            "threads": None,
            "path": str(self.path),
            "max_batch": self.max_batch,
            "min_batch": self._min_batch,
            "io_api": "named-tensors" if self._named else "bindings",
        }

    def close(self) -> None:
        alloc = getattr(self, "_alloc", None)
        if alloc is None:
            return
        for ptr in self._ptrs.values():
            alloc.free(ptr)
        self._ptrs = {}
        self._context = None
        self._engine = None
        alloc.close()
        self._alloc = None
