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

Before deserialising, the engine's bytes are checked against the sidecar's ``engine_sha256``
(:func:`edgefer.engine_sidecar.check_engine_bytes`), so the sidecar's facts are about this engine.
Loading, every ``infer`` and ``close`` run inside the allocator's ``activate()`` (pycuda: the
device's context pushed, then popped), so two backends on two GPUs, or a call from another
thread, each run in their own CUDA context.

Device buffers come from :mod:`edgefer.backends.cuda_mem` (pycuda or cuda-python); the page-locked
host buffers the copies go through are made once per input shape and reused, so a timed ``infer``
allocates nothing after its shape's first call. The GPU time of the last ``infer`` (CUDA events
around the execute call, copies excluded) is ``last_device_ms``.

Throughput mode (``mode="throughput"``, ``edgefer benchmark --mode throughput [--streams N]``): N
execution contexts (:data:`THROUGHPUT_STREAMS` by default), each on its own CUDA stream with its own
buffers (a :class:`Lane`), kept busy from one host thread as ``trtexec --streams`` does; an engine with a
dynamic batch is deserialised once per extra stream, because contexts in concurrent use may not share an
optimisation profile. Written against the TensorRT 8.5-10 Python API and tested with stand-ins for
``tensorrt`` and the CUDA allocator (tests/test_trt_standins.py); not yet run on a GPU.

