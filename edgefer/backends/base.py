"""The backend interface: ``load(path)``, ``infer(batch) -> logits``, ``info()``.

A backend is a small class; adding one means adding one module that subclasses
:class:`Backend` and decorates it with :func:`register_backend`, plus one row of
:data:`edgefer.formats.FORMATS` naming that module, the backend and its suffixes. Torch-free (the
torch backend imports torch itself, lazily).

Contract for subclasses:

* ``can_load(path) -> bool`` (classmethod): cheap check; by default a file with a suffix of the
  backend's row in the formats table (override to look at file contents too).
* ``_load(path)``: open the artifact (called by ``__init__``); set ``self.metadata``.
* ``infer(batch)``: float32 numpy batch in the metadata's layout (NCHW, or NHWC for an imported
  Keras-style model) -> float32 (N, num_classes) numpy array of the model's raw outputs (logits,
  or probabilities where ``metadata.outputs`` says so), in the metadata's class order.
  Must accept any batch size in ``[1, max_batch]`` (``None`` = unlimited).
* ``info()``: dict with at least backend, version, device, precision, path.
* ``precision``: "fp32" | "fp16" | "int8" (from metadata or the artifact itself).

Throughput (``mode="throughput"``, given when the artifact is opened, because it decides how the
engine is set up): :meth:`Backend.throughput` keeps several requests in flight and measures frames
per second over a call count or a time budget, as ``benchmark_app -hint throughput -api async`` and
``trtexec --streams`` do. A backend whose ``infer`` may be called from several threads at once sets
``concurrent_infer`` and gets one thread per request (:meth:`requests_in_flight`); OpenVINO overrides
:meth:`throughput` with its own async queue; a backend that can do neither refuses the mode.
"""

from __future__ import annotations

import importlib
import os
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgefer.errors import BackendError, MissingDependencyError
from edgefer.formats import FORMATS, format_for_backend, known_suffixes
from edgefer.metadata import ModelMetadata
from edgefer.utils.limits import MAX_STREAMS, MAX_THREADS

#: how an artifact is opened: for one request at a time (a camera's frame) or for many in flight
MODES = ("latency", "throughput")


def check_streams(streams: int | None, mode: str, error: type[Exception]) -> None:
    """Refuse a ``--streams`` that cannot be meant: not a whole number in 1..MAX_STREAMS, or given in
    latency mode (one request at a time has no streams to choose)."""
    if streams is None:
        return
    if isinstance(streams, bool) or not isinstance(streams, int) or not 1 <= streams <= MAX_STREAMS:
        raise error(f"--streams must be a whole number in 1..{MAX_STREAMS}, got {streams!r}")
    if mode != "throughput":
        raise error(f"--streams {streams} sets the requests in flight of --mode throughput; add --mode throughput")


@dataclass
class ThroughputRun:
    """What :meth:`Backend.throughput` measured: ``calls`` completed with ``requests`` in flight over
    ``seconds`` (first submission to last completion), and each call's latency (submission to result)."""

    requests: int
    calls: int
    seconds: float
    latencies: list[float] = field(default_factory=list)

    def fps(self, batch: int) -> float:
        """Images per second, measured: every completed call's images over the wall time."""
        return self.calls * batch / self.seconds if self.seconds > 0 else float("inf")


def ring_throughput(
    slots: int,
    start: Callable[[int], None],
    finish: Callable[[int], float],
    calls: int | None = None,
    seconds: float | None = None,
) -> ThroughputRun:
    """Keep ``slots`` asynchronous requests busy, as ``benchmark_app -api async`` and ``trtexec --streams`` do.

    ``start(i)`` submits request ``i`` and returns at once; ``finish(i)`` waits for it and returns its
    latency in seconds. Each slot is started, then the oldest is waited on and restarted at once, until
    ``calls`` were submitted or ``seconds`` have passed; the run ends when the last one is done. One
    thread: the engines run the requests on their own threads or streams. Waiting on the oldest costs
    throughput where requests finish out of order (a CPU stream slowed by a neighbour: OpenVINO uses its
    own ``AsyncInferQueue`` for that reason); TensorRT's streams on one GPU share its SMs and run equal
    requests in about the order they were queued.
    """
    if (calls is None) == (seconds is None):
        raise BackendError("give either calls or seconds for a throughput measurement")
    latencies: list[float] = []
    pending: deque[int] = deque()
    submitted, begin = 0, time.perf_counter()

    def more() -> bool:
        return submitted < calls if calls is not None else time.perf_counter() - begin < seconds

    for i in range(slots):
        if not more():
            break
        start(i)
        pending.append(i)
        submitted += 1
    while pending:
        i = pending.popleft()
        latencies.append(finish(i))
        if more():
            start(i)
            pending.append(i)
            submitted += 1
    return ThroughputRun(slots, len(latencies), time.perf_counter() - begin, latencies)


