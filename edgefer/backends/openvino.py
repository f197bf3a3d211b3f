"""OpenVINO backend: FP32, FP16 and INT8 (NNCF) IR on CPU, GPU or NPU.

The IR is read once, its batch dimension made dynamic (except on the NPU, which needs static
shapes), and compiled with a latency hint and ``INFERENCE_NUM_THREADS``. Each batch size a caller
uses is then compiled once more with that batch *static* (up to :data:`STATIC_BATCHES` sizes; any
further size runs on the dynamic model): OpenVINO's CPU kernels for a dynamic shape re-infer
shapes and pick kernels on every call, which cost edgefer 1.27-1.38x OpenVINO's own
``benchmark_app`` (static shape) on the small INT8 models at batch 1 (``benchmarks/ov_side_by_side.md``).
The first call at a new batch size pays the compile; the benchmark's warm-up calls absorb it.
Metadata comes from the model's ``rt_info`` (written by ``edgefer export``).

Note on precision: ``precision`` reports what the *artifact* is (fp16 weights, int8 Q/DQ); the
precision OpenVINO *executes* in on the chosen device is reported in :meth:`info` as
``inference_precision``. FP32 and INT8 IRs are pinned to f32 for their floating-point parts: an
FP32 row must be FP32, and the layers NNCF's accuracy control kept out of INT8 were kept for
their precision (in bf16 they lost it again: 1.33 pt drop re-scored vs 0.67 pt measured by NNCF).
FP16 IRs run in the device's default (bf16 on CPUs with AVX512-BF16/AMX, f32 on plain AVX2 CPUs,
f16 on GPUs).

Model cache: with ``cache_dir`` (``edgefer benchmark --cache-dir``) OpenVINO writes the compiled
model there (a ``*.blob`` per model and device) and the next open reads it instead of compiling.
Off by default: on a workstation a compile is a one-off and a stale folder is one more thing to
clean. Turn it on where the model is opened often -- a camera service that restarts, an NPU or
iGPU whose compile takes seconds. ``info()`` says whether the model came from the cache.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgefer.backends.base import Backend, ThroughputRun, register_backend
from edgefer.backends.devices import parse_device
from edgefer.errors import BackendError
from edgefer.metadata import PROPS_KEY, ModelMetadata, read_metadata
from edgefer.utils.io import ensure_writable_dir

#: How many batch sizes get their own static-shape compiled model (each holds its own kernels).
STATIC_BATCHES = 4


def openvino_device_name(device: str, available: list[str]) -> str:
    """Map an edgefer device string to an OpenVINO device name that is present.

    ``cpu`` -> ``CPU``; ``gpu`` -> ``GPU`` (the first GPU); ``gpu:1`` -> ``GPU.1``; ``npu`` -> ``NPU``;
    ``auto`` -> ``AUTO``. Pure function, tested without the hardware.
    """
    dev = parse_device(device)
    if dev.kind == "auto":
        return "AUTO"
    if dev.kind == "tensorrt":
        raise BackendError("openvino cannot run on the tensorrt device (use cpu, gpu[:N] or npu)")
    base = dev.kind.upper()
    name = base if dev.index is None else f"{base}.{dev.index}"
    present = {d.split(".")[0] for d in available} | set(available)
    if name not in present and not (dev.index == 0 and base in present):
        raise BackendError(
            f"OpenVINO device {name} is not available here (available: {', '.join(available) or 'none'})"
        )
    if dev.index == 0 and name not in available:
        return base  # a single GPU is listed as "GPU", not "GPU.0"
    return name


def compile_config(
    precision: str,
    device_name: str,
    threads: int | None = None,
    cache_dir: str | Path | None = None,
    mode: str = "latency",
    streams: int | None = None,
) -> dict[str, Any]:
    """The ``compile_model`` config for a model of ``precision`` on OpenVINO device ``device_name``.

    One place for it, so a model scored in memory (:mod:`edgefer.quantize.evaluate`) runs with the
    same hints as the saved artifact in the benchmark. ``cache_dir`` sets OpenVINO's ``CACHE_DIR``;
    ``mode`` the performance hint (``LATENCY``, or ``THROUGHPUT``: several streams, as
    ``benchmark_app -hint throughput``); ``streams`` the number of those streams (``NUM_STREAMS``, as
    ``benchmark_app -nstreams``; None: the hint chooses).
    """
    config: dict[str, Any] = {"PERFORMANCE_HINT": "THROUGHPUT" if mode == "throughput" else "LATENCY"}
    if streams is not None and mode == "throughput":
        config["NUM_STREAMS"] = int(streams)
    if precision in ("fp32", "int8"):
        # OpenVINO would otherwise pick bf16 on CPUs with AVX512-BF16/AMX and f16 on GPUs for every
        # non-quantized op: "FP32" would not be FP32's accuracy, and INT8 layers kept in floating
        # point by accuracy control would lose the precision they were kept for.
        config["INFERENCE_PRECISION_HINT"] = "f32"
    if threads and device_name in ("CPU", "AUTO"):
        config["INFERENCE_NUM_THREADS"] = int(threads)
    if cache_dir is not None:
        config["CACHE_DIR"] = str(cache_dir)
    return config


class StaticCall:
    """One batch-1..N call on a static-shape infer request, with the per-call Python work done once.

    The caller's array *is* the request's input: it is bound to the request as an ``ov.Tensor`` that
    shares its memory (no copy), and bound again only when a call brings another array. A caller that
    keeps one input buffer and writes each frame into it -- the benchmark's preallocated input, a camera
    loop with a reused buffer -- then pays no per-call input work at all, as ``benchmark_app``, which
    fills its input tensors once. The request reads the array when the call runs, so what was written
    into it in place since the last call is what is inferred. The bound array is referenced here until
    the next array replaces it, so its memory cannot be freed while the request points to it. An array
    that cannot be shared (read-only, not C-contiguous) is copied into the request's own input tensor
    instead, which is then bound back; so is one not aligned for its dtype (a buffer at an odd offset).

    ``infer(share_outputs=True)`` returns no output dict copy; the call returns a *copy* of the output
    view. The copy is what keeps results safe: the view is overwritten by the next call, and a caller
    that keeps logits (a benchmark's agreement check, a tracker's history) must not see them change.
    The output is a few floats per image, so the copy is nothing next to the model.

    Measured on ``msff_mobilenetv3_lite`` (~0.27 ms, in-process, 3 x 3000 calls): wall / engine time
    1.04 for the same array again, 1.07 for a new array each call (binding it costs what copying
    150 kB into the request's own tensor did), against ~1.15 for the ``infer({0: x},
    share_inputs=True)`` + ``np.array(result[output])`` this replaced. Results are the same bits: the
    same compiled kernels read the same input values.

    A lock makes two threads' calls take turns: without it the second would rebind or overwrite the
    first's input while it runs (OpenVINO's own busy-request error came too late to catch that).
    Uncontended, it costs a fraction of a microsecond.
    """

    def __init__(self, request: Any) -> None:
        import openvino as ov

        self._tensor = ov.Tensor
        self.request = request
        self._own = request.get_input_tensor(0)
        self.input = self._own.data  # the request's own input memory; static shape: the view stays valid
        self.output = request.get_output_tensor(0).data
        self.shape = tuple(self.input.shape)
        self._bound: np.ndarray | None = None  # the caller's array the request reads (None: its own tensor)
        self._lock = threading.Lock()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with self._lock:
            if x is not self._bound:
                self._bind(x)
            self.request.infer(share_outputs=True)
            return np.array(self.output, dtype=np.float32, copy=True)

    def _bind(self, x: np.ndarray) -> None:
        """Make ``x`` the request's input: shared where it can be, else copied into the request's own tensor."""
        flags = x.flags
        if flags.c_contiguous and flags.writeable and flags.aligned:
            self.request.set_input_tensor(self._tensor(x, shared_memory=True))
            self._bound = x
            return
        if self._bound is not None:
            self.request.set_input_tensor(self._own)
            self._bound = None
        self.input[...] = x


class StaticBatches:
    """One model compiled per batch size with that batch static (see the module docstring).

    ``model``'s batch dimension is dynamic or static; when dynamic, batch 1 is compiled at once
    (the call a camera makes; it is also the check that the model compiles on this device at all)
    and every further batch size on its first use, up to :data:`STATIC_BATCHES` sizes, after which
    the dynamic model (compiled when first needed) runs the rest. The quantization evaluation uses
    this class too, so an in-memory model and its saved IR run the same compiled kernels
    (docs/architecture.md invariant 5: the same numbers, bit for bit).
    """

    def __init__(self, core: Any, model: Any, device_name: str, config: dict[str, Any]) -> None:
        self._core, self._model, self._device, self._config = core, model, device_name, config
        self._input_shape = [d.get_length() if d.is_static else -1 for d in model.input(0).get_partial_shape()]
        self.dynamic = self._input_shape[0] == -1
        self._static: dict[int, tuple[Any, Any]] = {}  # batch size -> (infer request, output)
        self._fallback: tuple[Any, Any] | None = None  # the model as it is (dynamic batch)
        self._compiled: dict[int | None, Any] = {}  # batch size (None: as it is) -> compiled model
        self._calls: dict[int, StaticCall | None] = {}  # batch size -> its fast call (None: dynamic fallback)
        self.first = self._compile(1 if self.dynamic else None)
        pair = (self.first.create_infer_request(), self.first.output(0))
        if self.dynamic:
            self._static[1] = pair
        else:
            self._fallback = pair

    def _compile(self, batch: int | None) -> Any:
        """The model compiled with a static ``batch``, or as it is (``None``)."""
        model = self._model
        if batch is not None:
            model = self._model.clone()
            model.reshape([batch, *self._input_shape[1:]])
        compiled = self._compiled[batch] = self._core.compile_model(model, self._device, self._config)
        return compiled

    def compiled_for(self, n: int) -> Any:
        """The compiled model that runs a batch of ``n`` (the one :meth:`request_for` uses)."""
        request = self.request_for(n)
        if request is self._fallback:
            return self._compiled[None]
        return self._compiled[n if self.dynamic else None]

    def request_for(self, n: int) -> tuple[Any, Any]:
        """``(infer request, output)`` for a batch of ``n``."""
        hit = self._static.get(n)
        if hit is not None:
            return hit
        if self.dynamic and len(self._static) < STATIC_BATCHES:
            try:
                compiled = self._compile(n)
                hit = self._static[n] = (compiled.create_infer_request(), compiled.output(0))
                return hit
            except Exception:  # the dynamic model runs every shape: a refused static compile costs only speed
                pass
        if self._fallback is None:
            compiled = self._compile(None)
            self._fallback = (compiled.create_infer_request(), compiled.output(0))
        return self._fallback

    def call_for(self, n: int) -> StaticCall | None:
        """The :class:`StaticCall` that runs a batch of exactly ``n`` on a static shape (on an infer request
        of its own), made once; None where ``n`` runs on a model with a dynamic batch (the caller then
        passes its array per call)."""
        if n in self._calls:
            return self._calls[n]
        request, _ = self.request_for(n)
        call = None
        if request is not self._fallback or not self.dynamic:
            # a request of its own: the call binds the caller's arrays to it, and nothing else may write
            # into them (``infer({0: x})`` on a shared request would copy into the caller's memory)
            call = StaticCall(self.compiled_for(n).create_infer_request())
            if call.shape[0] != n:  # a static model asked for another batch: let OpenVINO say why
                call = None
        self._calls[n] = call
        return call


@register_backend
class OpenVinoBackend(Backend):
    """An OpenVINO IR (``model.xml`` + ``model.bin``) compiled for one device."""

    name: ClassVar[str] = "openvino"
    extra: ClassVar[str] = "runtime"

    def _load(self, path: Path) -> None:
        import openvino as ov

        core = ov.Core()
        self._device_name = openvino_device_name(self.device, list(core.available_devices))
        try:
            model = core.read_model(str(path))
        except Exception as exc:
            raise BackendError(f"openvino cannot read {path.name}: {str(exc).strip()[:300]}") from exc
        if model.has_rt_info(["framework", PROPS_KEY]):
            props = {PROPS_KEY: model.get_rt_info(["framework", PROPS_KEY]).astype(str)}
            self.metadata = ModelMetadata.from_props(props)
        else:
            self.metadata = read_metadata(path)  # JSON sidecar, or a clear "not an edgefer artifact" error
        if len(model.inputs) != 1:
            raise BackendError(f"{path.name}: expected one image input, got {len(model.inputs)}")
        pshape = model.input(0).get_partial_shape()
        batch_dim = pshape[0]
        if batch_dim.is_static and self._device_name != "NPU":
            model.reshape([-1, *self.metadata.preprocessing.input_shape])
            batch_dim = model.input(0).get_partial_shape()[0]
        self.max_batch = batch_dim.get_length() if batch_dim.is_static else None
        if self.cache_dir is not None:
            ensure_writable_dir(self.cache_dir)  # a clear error now, not OpenVINO's at compile time
        config = compile_config(
            self.metadata.precision, self._device_name, self.threads, self.cache_dir, self.mode, self.streams
        )
        try:
            self._batches = StaticBatches(core, model, self._device_name, config)
        except Exception as exc:
            raise BackendError(
                f"openvino cannot compile {path.name} for {self._device_name}: {str(exc).strip()[:300]}"
            ) from exc
        self._compiled = self._batches.first
        self._calls: dict[tuple[int, ...], StaticCall] = {}  # an input shape seen before -> its call
        self._full_device_name = self._core_property(core, "FULL_DEVICE_NAME")

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Logits for ``batch``, a fresh array the caller owns (see :class:`StaticCall`).

        A batch whose exact shape was seen before, in float32, skips the checks: its shape is that of
        a static request the checks already passed once (a dict look-up instead of the metadata's).
        """
        call = self._calls.get(batch.shape) if isinstance(batch, np.ndarray) and batch.dtype == np.float32 else None
        try:
            if call is not None:
                return call(batch)
            x = self.check_batch(batch)
            call = self._batches.call_for(x.shape[0])
            if call is not None:
                self._calls[x.shape] = call
                return call(x)
            request, output = self._batches.request_for(x.shape[0])
            result = request.infer({0: x}, share_inputs=True, share_outputs=True)
            return np.array(result[output], dtype=np.float32, copy=True)
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(f"openvino failed on {self.path.name}: {str(exc).strip()[:300]}") from exc

    def requests_in_flight(self, compiled: Any = None) -> int:
        """``streams`` when given (one request per stream), else what ``compiled`` (by default the model
        compiled at load) asks for: ``OPTIMAL_NUMBER_OF_INFER_REQUESTS``, as benchmark_app uses."""
        if self.streams is not None:
            return self.streams
        try:
            return max(1, int((compiled or self._compiled).get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        except Exception:
            return super().requests_in_flight()

    def throughput(
        self, batch: np.ndarray, calls: int | None = None, seconds: float | None = None, warmup: int = 0
    ) -> ThroughputRun:
        """benchmark_app's async loop: the compiled model's optimal number of infer requests for this batch
        in an ``AsyncInferQueue``, the request that finished first restarted at once, until ``calls`` were
        submitted or ``seconds`` passed (open the model with ``mode="throughput"`` for ``-hint
        throughput``). Each call's latency is the request's own (``InferRequest.latency``).

        As in ``benchmark_app``, each request gets its input once, before the loop (an ``ov.Tensor`` of its
        own, copied from ``batch``): a restart is then ``start_async()`` alone, with no input dispatched.

        Why the queue and not a ring of requests waited on oldest-first: on a busy or hybrid CPU one stream
        runs slower than another, requests finish out of order, and a ring leaves the fast stream's request
        idle until the slow one is done (0.63x benchmark_app's FPS on mask_cbam_resnet18, 9 interleaved
        rounds on a 2-core machine at load average 6, 2026-12-06; the queue: 0.91-0.95x in an A/B there).
        The queue has no Python callback, is drained with ``wait_all`` (also when a call fails) and dropped
        before this returns, so no request or callback outlives the call; a backend still open at interpreter
        exit after a throughput run exits cleanly (checked with OpenVINO 2026.4 and 2024.4, the Python 3.8
        one). The ring had been chosen for an abort at exit seen with a queue that had a Python callback;
        that is not reproduced here without one.
        """
        import openvino as ov

        if (calls is None) == (seconds is None):
            raise BackendError("give either calls or seconds for a throughput measurement")
        x = self.check_batch(batch)
        try:
            compiled = self._batches.compiled_for(x.shape[0])
            n = self.requests_in_flight(compiled)
            queue = ov.AsyncInferQueue(compiled, n)
            try:
                for i in range(n):  # each request its own copy of the input, set once
                    queue[i].set_input_tensor(ov.Tensor(x, shared_memory=False))
                return self._run_queue(queue, n, calls, seconds, warmup)
            finally:
                queue.wait_all()
                del queue
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(f"openvino failed on {self.path.name}: {str(exc).strip()[:300]}") from exc

    @staticmethod
    def _run_queue(queue: Any, n: int, calls: int | None, seconds: float | None, warmup: int) -> ThroughputRun:
        """:meth:`throughput`'s loop on ``queue`` (``n`` requests), as benchmark_app's ``-api async``."""
        for i in range(warmup):
            queue[i % n].infer()
        latencies: list[float] = []
        started: set[int] = set()
        submitted, begin = 0, time.perf_counter()
        while submitted < calls if calls is not None else time.perf_counter() - begin < seconds:
            i = queue.get_idle_request_id()  # the first to finish; start_async() below restarts this one
            if i in started:
                latencies.append(float(queue[i].latency) / 1000.0)
            started.add(i)
            queue.start_async()
            submitted += 1
        queue.wait_all()
        elapsed = time.perf_counter() - begin
        latencies += [float(queue[i].latency) / 1000.0 for i in started]
        return ThroughputRun(n, len(latencies), elapsed, latencies)

    @staticmethod
    def _text(value: Any) -> str:
        """A property as text: ``bf16`` for an element type (``str`` gives ``<Type: 'bfloat16'>``)."""
        to_string = getattr(value, "to_string", None)
        return str(to_string()) if callable(to_string) else str(value)

    def _property(self, key: str) -> Any:
        """What the *compiled* model uses for ``key`` (None where the device does not say)."""
        try:
            return self._text(self._compiled.get_property(key))
        except Exception:
            return None

    def _core_property(self, core: Any, key: str) -> str | None:
        """A device property (``FULL_DEVICE_NAME``); for AUTO, the device it picked when it says."""
        device = self._device_name
        if device == "AUTO":
            try:
                picked = list(self._compiled.get_property("EXECUTION_DEVICES"))
            except Exception:
                picked = []
            device = str(picked[0]) if picked else device
        try:
            return self._text(core.get_property(device, key))
        except Exception:
            return None

    def info(self) -> dict[str, Any]:
        import openvino as ov

        return {
            "backend": self.name,
            "version": ov.get_version(),
            "device": self.device,
            "ov_device": self._device_name,
            "precision": self.precision,
            "full_device_name": self._full_device_name,
            "performance_hint": self._property("PERFORMANCE_HINT"),
            "inference_precision": self._property("INFERENCE_PRECISION_HINT"),
            "num_streams": self._property("NUM_STREAMS"),
            "threads": self.threads or self._property("INFERENCE_NUM_THREADS"),
            "cache_dir": None if self.cache_dir is None else str(self.cache_dir),
            "loaded_from_cache": self._property("LOADED_FROM_CACHE") == "True",
            "path": str(self.path),
            "max_batch": self.max_batch,
        }