A DLA engine (the sidecar's ``build.dla_core``) is deserialised after ``Runtime.DLA_core`` is set
to that core ("The DLA core that the engine executes on", TensorRT Python API, Runtime:
https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Core/Runtime.html);
TensorRT 11.0-11.4.0 have no DLA on Jetson and are refused
(:func:`edgefer.engine_sidecar.dla_unsupported_reason`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgefer.backends.base import Backend, ThroughputRun, register_backend, ring_throughput
from edgefer.backends.devices import parse_device
from edgefer.engine_sidecar import dla_unsupported_reason, parse_trt_version
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


def sidecar_dla_core(sidecar: dict[str, Any]) -> int | None:
    """The DLA core an engine was built for (its sidecar's ``build.dla_core``), None for a GPU engine."""
    build = sidecar.get("build")
    core = build.get("dla_core") if isinstance(build, dict) else None
    if core is None:
        return None
    if isinstance(core, bool) or not isinstance(core, int) or core < 0:
        raise BackendError(f"engine sidecar has an invalid build.dla_core {core!r}; rebuild the engine")
    return core


def set_runtime_dla_core(runtime: Any, trt_version: str, dla_core: int | None) -> None:
    """Point ``runtime`` at the DLA core a DLA engine was built for, before it is deserialised.

    Refuses a TensorRT without DLA (11.0-11.4.0) and a core this device does not have.
    """
    if dla_core is None:
        return
    if reason := dla_unsupported_reason(trt_version):
        raise BackendError(reason)
    available = int(runtime.num_DLA_cores)
    if dla_core >= available:
        raise BackendError(f"the engine runs on DLA core {dla_core} but this device has {available} DLA core(s)")
    runtime.DLA_core = int(dla_core)


#: execution contexts, each on its own CUDA stream, that throughput mode keeps busy when ``streams`` is not
#: given (``trtexec --streams=2``)
THROUGHPUT_STREAMS = 2


class Lane:
    """One execution context with its own CUDA stream (its allocator's), device buffers and page-locked
    host buffers: what one request in flight needs. Latency mode has one lane; throughput mode
    :data:`THROUGHPUT_STREAMS`. ``engine`` is the lane's own deserialised engine where it needs one (an
    engine with a dynamic input: "each execution context in concurrent use must use a separate
    optimization profile", TensorRT's IExecutionContext documentation, and edgefer builds one profile; so,
    as ``trtexec --streams``, one engine per stream), None where it shares the backend's.
    """

    def __init__(self, context: Any, alloc: Any, engine: Any = None) -> None:
        self.context, self.alloc, self.engine = context, alloc, engine
        self.ptrs: dict[str, int] = {}
        self.capacity = 0
        self.host: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = {}
        self.ok = True
        self.events: tuple[Any, ...] = ()  # (queued, execute start, execute end, done) of the last submit

    def ensure_capacity(self, io: list[IOTensor], batch: int) -> None:
        """(Re)allocate device buffers for at least ``batch`` images (grows, never shrinks)."""
        if batch <= self.capacity:
            return
        with self.alloc.activate():  # the device this lane's stream is on (the backend's: same context)
            self.free_buffers()
            for t in io:
                shape = concrete_shape(t.shape, batch)
                self.ptrs[t.name] = self.alloc.malloc(int(np.prod(shape)) * np.dtype(t.dtype).itemsize)
        self.capacity = batch

    def host_buffers(
        self, in_t: IOTensor, out_t: IOTensor, in_shape: tuple[int, ...], out_shape: tuple[int, ...]
    ) -> tuple[np.ndarray, np.ndarray]:
        """The page-locked (input, output) host buffers for one input shape, made on its first use.

        Page-locked allocation is slow (a driver call that pins pages), so it stays out of the timed
        path after the first call of a shape; a dynamic engine holds at most one pair per batch size.
        """
        bufs = self.host.get(in_shape)
        if bufs is None:
            bufs = (self.alloc.host_buffer(in_shape, in_t.dtype), self.alloc.host_buffer(out_shape, out_t.dtype))
            self.host[in_shape] = bufs
        return bufs

    def free_buffers(self) -> None:
        for ptr in self.ptrs.values():
            self.alloc.free(ptr)
        self.ptrs = {}
        self.capacity = 0


@register_backend
class TensorRTBackend(Backend):
    """A TensorRT engine on one CUDA GPU."""

    name: ClassVar[str] = "tensorrt"
    extra: ClassVar[str] = "trt"

    def _load(self, path: Path) -> None:
        import tensorrt as trt

        from edgefer.backends.cuda_mem import open_allocator
        from edgefer.engine_sidecar import check_engine_bytes, check_engine_compat, load_sidecar

        dev = parse_device(self.device if self.device != "cpu" else "gpu")
        if dev.kind != "gpu":
            raise BackendError(f"tensorrt runs on a CUDA GPU, not {self.device!r} (use --device cuda[:N])")
        self.device = str(dev)
        self.metadata = read_metadata(path)
        sidecar = load_sidecar(path)
        check_engine_compat(sidecar, device=dev.ordinal)  # EngineMismatchError: rebuild on this device
        blob = path.read_bytes()
        check_engine_bytes(blob, sidecar, path.name)  # the sidecar describes these very bytes
        self._trt = trt
        self._lanes: list[Lane] = []
        self.last_device_ms: float | None = None
        dla_core = sidecar_dla_core(sidecar)
        self._alloc = open_allocator(dev.ordinal)
        try:
            with self._alloc.activate():  # the engine lives in this device's context
                self._open_engine(path, blob, trt, dla_core)
                self._lanes.append(Lane(self._context, self._alloc))
                if self.mode == "throughput":
                    self._open_lanes(path, blob, lambda: open_allocator(dev.ordinal))
        except BaseException:
            self.close()  # the allocator's stream/context and any buffers: nothing leaks from a refused load
            raise

    def _open_engine(self, path: Path, blob: bytes, trt: Any, dla_core: int | None) -> None:
        """Deserialise the engine bytes (on its DLA core, if any) and read its I/O tensors."""
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        set_runtime_dla_core(self._runtime, trt.__version__, dla_core)
        engine = self._runtime.deserialize_cuda_engine(blob)
        if engine is None:
            raise BackendError(f"TensorRT could not deserialize {path.name} (see the TensorRT log above)")
        self._engine = engine
        self._context = self._new_context(engine, path)
        self._named = uses_named_tensors(trt.__version__)
        self._io = read_io_tensors(engine, trt)
        inputs = [t for t in self._io if t.is_input]
        self._outputs = [t for t in self._io if not t.is_input]
        if len(inputs) != 1 or not self._outputs:
            raise BackendError(f"{path.name}: expected one image input and a logits output")
        self._input = inputs[0]
        self._min_batch, self.max_batch = batch_limits(self._input)

    def _new_context(self, engine: Any, path: Path) -> Any:
        """``engine.create_execution_context()``, which returns None when TensorRT cannot make one (it
        allocates the activation memory, so typically out of device memory): a clear error, not an
        AttributeError far from the cause on the first call."""
        context = engine.create_execution_context()
        if context is None:
            raise BackendError(
                f"TensorRT could not create an execution context for {path.name} (out of GPU memory? "
                "see the TensorRT log above)"
            )
        return context

    def _open_lanes(self, path: Path, blob: bytes, new_alloc: Any) -> None:
        """Throughput mode: ``streams`` lanes in all (:data:`THROUGHPUT_STREAMS` when not given), each with
        its own context and stream (see :class:`Lane` for why a dynamic engine is deserialised once more
        per lane)."""
        dynamic = any(d < 0 for d in self._input.shape)
        for _ in range(1, self.streams or THROUGHPUT_STREAMS):
            engine = None
            if dynamic:
                engine = self._runtime.deserialize_cuda_engine(blob)
                if engine is None:
                    raise BackendError(f"TensorRT could not deserialize {path.name} again for another stream")
            lane = Lane(None, new_alloc(), engine)
            self._lanes.append(lane)  # in the list first: close() releases its stream if the context fails
            lane.context = self._new_context(engine or self._engine, path)

    def requests_in_flight(self) -> int:
        """One request per lane: ``streams`` (or :data:`THROUGHPUT_STREAMS`) when opened with
        ``mode="throughput"``, else 1."""
        return len(self._lanes)

    def _check_input(self, batch: np.ndarray) -> np.ndarray:
        """:meth:`check_batch`, the profile's minimum batch, and the engine's input dtype."""
        x = self.check_batch(batch)
        if x.shape[0] < self._min_batch:
            raise BackendError(f"tensorrt: batch {x.shape[0]} is below the engine profile's minimum {self._min_batch}")
        return np.ascontiguousarray(x, dtype=self._input.dtype)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        x = self._check_input(batch)
        # This backend's CUDA context for the whole call (pycuda pushes and pops it): another backend
        # on another GPU, or a call from another thread, must not run in whatever context is current.
        with self._alloc.activate():
            return self._infer(x)

    def _infer(self, x: np.ndarray) -> np.ndarray:
        """:meth:`infer` with the backend's CUDA context current, on the first lane."""
        lane = self._lanes[0]
        host_in, out = self._bind(lane, x.shape)
        np.copyto(host_in, x)
        self._submit(lane, host_in, out)
        lane.alloc.synchronize()
        if not lane.ok:
            raise BackendError(f"tensorrt execution failed on {self.path.name}")
        self.last_device_ms = lane.alloc.elapsed_ms(lane.events[1], lane.events[2])
        return np.array(out, dtype=np.float32, copy=True)

    def _bind(self, lane: Lane, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Set ``lane``'s input shape (and, named-tensor API, its tensor addresses) for a batch of ``shape``;
        its (input, output) host buffers."""
        lane.ensure_capacity(self._io, shape[0])
        out_t = self._outputs[0]
        ctx = lane.context
        if self._named:
            if not ctx.set_input_shape(self._input.name, shape):
                raise BackendError(f"tensorrt rejected input shape {shape}")
            out_shape = tuple(ctx.get_tensor_shape(out_t.name))
            for t in self._io:
                ctx.set_tensor_address(t.name, lane.ptrs[t.name])
        else:
            if not ctx.set_binding_shape(self._input.index, shape):
                raise BackendError(f"tensorrt rejected input shape {shape}")
            out_shape = tuple(ctx.get_binding_shape(out_t.index))
        return lane.host_buffers(self._input, out_t, tuple(shape), out_shape)

    def _submit(self, lane: Lane, host_in: np.ndarray, out: np.ndarray) -> None:
        """Queue copy in, execute, copy out on ``lane``'s stream; returns at once (the caller synchronises).

        Events: queued, execute start/end (``last_device_ms``: the GPU time of the network alone), done
        (queued to done: the request's latency in throughput mode, copies included).
        """
        alloc, ctx = lane.alloc, lane.context
        queued = alloc.record()
        alloc.htod_async(lane.ptrs[self._input.name], host_in)
        start = alloc.record()
        if self._named:
            lane.ok = bool(ctx.execute_async_v3(alloc.stream_handle))
        else:
            bindings = [lane.ptrs[t.name] for t in sorted(self._io, key=lambda t: t.index)]
            lane.ok = bool(ctx.execute_async_v2(bindings, alloc.stream_handle))
        end = alloc.record()
        alloc.dtoh_async(out, lane.ptrs[self._outputs[0].name])
        lane.events = (queued, start, end, alloc.record())

    def throughput(
        self, batch: np.ndarray, calls: int | None = None, seconds: float | None = None, warmup: int = 0
    ) -> ThroughputRun:
        """Every lane kept busy (:func:`~edgefer.backends.base.ring_throughput`): each lane's input is
        copied to its page-locked buffer once, then a request is copy in, execute, copy out queued on the
        lane's stream, and a lane is restarted as soon as its stream is done. With ``mode="throughput"``
        there are ``streams`` lanes, :data:`THROUGHPUT_STREAMS` by default (``trtexec --streams``); in
        latency mode one.
        A request's latency is its stream's, queued to done (CUDA events).
        """
        if (calls is None) == (seconds is None):
            raise BackendError("give either calls or seconds for a throughput measurement")
        x = self._check_input(batch)
        lanes = self._lanes
        with self._alloc.activate():
            bound = [self._bind(lane, x.shape) for lane in lanes]
            for host_in, _ in bound:
                np.copyto(host_in, x)
            for i in range(warmup):
                self._finish(lanes[i % len(lanes)], *bound[i % len(lanes)])

            def start(i: int) -> None:
                self._submit(lanes[i], *bound[i])

            def finish(i: int) -> float:
                lane = lanes[i]
                lane.alloc.synchronize()
                if not lane.ok:
                    raise BackendError(f"tensorrt execution failed on {self.path.name}")
                return lane.alloc.elapsed_ms(lane.events[0], lane.events[3]) / 1000.0

            try:
                return ring_throughput(len(lanes), start, finish, calls, seconds)
            except BaseException:
                for lane in lanes:  # nothing left queued on a stream when the error reaches the caller
                    lane.alloc.synchronize()
                raise

    def _finish(self, lane: Lane, host_in: np.ndarray, out: np.ndarray) -> None:
        """One untimed request on ``lane`` (a warm-up call), waited for."""
        self._submit(lane, host_in, out)
        lane.alloc.synchronize()
        if not lane.ok:
            raise BackendError(f"tensorrt execution failed on {self.path.name}")

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
        lanes, self._lanes = getattr(self, "_lanes", []), []
        try:
            with alloc.activate():  # buffers, contexts and engines are released in their own CUDA context
                for lane in lanes:
                    lane.free_buffers()
                    lane.host = {}  # page-locked host buffers: dropped before the allocator frees them
                    lane.context = lane.engine = None  # a context before its engine
                self._context = None
                self._engine = None
        finally:
            for lane in lanes:
                if lane.alloc is not alloc:
                    lane.alloc.close()  # each extra lane's stream
            alloc.close()
            self._alloc = None
