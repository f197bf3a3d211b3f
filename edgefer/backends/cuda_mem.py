"""Device memory for the TensorRT backend behind one small interface: pycuda or cuda-python.

pycuda is the Jetson habit (it builds against JetPack's CUDA); ``cuda-python`` (``cuda.bindings``)
ships wheels everywhere and is the fallback. Both are wrapped by :class:`CudaAllocator`, which
offers exactly what inference needs: device malloc/free, async host<->device copies on a stream,
stream synchronisation, and CUDA events for GPU-side timing. Selection (:func:`choose_allocator`)
is a pure function so it is tested without a GPU; ``EDGEFER_CUDA_ALLOCATOR=pycuda|cuda-python``
forces one.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

import numpy as np

from edgefer.errors import BackendError, MissingDependencyError

ALLOCATORS = ("pycuda", "cuda-python")
_ENV = "EDGEFER_CUDA_ALLOCATOR"


def choose_allocator(available: dict[str, bool], prefer: str | None = None) -> str:
    """Pick an allocator name from what is importable; ``prefer`` (or the env var) wins if present.

    Raises :class:`MissingDependencyError` when neither is installed, and :class:`BackendError`
    when a preferred one is named but missing or unknown.
    """
    prefer = prefer or os.environ.get(_ENV) or None
    if prefer is not None:
        if prefer not in ALLOCATORS:
            raise BackendError(f"unknown CUDA allocator {prefer!r}; choose one of {', '.join(ALLOCATORS)}")
        if not available.get(prefer):
            raise BackendError(f"CUDA allocator {prefer!r} was requested but is not installed")
        return prefer
    for name in ALLOCATORS:
        if available.get(name):
            return name
    raise MissingDependencyError("pycuda", "trt", "TensorRT device buffers (or install cuda-python)")


def installed_allocators() -> dict[str, bool]:
    """Which allocator packages can be imported here (checked without importing them)."""

    def has(mod: str) -> bool:
        try:
            return importlib.util.find_spec(mod) is not None
        except (ImportError, ValueError):
            return False

    return {"pycuda": has("pycuda"), "cuda-python": has("cuda.bindings") or has("cuda.cudart")}


class CudaAllocator(ABC):
    """Device buffers, one stream and event timing on one CUDA device."""

    name: str = ""

    @abstractmethod
    def malloc(self, nbytes: int) -> int:
        """Allocate ``nbytes`` of device memory; returns the device pointer."""

    @abstractmethod
    def free(self, ptr: int) -> None: ...

    @abstractmethod
    def htod_async(self, dst: int, src: np.ndarray) -> None:
        """Copy a C-contiguous host array to device pointer ``dst`` on the stream."""

    @abstractmethod
    def dtoh_async(self, dst: np.ndarray, src: int) -> None:
        """Copy from device pointer ``src`` into a C-contiguous host array on the stream."""

    @abstractmethod
    def synchronize(self) -> None: ...

    @property
    @abstractmethod
    def stream_handle(self) -> int:
        """The raw ``cudaStream_t`` as an int (what TensorRT's execute calls take)."""

    @abstractmethod
    def record(self) -> Any:
        """Record an event on the stream and return it."""

    @abstractmethod
    def elapsed_ms(self, start: Any, end: Any) -> float:
        """Milliseconds between two recorded events (waits for ``end``)."""

    @abstractmethod
    def host_buffer(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """A page-locked host array for transfers, valid until :meth:`close`."""

    @contextlib.contextmanager
    def activate(self) -> Iterator[None]:
        """Make this allocator's device (and CUDA context) current on the calling thread for the block.

        Every CUDA call of one backend -- allocations, copies, TensorRT's deserialise and execute --
        runs inside it, so the current context is its own whichever thread calls and whatever other
        backend (on another GPU) ran before. Nests.
        """
        yield

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the stream/context."""


class PyCudaAllocator(CudaAllocator):
    """pycuda on the device's *primary* context (the one TensorRT's runtime API uses).

    The context is pushed only inside :meth:`activate` and popped on leaving it, never left current:
    CUDA's context stack is per thread, so a context pushed once at construction is current on that
    thread only, and stays on top of the stack when a second allocator (another GPU) pushes its own
    -- the first backend's work would then run in the second's context, or, from another thread, in
    none.
    """

    name = "pycuda"

    def __init__(self, device: int = 0) -> None:
        import pycuda.driver as cuda

        cuda.init()
        self._cuda = cuda
        self._ctx = cuda.Device(device).retain_primary_context()
        self._allocs: dict[int, Any] = {}
        with self.activate():
            self._stream = cuda.Stream()

    @contextlib.contextmanager
    def activate(self) -> Iterator[None]:
        self._ctx.push()
        try:
            yield
        finally:
            self._ctx.pop()

    def malloc(self, nbytes: int) -> int:
        mem = self._cuda.mem_alloc(max(int(nbytes), 1))
        self._allocs[int(mem)] = mem
        return int(mem)

    def free(self, ptr: int) -> None:
        mem = self._allocs.pop(ptr, None)
        if mem is not None:
            mem.free()

    def htod_async(self, dst: int, src: np.ndarray) -> None:
        self._cuda.memcpy_htod_async(dst, src, self._stream)

    def dtoh_async(self, dst: np.ndarray, src: int) -> None:
        self._cuda.memcpy_dtoh_async(dst, src, self._stream)

    def synchronize(self) -> None:
        self._stream.synchronize()

    @property
    def stream_handle(self) -> int:
        return int(self._stream.handle)

    def record(self) -> Any:
        ev = self._cuda.Event()
        ev.record(self._stream)
        return ev

    def elapsed_ms(self, start: Any, end: Any) -> float:
        end.synchronize()
        return float(start.time_till(end))

    def host_buffer(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        return self._cuda.pagelocked_empty(shape, dtype)

    def close(self) -> None:
        with contextlib.suppress(Exception), self.activate():  # the context may be gone at interpreter shutdown
            for ptr in list(self._allocs):
                self.free(ptr)


def _cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart  # older cuda-python
    return cudart


class CudaPythonAllocator(CudaAllocator):
    """NVIDIA's ``cuda-python`` runtime bindings; every call returns ``(err, *values)``.

    Host buffers are page-locked with ``cudaMallocHost`` and wrapped as numpy arrays, freed with
    ``cudaFreeHost`` on :meth:`close` -- the pattern of NVIDIA's own Python samples
    (NVIDIA/TensorRT samples/python/common_runtime.py, ``HostDeviceMem``, 10.x). An ``np.empty``
    buffer would be pageable: the driver then stages every async copy through its own pinned
    buffer, synchronously.
    """

    name = "cuda-python"

    def __init__(self, device: int = 0) -> None:
        self._rt = _cudart()
        self._device = int(device)
        self._ptrs: set[int] = set()
        self._host_ptrs: set[int] = set()
        with self.activate():
            (self._stream,) = self._check(self._rt.cudaStreamCreate())

    @contextlib.contextmanager
    def activate(self) -> Iterator[None]:
        """``cudaSetDevice`` (the runtime API's per-thread current device) for the block, then restore."""
        (previous,) = self._check(self._rt.cudaGetDevice())
        if int(previous) != self._device:
            self._check(self._rt.cudaSetDevice(self._device))
        try:
            yield
        finally:
            if int(previous) != self._device:
                self._rt.cudaSetDevice(previous)

    def _check(self, result: Any) -> tuple:
        err, *values = result if isinstance(result, tuple) else (result,)
        if int(err) != int(self._rt.cudaError_t.cudaSuccess):
            _, msg = self._rt.cudaGetErrorString(err)
            raise BackendError(f"CUDA error {int(err)}: {msg.decode() if isinstance(msg, bytes) else msg}")
        return tuple(values)

    def malloc(self, nbytes: int) -> int:
        (ptr,) = self._check(self._rt.cudaMalloc(max(int(nbytes), 1)))
        self._ptrs.add(int(ptr))
        return int(ptr)

    def free(self, ptr: int) -> None:
        if ptr in self._ptrs:
            self._ptrs.discard(ptr)
            self._check(self._rt.cudaFree(ptr))

    def htod_async(self, dst: int, src: np.ndarray) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self._rt.cudaMemcpyAsync(dst, src.ctypes.data, src.nbytes, kind, self._stream))

    def dtoh_async(self, dst: np.ndarray, src: int) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self._rt.cudaMemcpyAsync(dst.ctypes.data, src, dst.nbytes, kind, self._stream))

    def synchronize(self) -> None:
        self._check(self._rt.cudaStreamSynchronize(self._stream))

    @property
    def stream_handle(self) -> int:
        return int(self._stream)

    def record(self) -> Any:
        (ev,) = self._check(self._rt.cudaEventCreate())
        self._check(self._rt.cudaEventRecord(ev, self._stream))
        return ev

    def elapsed_ms(self, start: Any, end: Any) -> float:
        self._check(self._rt.cudaEventSynchronize(end))
        (ms,) = self._check(self._rt.cudaEventElapsedTime(start, end))
        for ev in (start, end):
            self._rt.cudaEventDestroy(ev)
        return float(ms)

    def host_buffer(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        dt = np.dtype(dtype)
        nbytes = max(int(np.prod(shape, dtype=np.int64)) * dt.itemsize, 1)
        (ptr,) = self._check(self._rt.cudaMallocHost(nbytes))
        ptr = int(ptr)
        self._host_ptrs.add(ptr)
        raw = np.ctypeslib.as_array((ctypes.c_ubyte * nbytes).from_address(ptr))
        count = int(np.prod(shape, dtype=np.int64))
        return raw[: count * dt.itemsize].view(dt).reshape(shape)

    def close(self) -> None:
        with self.activate():
            for ptr in list(self._ptrs):
                self.free(ptr)
            for ptr in list(self._host_ptrs):  # the backend dropped its arrays over them first
                self._host_ptrs.discard(ptr)
                self._rt.cudaFreeHost(ptr)
            self._rt.cudaStreamDestroy(self._stream)


@contextlib.contextmanager
def device_current(device: int = 0, prefer: str | None = None) -> Iterator[None]:
    """Make CUDA device ``device`` the calling thread's current device inside the ``with`` block.

    TensorRT's builder works on the calling thread's current CUDA device (the runtime API's, which
    starts at 0), so a build for ``device=N`` must make N current first. pycuda pushes N's primary
    context (the one the runtime API uses) and pops it on exit; cuda-python calls ``cudaSetDevice``
    and restores the previous device. Without either package only device 0, the default, works.
    """
    available = installed_allocators()
    if not any(available.values()):
        if device != 0:
            raise MissingDependencyError("pycuda", "trt", f"using CUDA device {device} (or install cuda-python)")
        yield
        return
    if choose_allocator(available, prefer) == "pycuda":
        import pycuda.driver as cuda

        cuda.init()
        ctx = cuda.Device(device).retain_primary_context()
        ctx.push()
        try:
            yield
        finally:
            with contextlib.suppress(Exception):  # already popped at interpreter shutdown
                ctx.pop()
        return
    rt = _cudart()

    def check(result: Any) -> tuple:
        err, *values = result if isinstance(result, tuple) else (result,)
        if int(err) != int(rt.cudaError_t.cudaSuccess):
            raise BackendError(f"CUDA error {int(err)} while making device {device} current")
        return tuple(values)

    (previous,) = check(rt.cudaGetDevice())
    check(rt.cudaSetDevice(device))
    try:
        yield
    finally:
        rt.cudaSetDevice(previous)


def open_allocator(device: int = 0, prefer: str | None = None) -> CudaAllocator:
    """The allocator chosen by :func:`choose_allocator`, bound to CUDA device ``device``."""
    name = choose_allocator(installed_allocators(), prefer)
    return PyCudaAllocator(device) if name == "pycuda" else CudaPythonAllocator(device)