class Backend(ABC):
    """One loaded artifact on one device."""

    #: whether ``infer`` may be called from several threads at once (the default throughput loop needs it)
    concurrent_infer: ClassVar[bool] = False

    #: short name used in reports ("onnxruntime", "openvino", "tensorrt", "torch")
    name: ClassVar[str] = ""
    #: the extra to install when the engine package is missing
    extra: ClassVar[str] = ""

    def __init__(
        self,
        path: str | os.PathLike,
        device: str = "cpu",
        threads: int | None = None,
        cache_dir: str | os.PathLike | None = None,
        mode: str = "latency",
        streams: int | None = None,
    ) -> None:
        if mode not in MODES:
            raise BackendError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        check_streams(streams, mode, BackendError)
        self.path = Path(path)
        self.device = device
        self.mode = mode
        #: requests in flight in throughput mode (None: the engine's own choice)
        self.streams = streams
        self.threads = threads
        #: where a backend that compiles on load keeps compiled models (OpenVINO); others ignore it
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.metadata: ModelMetadata | None = None
        self.max_batch: int | None = None
        self._load(self.path)
        if self.metadata is None:
            raise BackendError(f"{type(self).__name__} did not read metadata from {path}")

    @classmethod
    def can_load(cls, path: Path) -> bool:
        """True for a file whose suffix the backend's row of the formats table claims."""
        fmt = format_for_backend(cls.name)
        return fmt is not None and path.is_file() and fmt.claims(path)

    @abstractmethod
    def _load(self, path: Path) -> None: ...

    @abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def info(self) -> dict[str, Any]: ...

    @property
    def precision(self) -> str:
        return self.metadata.precision if self.metadata else "fp32"

    @property
    def input_size(self) -> int:
        return self.metadata.preprocessing.input_size

    def check_batch(self, batch: np.ndarray) -> np.ndarray:
        """Validate shape/dtype against the metadata; return a contiguous float32 array."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        shape = self.metadata.preprocessing.input_shape if self.metadata else (3, self.input_size, self.input_size)
        if batch.ndim != 4 or batch.shape[1:] != shape:
            want = ", ".join(str(v) for v in ("N", *shape))
            raise BackendError(f"{self.name}: input must be ({want}), got {tuple(batch.shape)}")
        if self.max_batch is not None and batch.shape[0] > self.max_batch:
            raise BackendError(f"{self.name}: batch {batch.shape[0]} exceeds the artifact's max batch {self.max_batch}")
        return batch

    def requests_in_flight(self) -> int:
        """How many requests :meth:`throughput` keeps in flight: ``streams`` when given, else one per
        usable core."""
        if self.streams is not None:
            return self.streams
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # not Linux
            return max(1, os.cpu_count() or 1)

    def throughput(
        self, batch: np.ndarray, calls: int | None = None, seconds: float | None = None, warmup: int = 0
    ) -> ThroughputRun:
        """Run ``batch`` with :meth:`requests_in_flight` requests in flight until ``calls`` have been
        submitted or ``seconds`` have passed (after ``warmup`` untimed calls): measured, not estimated.

        The default keeps one thread per request, each calling :meth:`infer` in a loop; it needs
        ``concurrent_infer``. Open the artifact with ``mode="throughput"`` so that the engine is set up
        for it (one intra-op thread per request on ONNX Runtime, the THROUGHPUT hint on OpenVINO).
        """
        if (calls is None) == (seconds is None):
            raise BackendError("give either calls or seconds for a throughput measurement")
        if not self.concurrent_infer:
            raise BackendError(f"{self.name}: throughput mode is not available (one request at a time)")
        x = self.check_batch(batch)
        for _ in range(warmup):
            self.infer(x)
        requests = self.requests_in_flight()
        lock = threading.Lock()
        latencies: list[float] = []
        errors: list[BaseException] = []
        submitted = [0]
        start = time.perf_counter()

        def more() -> bool:
            with lock:
                done = submitted[0] >= calls if calls is not None else time.perf_counter() - start >= seconds
                if not done and not errors:
                    submitted[0] += 1
                return not done and not errors

        def worker() -> None:
            while more():
                t0 = time.perf_counter()
                try:
                    self.infer(x)
                except BaseException as exc:  # surfaced below, not lost in a thread
                    with lock:
                        errors.append(exc)
                    return
                with lock:
                    latencies.append(time.perf_counter() - t0)

        pool = [threading.Thread(target=worker, daemon=True) for _ in range(requests)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        elapsed = time.perf_counter() - start
        if errors:
            raise errors[0]
        return ThroughputRun(requests, len(latencies), elapsed, latencies)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release device resources (optional)."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, device={self.device!r}, precision={self.precision!r})"


_BACKENDS: list[type[Backend]] = []
#: modules that define backends, in the order they are tried by :func:`open_model` (the table's).
_BACKEND_MODULES = tuple(f.backend_module for f in FORMATS)


def register_backend(cls: type[Backend]) -> type[Backend]:
    if cls not in _BACKENDS:
        _BACKENDS.append(cls)
    return cls


def _load_backend_modules() -> None:
    for mod in _BACKEND_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:  # a backend module exists but its own import failed: surface it
                raise


def available_backends() -> dict[str, type[Backend]]:
    _load_backend_modules()
    return {b.name: b for b in _BACKENDS}


def open_model(
    path: str | os.PathLike,
    device: str = "cpu",
    threads: int | None = None,
    backend: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    mode: str = "latency",
    streams: int | None = None,
) -> Backend:
    """Load an artifact with the backend that understands it (or the one named by ``backend``).

    ``.onnx`` runs on ONNX Runtime, ``.xml`` on OpenVINO, ``.engine``/``.plan`` on TensorRT and
    ``.pt`` checkpoints on PyTorch by default: the backend of the row of
    :data:`edgefer.formats.FORMATS` that claims the suffix.

    ``cache_dir``: a folder where a backend that compiles on load (OpenVINO) keeps the compiled
    model, so that the next open on the same device reads it instead of compiling again.
    ``mode``: ``"latency"`` (one request at a time, a camera's frame) or ``"throughput"`` (set up for
    :meth:`Backend.throughput`: many requests in flight). ``streams``: how many, in throughput mode
    (OpenVINO's ``NUM_STREAMS`` and as many requests, TensorRT execution contexts on their own CUDA
    streams, ONNX Runtime requests side by side: ``benchmark_app -nstreams``, ``trtexec --streams``);
    None lets the engine choose.
    """
    p = Path(path)
    if threads is not None and not 1 <= threads <= MAX_THREADS:
        raise BackendError(f"--threads must be in 1..{MAX_THREADS}, got {threads}")
    if not p.exists():
        raise BackendError(f"artifact {p} does not exist")
    backends = available_backends()
    if backend is not None:
        if backend not in backends:
            raise BackendError(f"unknown backend {backend!r}; available: {', '.join(backends)}")
        candidates = [backends[backend]]
    else:
        candidates = [b for b in backends.values() if b.can_load(p)]
    if not candidates:
        raise BackendError(f"no backend can load {p.name} (known: {known_suffixes()})")
    cls = candidates[0]
    try:
        return cls(p, device=device, threads=threads, cache_dir=cache_dir, mode=mode, streams=streams)
    except ImportError as exc:
        raise MissingDependencyError(exc.name or cls.name, cls.extra, f"the {cls.name} backend") from exc
