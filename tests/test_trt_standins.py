"""TensorRT builder, calibrator and backend against stand-ins for ``tensorrt`` and the CUDA allocator.

TensorRT is not installed where these run: a small fake ``tensorrt`` module (installed with
``monkeypatch.setitem(sys.modules, ...)``) and a fake allocator record what edgefer asks of them,
written against the real Python API's names (``Runtime.DLA_core``, ``IBuilderConfig.set_timing_cache``
returning a bool, ``IInt8EntropyCalibrator2``, the named-tensor I/O calls). They show that edgefer
makes the right calls in the right order; they do not show that a real engine builds or runs.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _identity_onnx import identity_onnx

import edgefer.backends.cuda_mem as cuda_mem
import edgefer.engine_sidecar as engine_sidecar
import edgefer.metadata as metadata_mod
from edgefer.engine_sidecar import make_sidecar
from edgefer.errors import BackendError, ExportError
from edgefer.export import tensorrt as trt_export
from edgefer.export.calibrator import calibration_batch_size, make_entropy_calibrator
from edgefer.export.tensorrt import BatchProfile, EngineBuildSpec, build_engine, plan_build
from edgefer.metadata import ModelMetadata, sidecar_path
from edgefer.preprocess import Preprocessing
from edgefer.utils.io import sha256_file, write_json

IMG = 16
N_CLASSES = 7


# --- a stand-in allocator ------------------------------------------------------------------------


class FakeAllocator:
    """Host memory posing as device memory; counts every allocation."""

    name = "stand-in"
    stream_handle = 1234

    def __init__(self) -> None:
        self.active = 0  # how deep this allocator's CUDA context is made current (activate())
        self.activations = 0
        self.malloc_active: list[bool] = []
        self.mem: dict[int, np.ndarray] = {}
        self.mallocs: list[int] = []
        self.host_buffers: list[tuple[tuple[int, ...], Any]] = []
        self.copies: list[np.ndarray] = []
        self._next = 4096
        self.closed = False

    @contextlib.contextmanager
    def activate(self) -> Iterator[None]:
        self.active += 1
        self.activations += 1
        try:
            yield
        finally:
            self.active -= 1

    def malloc(self, nbytes: int) -> int:
        self.malloc_active.append(self.active > 0)
        ptr = self._next
        self._next += nbytes + 256
        self.mem[ptr] = np.zeros(nbytes, dtype=np.uint8)
        self.mallocs.append(nbytes)
        return ptr

    def free(self, ptr: int) -> None:
        self.mem.pop(ptr, None)

    def htod_async(self, dst: int, src: np.ndarray) -> None:
        raw = np.ascontiguousarray(src).view(np.uint8).ravel()
        assert raw.size <= self.mem[dst].size, "host-to-device copy overruns the device buffer"
        self.mem[dst][: raw.size] = raw
        self.copies.append(np.array(src, copy=True))

    def dtoh_async(self, dst: np.ndarray, src: int) -> None:
        dst.view(np.uint8).ravel()[:] = self.mem[src][: dst.nbytes]

    def synchronize(self) -> None:
        pass

    def record(self) -> float:
        return 0.0

    def elapsed_ms(self, start: Any, end: Any) -> float:
        return 0.5

    def host_buffer(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        self.host_buffers.append((tuple(shape), dtype))
        return np.empty(shape, dtype=dtype)

    def close(self) -> None:
        self.closed = True


# --- a stand-in tensorrt: builder side -------------------------------------------------------------


class _Enum:
    def __init__(self, **members: int) -> None:
        self.__dict__.update(members)


def fake_builder_trt(version: str, input_shape: tuple[int, ...], events: list, refuse_cache: bool = False) -> Any:
    """A ``tensorrt`` module with the builder calls :func:`build_engine` makes; ``events`` records them."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version

    class Logger:
        WARNING, VERBOSE = 2, 4

        def __init__(self, level: int) -> None:
            self.level = level

    class TimingCache:
        def __init__(self, blob: bytes) -> None:
            self.blob = blob

        def serialize(self) -> bytes:
            return b"fresh-cache" if not self.blob else self.blob

    class Config:
        def __init__(self) -> None:
            self.flags: list[int] = []
            self.int8_calibrator = None
            self.cache: TimingCache | None = None

        def set_memory_pool_limit(self, pool: int, size: int) -> None:
            events.append(("workspace", size))

        def set_flag(self, flag: int) -> None:
            self.flags.append(flag)

        def add_optimization_profile(self, profile: Any) -> None:
            events.append(("profile", profile.shapes))

        def set_calibration_profile(self, profile: Any) -> None:
            events.append(("calibration_profile", profile.shapes))

        def create_timing_cache(self, blob: bytes) -> TimingCache:
            return TimingCache(bytes(blob))

        def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
            ok = not (refuse_cache and cache.blob)  # a real TensorRT refuses another release's cache
            events.append(("set_timing_cache", cache.blob, ok))
            if ok:
                self.cache = cache
            return ok

        def get_timing_cache(self) -> TimingCache:
            return self.cache

    class Profile:
        def __init__(self) -> None:
            self.shapes: dict[str, tuple] = {}

        def set_shape(self, name: str, mn: tuple, opt: tuple, mx: tuple) -> None:
            self.shapes[name] = (tuple(mn), tuple(opt), tuple(mx))

    class Tensor:
        def __init__(self, name: str, shape: tuple[int, ...]) -> None:
            self.name, self.shape = name, shape

    class Network:
        num_inputs = 1

        def get_input(self, i: int) -> Tensor:
            return Tensor("input", input_shape)

        def get_output(self, i: int) -> Tensor:
            return Tensor("logits", (input_shape[0], N_CLASSES))

    class Builder:
        num_DLA_cores = 0

        def __init__(self, logger: Logger) -> None:
            events.append(("builder", cuda_current()))

        def create_network(self, flags: int) -> Network:
            return Network()

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config) -> bytes:
            cal = config.int8_calibrator
            if cal is not None:  # what TensorRT does: a cache from read_calibration_cache, else pull batches
                cached = cal.read_calibration_cache()
                if cached is not None:
                    events.append(("calibration_cache_read", bytes(cached)))
                else:
                    n = 0
                    while cal.get_batch(["input"]) is not None:
                        events.append(("calibration_batch", cal.batch))
                        n += 1
                    cal.write_calibration_cache(f"TRT-{version}-EntropyCalibration2 from {n} batches".encode())
            events.append(("build", cuda_current()))
            return b"serialized-engine"

    class OnnxParser:
        def __init__(self, network: Network, logger: Logger) -> None:
            pass

        def parse_from_file(self, path: str) -> bool:
            return True

    class IInt8EntropyCalibrator2:
        def __init__(self) -> None:
            pass

    trt.Logger, trt.Builder, trt.OnnxParser = Logger, Builder, OnnxParser
    trt.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2
    trt.NetworkDefinitionCreationFlag = _Enum(EXPLICIT_BATCH=0, STRONGLY_TYPED=1)
    trt.BuilderFlag = _Enum(FP16=0, INT8=1, GPU_FALLBACK=2)
    trt.MemoryPoolType = _Enum(WORKSPACE=0)
    trt.DeviceType = _Enum(GPU=0, DLA=1)
    return trt


_CURRENT: list[int] = []  # the stand-in's "current CUDA device" stack


def cuda_current() -> int | None:
    return _CURRENT[-1] if _CURRENT else None


class _DeviceCurrent:
    def __init__(self, device: int = 0, prefer: str | None = None) -> None:
        self.device = device

    def __enter__(self) -> None:
        _CURRENT.append(self.device)

    def __exit__(self, *exc: object) -> None:
        _CURRENT.pop()


@pytest.fixture
def builder_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Install a stand-in tensorrt for builds; returns a function (version, input shape) -> events."""
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"stand-in onnx, only hashed")
    meta = ModelMetadata("msff_resnet18", preprocessing=Preprocessing(input_size=IMG))
    monkeypatch.setattr(metadata_mod, "read_metadata", lambda p: meta)
    monkeypatch.setattr(trt_export, "gpu_info", lambda device=0: (f"Stand-in GPU {device}", "8.7"))
    monkeypatch.setattr(cuda_mem, "device_current", _DeviceCurrent)
    allocs: list[FakeAllocator] = []

    def open_fake(device: int = 0, prefer: str | None = None) -> FakeAllocator:
        allocs.append(FakeAllocator())
        return allocs[-1]

    monkeypatch.setattr(cuda_mem, "open_allocator", open_fake)

    def install(version: str, input_shape: tuple[int, ...], refuse_cache: bool = False) -> list:
        events: list = []
        monkeypatch.setitem(sys.modules, "tensorrt", fake_builder_trt(version, input_shape, events, refuse_cache))
        return events

    install.onnx = onnx  # type: ignore[attr-defined]
    install.allocs = allocs  # type: ignore[attr-defined]
    return install


# --- builder: timing cache, device -------------------------------------------------------------


def test_refused_timing_cache_is_replaced_with_a_fresh_one(builder_env, tmp_path: Path) -> None:
    events = builder_env("10.3.0", (-1, 3, IMG, IMG), refuse_cache=True)
    cache = tmp_path / "trt_timing.cache"
    cache.write_bytes(b"written by another TensorRT")
    with pytest.warns(RuntimeWarning, match="refused the timing cache"):
        build = build_engine(builder_env.onnx, tmp_path / "m.engine", EngineBuildSpec("fp32", timing_cache=cache))
    sets = [e for e in events if e[0] == "set_timing_cache"]
    assert sets == [("set_timing_cache", b"written by another TensorRT", False), ("set_timing_cache", b"", True)]
    assert any("refused the timing cache" in line for line in build.log)
    assert cache.read_bytes() == b"fresh-cache" and build.engine.read_bytes() == b"serialized-engine"


def test_accepted_timing_cache_is_kept_without_warning(builder_env, tmp_path: Path, recwarn) -> None:
    events = builder_env("10.3.0", (-1, 3, IMG, IMG))
    cache = tmp_path / "trt_timing.cache"
    cache.write_bytes(b"good cache")
    build = build_engine(builder_env.onnx, tmp_path / "m.engine", EngineBuildSpec("fp32", timing_cache=cache))
    assert [e for e in events if e[0] == "set_timing_cache"] == [("set_timing_cache", b"good cache", True)]
    assert not build.log and not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_build_runs_with_its_device_current(builder_env, tmp_path: Path) -> None:
    events = builder_env("10.3.0", (-1, 3, IMG, IMG))
    build = build_engine(builder_env.onnx, tmp_path / "m.engine", EngineBuildSpec("fp32", device=1))
    assert ("builder", 1) in events and ("build", 1) in events
    assert cuda_current() is None  # restored after the build
    assert build.info["gpu"]["name"] == "Stand-in GPU 1"
    # the default profile of a dynamic ONNX: (1, 4, 32)
    (profile,) = [e[1] for e in events if e[0] == "profile"]
    assert profile["input"][2] == (32, 3, IMG, IMG)


def test_device_current_without_cuda_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cuda_mem, "installed_allocators", lambda: {"pycuda": False, "cuda-python": False})
    with cuda_mem.device_current(0):  # device 0 is CUDA's default: nothing to switch
        pass
    with pytest.raises(Exception, match=r"edgefer\[trt\]"), cuda_mem.device_current(1):
        pass


# --- calibrator ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("shape", "calib_batch", "expected"), [((4, 3, 8, 8), 8, 4), ((-1, 3, 8, 8), 8, 8)])
def test_calibration_batch_size(shape: tuple[int, ...], calib_batch: int, expected: int) -> None:
    assert calibration_batch_size(shape, calib_batch) == expected


def test_calibration_batch_size_refuses_non_image_inputs() -> None:
    with pytest.raises(ExportError, match="image input"):
        calibration_batch_size((4, 3, 8), 8)
    with pytest.raises(ExportError, match="dynamic non-batch"):
        calibration_batch_size((-1, 3, -1, -1), 8)


def _calibrator(monkeypatch, tmp_path: Path, input_shape: tuple[int, ...], calib_batch: int, n_images: int = 20):
    import edgefer.data.calibration as calibration

    x = np.arange(n_images * 3 * IMG * IMG, dtype=np.float32).reshape(n_images, 3, IMG, IMG)
    monkeypatch.setattr(calibration, "calibration_arrays", lambda data, pp, calib_size: types.SimpleNamespace(x=x))
    alloc = FakeAllocator()
    monkeypatch.setattr(cuda_mem, "open_allocator", lambda device=0, prefer=None: alloc)
    trt = fake_builder_trt("8.6.1", input_shape, [])
    meta = ModelMetadata("msff_resnet18", preprocessing=Preprocessing(input_size=IMG))
    cal = make_entropy_calibrator(trt, meta, "data", tmp_path / "c.cache", 300, calib_batch, input_shape, "0" * 64)
    return cal, alloc, x


@pytest.mark.parametrize(("static_batch", "calib_batch"), [(4, 8), (8, 4)])
def test_static_batch_sizes_the_calibration_buffer(monkeypatch, tmp_path: Path, static_batch: int, calib_batch: int):
    """TensorRT reads the input's static volume per batch: the buffer and every batch hold exactly N images."""
    cal, alloc, x = _calibrator(monkeypatch, tmp_path, (static_batch, 3, IMG, IMG), calib_batch)
    assert cal.get_batch_size() == static_batch
    assert alloc.mallocs == [static_batch * 3 * IMG * IMG * 4]
    batches = []
    while (ptrs := cal.get_batch(["input"])) is not None:
        assert len(ptrs) == 1
        batches.append(alloc.copies[-1])
    assert len(batches) == len(x) // static_batch
    assert all(b.shape == (static_batch, 3, IMG, IMG) for b in batches)
    np.testing.assert_array_equal(np.concatenate(batches), x[: len(batches) * static_batch])
    cal.close()
    assert alloc.closed


def test_dynamic_batch_calibrates_with_calib_batch(monkeypatch, tmp_path: Path) -> None:
    cal, alloc, _ = _calibrator(monkeypatch, tmp_path, (-1, 3, IMG, IMG), 5)
    assert cal.get_batch_size() == 5 and alloc.mallocs == [5 * 3 * IMG * IMG * 4]


def test_calibration_images_must_match_the_input(monkeypatch, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="calibration images have shape"):
        _calibrator(monkeypatch, tmp_path, (4, 3, IMG * 2, IMG * 2), 8)


def test_build_calibrates_with_the_static_batch(builder_env, tmp_path: Path, monkeypatch) -> None:
    import edgefer.data.calibration as calibration

    x = np.zeros((12, 3, IMG, IMG), dtype=np.float32)
    monkeypatch.setattr(calibration, "calibration_arrays", lambda data, pp, calib_size: types.SimpleNamespace(x=x))
    events = builder_env("8.6.1", (3, 3, IMG, IMG))
    spec = EngineBuildSpec("int8", calib_data="data", calib_batch=8, calib_cache=tmp_path / "m.calib.cache")
    build = build_engine(builder_env.onnx, tmp_path / "m.engine", spec)
    assert [e for e in events if e[0] == "calibration_batch"] == [("calibration_batch", 3)] * 4
    assert builder_env.allocs[-1].mallocs == [3 * 3 * IMG * IMG * 4]
    assert build.info["build"]["mode"] == "int8 entropy calibrator"
    assert not [e for e in events if e[0] == "calibration_profile"]  # static input: no calibration profile


# --- calibration cache: keyed to the ONNX and the calibration set ----------------------------------


def _calib_env(builder_env, monkeypatch, tmp_path: Path):
    """Calibration sets by name ("a", "b": different images) and a build function -> (events, build)."""
    import edgefer.data.calibration as calibration

    rng = np.random.default_rng(0)
    sets = {name: rng.standard_normal((8, 3, IMG, IMG)).astype(np.float32) for name in ("a", "b")}
    monkeypatch.setattr(
        calibration, "calibration_arrays", lambda data, pp, calib_size: types.SimpleNamespace(x=sets[data])
    )
    cache = tmp_path / "m.calib.cache"

    def build(data: str | None, version: str = "8.6.1") -> tuple[list, Any]:
        events = builder_env(version, (4, 3, IMG, IMG))
        spec = EngineBuildSpec("int8", calib_data=data, calib_cache=cache)
        return events, build_engine(builder_env.onnx, tmp_path / "m.engine", spec)

    return build, cache


def _calibrated(events: list) -> bool:
    return any(e[0] == "calibration_batch" for e in events)


def test_calibration_cache_is_keyed_to_onnx_and_images(builder_env, monkeypatch, tmp_path: Path) -> None:
    """The bug: an existing <stem>.calib.cache was reused whatever the ONNX (retrained) or --calib-data,
    and TensorRT matches a cache by tensor names only, so the engine got the old scales silently."""
    build, cache = _calib_env(builder_env, monkeypatch, tmp_path)
    events, _ = build("a")
    assert _calibrated(events) and cache.exists()
    key = json.loads(Path(str(cache) + ".json").read_text())
    assert key["onnx_sha256"] == trt_export.sha256_file(builder_env.onnx) and len(key["calibration_sha256"]) == 64
    first = cache.read_bytes()

    events, _ = build("a")  # same ONNX, same images: the cache is what calibration would give again
    assert not _calibrated(events) and ("calibration_cache_read", first) in events

    events, _ = build("b")  # other images: recalibrated
    assert _calibrated(events)
    events, _ = build("b", version="10.3.0")  # another TensorRT wrote it: recalibrated where data is at hand
    assert _calibrated(events)
    events, _ = build("b")
    assert _calibrated(events)
    events, _ = build(None)  # no data: the cache of set "b" for this ONNX is reused
    assert not _calibrated(events)

    builder_env.onnx.write_bytes(b"the retrained model")  # same tensor names, other weights
    events, _ = build("b")
    assert _calibrated(events)
    assert json.loads(Path(str(cache) + ".json").read_text())["onnx_sha256"] == trt_export.sha256_file(builder_env.onnx)


def test_calibration_cache_for_another_onnx_without_data_is_refused(builder_env, monkeypatch, tmp_path) -> None:
    build, cache = _calib_env(builder_env, monkeypatch, tmp_path)
    build("a")
    builder_env.onnx.write_bytes(b"the retrained model")
    with pytest.raises(ExportError, match=r"m\.calib\.cache was made for another ONNX.*--data"):
        build(None)
    Path(str(cache) + ".json").unlink()  # a cache edgefer did not key (older edgefer, another tool)
    with pytest.raises(ExportError, match=r"cannot tell which ONNX.*--data"):
        build(None)
    events, _ = build("a")  # data given: recalibrated, keyed again
    assert _calibrated(events) and Path(str(cache) + ".json").exists()


# --- backend: DLA core, page-locked buffers -------------------------------------------------------


def fake_runtime_trt(
    version: str, max_batch: int, events: list, no_context: bool = False, static_batch: int | None = None
) -> Any:
    """A ``tensorrt`` module with the runtime calls the backend makes; the engine returns per-image means.
    Its input batch is dynamic (one optimisation profile up to ``max_batch``) unless ``static_batch``;
    each context records the streams it ran on (``contexts``)."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.TensorIOMode = _Enum(INPUT=0, OUTPUT=1)
    trt.nptype = lambda dtype: np.float32

    class Logger:
        WARNING = 2

        def __init__(self, level: int) -> None:
            pass

    class Context:
        def __init__(self, alloc_ref: dict) -> None:
            self.shape: tuple[int, ...] = ()
            self.addr: dict[str, int] = {}
            self.alloc_ref = alloc_ref
            self.streams: list[int] = []
            trt.contexts.append(self)

        def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
            self.shape = tuple(shape)
            return True

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return (self.shape[0], N_CLASSES)

        def set_tensor_address(self, name: str, ptr: int) -> None:
            self.addr[name] = ptr

        def execute_async_v3(self, stream: int) -> bool:
            assert self.alloc_ref["alloc"].active, "TensorRT ran outside the backend's CUDA context"
            self.streams.append(stream)
            mem = self.alloc_ref["alloc"].mem
            n = self.shape[0]
            x = mem[self.addr["input"]][: n * 3 * IMG * IMG * 4].view(np.float32).reshape(self.shape)
            logits = np.repeat(x.mean(axis=(1, 2, 3))[:, None], N_CLASSES, axis=1) + np.arange(N_CLASSES)
            mem[self.addr["logits"]][: logits.nbytes] = logits.astype(np.float32).view(np.uint8).ravel()
            return True

    class Engine:
        num_io_tensors = 2

        def __init__(self, alloc_ref: dict) -> None:
            self.alloc_ref = alloc_ref

        def get_tensor_name(self, i: int) -> str:
            return ("input", "logits")[i]

        def get_tensor_mode(self, name: str) -> int:
            return 0 if name == "input" else 1

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            batch = static_batch or -1
            return (batch, 3, IMG, IMG) if name == "input" else (batch, N_CLASSES)

        def get_tensor_dtype(self, name: str) -> str:
            return "float32"

        def get_tensor_profile_shape(self, name: str, profile: int) -> tuple:
            return ((1, 3, IMG, IMG), (2, 3, IMG, IMG), (max_batch, 3, IMG, IMG))

        def create_execution_context(self) -> Context | None:
            events.append(("context", self.alloc_ref["alloc"].active))
            return None if no_context else Context(self.alloc_ref)  # None: TensorRT could not make one

    class Runtime:
        num_DLA_cores = 2

        def __init__(self, logger: Logger) -> None:
            self.DLA_core = -1  # TensorRT's default: no DLA core chosen

        def deserialize_cuda_engine(self, blob: bytes) -> Engine:
            assert trt.alloc_ref["alloc"].active, "deserialised outside the backend's CUDA context"
            events.append(("deserialize", self.DLA_core))
            return Engine(trt.alloc_ref)

    trt.Logger, trt.Runtime = Logger, Runtime
    trt.alloc_ref = {}
    trt.contexts = []
    return trt


@pytest.fixture
def engine_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Write a stand-in engine + sidecar and install a stand-in tensorrt; returns a loader."""
    from edgefer.backends.tensorrt import TensorRTBackend

    monkeypatch.setattr(engine_sidecar, "gpu_info", lambda device=0: ("Stand-in GPU", "8.7"))

    allocs: list[FakeAllocator] = []

    def load(
        version: str = "10.3.0",
        dla_core: int | None = None,
        max_batch: int = 8,
        built_with: str | None = None,
        engine_sha256: str | None = None,
        tamper: bool = False,
        no_context: bool = False,
        mode: str = "latency",
        static_batch: int | None = None,
        streams: int | None = None,
    ):
        events: list = []
        load.last_events = events  # type: ignore[attr-defined]
        trt = fake_runtime_trt(version, max_batch, events, no_context, static_batch)
        load.trt = trt  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        alloc = FakeAllocator()
        allocs.append(alloc)
        trt.alloc_ref["alloc"] = alloc

        def open_fake(device: int = 0, prefer: str | None = None) -> FakeAllocator:
            """The first allocator, then one per extra stream: its own stream handle, the same (fake) GPU."""
            if not any(a is alloc for a in trt.alloc_ref.get("opened", [])):
                trt.alloc_ref["opened"] = [alloc]
                return alloc
            extra = FakeAllocator()
            k = len(trt.alloc_ref["opened"])
            extra.mem, extra._next, extra.stream_handle = alloc.mem, 4096 + k * 10**7, 1234 + k
            trt.alloc_ref["opened"].append(extra)
            allocs.append(extra)
            return extra

        monkeypatch.setattr(cuda_mem, "open_allocator", open_fake)
        onnx = tmp_path / "m.onnx"
        onnx.write_bytes(b"only hashed")
        meta = ModelMetadata("msff_resnet18", preprocessing=Preprocessing(input_size=IMG))
        profile = BatchProfile(2, 2, 2) if dla_core is not None else BatchProfile(1, 2, max_batch)
        plan = plan_build(built_with or version, "fp16", "fp16", dla_core=dla_core)
        engine = tmp_path / "m.engine"
        engine.write_bytes(b"stand-in engine")
        sha = sha256_file(engine) if engine_sha256 is None else engine_sha256
        sc = make_sidecar(meta, version, "Stand-in GPU", "8.7", plan, profile, IMG, onnx, 256, engine_sha256=sha)
        sidecar_path(engine).write_text(json.dumps(sc))
        if tamper:
            engine.write_bytes(b"another engine, copied over the one the sidecar describes")
        return TensorRTBackend(engine, device="cuda", mode=mode, streams=streams), alloc, events

    load.allocs = allocs  # type: ignore[attr-defined]
    return load


def test_dla_engine_sets_the_runtime_core_before_deserialising(engine_env) -> None:
    backend, _, events = engine_env(dla_core=1)
    assert [e for e in events if e[0] == "deserialize"] == [("deserialize", 1)]
    backend.close()
    backend, _, events = engine_env(dla_core=None)
    assert [e for e in events if e[0] == "deserialize"] == [("deserialize", -1)]  # GPU engine: runtime default
    backend.close()


def test_dla_engine_refused_where_dla_is_missing(engine_env) -> None:
    # an engine whose sidecar says TensorRT 11.2 + DLA core 0 (made by another tool): refused before deserialising
    with pytest.raises(BackendError, match=r"no DLA support.*11\.4\.1"):
        engine_env(version="11.2.0", dla_core=0, built_with="10.3.0")
    with pytest.raises(BackendError, match="DLA core 5 but this device has 2"):
        engine_env(dla_core=5)
    assert all(a.closed for a in engine_env.allocs)  # a refused load releases its CUDA stream/context


def test_pinned_host_buffers_are_made_once_per_shape(engine_env) -> None:
    backend, alloc, _ = engine_env()
    rng = np.random.default_rng(0)
    x1, x2 = (rng.standard_normal((2, 3, IMG, IMG)).astype(np.float32) for _ in range(2))
    out1 = backend.infer(x1)
    made = len(alloc.host_buffers)
    assert made == 2  # one input staging buffer, one output buffer
    out2 = backend.infer(x2)
    assert len(alloc.host_buffers) == made  # same shape: reused, nothing allocated in the timed call
    expected = lambda x: x.mean(axis=(1, 2, 3))[:, None] + np.arange(N_CLASSES)  # noqa: E731
    np.testing.assert_allclose(out1, expected(x1), rtol=1e-5)  # the first result is a copy, not the reused buffer
    np.testing.assert_allclose(out2, expected(x2), rtol=1e-5)
    backend.infer(rng.standard_normal((3, 3, IMG, IMG)).astype(np.float32))
    assert len(alloc.host_buffers) == made + 2  # a new shape gets its own pair
    assert {s for s, _ in alloc.host_buffers} == {(2, 3, IMG, IMG), (2, N_CLASSES), (3, 3, IMG, IMG), (3, N_CLASSES)}
    backend.close()
    assert alloc.closed


# --- backend: engine checksum, execution context, CUDA context ------------------------------------


def test_engine_sha256_is_checked_before_deserialising(engine_env) -> None:
    """The bug: the sidecar's engine_sha256 was written but never read, so an engine copied over
    another kept the old engine's sidecar (TensorRT version, GPU, shapes) and loaded."""
    with pytest.raises(BackendError, match=r"m\.engine does not match its sidecar.*sha256.*rebuild"):
        engine_env(tamper=True)
    assert engine_env.last_events == []  # refused before TensorRT saw it
    with pytest.raises(BackendError, match="records no engine_sha256"):
        engine_env(engine_sha256="")
    assert engine_env.last_events == []
    assert all(a.activations == 0 and not a.mallocs for a in engine_env.allocs)  # no CUDA work at all
    backend, _, events = engine_env()  # the untouched engine loads
    assert [e[0] for e in events] == ["deserialize", "context"]
    backend.close()


def test_missing_execution_context_is_a_backend_error(engine_env) -> None:
    """create_execution_context() returns None (e.g. out of device memory): a clear error at load time."""
    with pytest.raises(BackendError, match="could not create an execution context"):
        engine_env(no_context=True)
    assert engine_env.allocs[-1].closed


def test_inference_runs_in_the_backends_cuda_context(engine_env) -> None:
    """Deserialising, allocating and executing happen inside the allocator's activate() (pycuda: its own
    context pushed and popped), so a second backend on another GPU, or another thread, gets the right one."""
    backend, alloc, events = engine_env()
    assert ("context", 1) in events
    x = np.ones((2, 3, IMG, IMG), dtype=np.float32)
    backend.infer(x)
    assert alloc.active == 0 and alloc.activations >= 2
    assert alloc.malloc_active and all(alloc.malloc_active)
    errors: list = []
    worker = threading.Thread(target=lambda: errors.append(backend.infer(x).shape))
    worker.start()
    worker.join()
    assert errors == [(2, N_CLASSES)]
    backend.close()


# --- allocators against stand-in pycuda / cuda-python ---------------------------------------------


def _fake_pycuda(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``pycuda.driver`` with per-thread context stacks, as the CUDA driver keeps them."""
    local = threading.local()

    def stack() -> list:
        if not hasattr(local, "stack"):
            local.stack = []
        return local.stack

    class Context:
        def __init__(self, device: int) -> None:
            self.device = device

        def push(self) -> None:
            stack().append(self)

        def pop(self) -> None:
            assert stack() and stack()[-1] is self, "popped a context that is not current"
            stack().pop()

    contexts = {}

    class Device:
        def __init__(self, ordinal: int) -> None:
            self.ordinal = ordinal

        def retain_primary_context(self) -> Context:
            return contexts.setdefault(self.ordinal, Context(self.ordinal))

    class Mem(int):
        def free(self) -> None:
            pass

    drv = types.ModuleType("pycuda.driver")
    drv.allocs = []
    drv.stack = stack

    def mem_alloc(nbytes: int) -> Mem:
        assert stack(), "cuMemAlloc without a current context"
        drv.allocs.append(stack()[-1].device)
        return Mem(4096 + len(drv.allocs))

    class Stream:
        handle = 7

        def __init__(self) -> None:
            drv.allocs.append(("stream", stack()[-1].device if stack() else None))

    drv.init = lambda: None
    drv.Device, drv.Stream, drv.mem_alloc = Device, Stream, mem_alloc
    pkg = types.ModuleType("pycuda")
    pkg.driver = drv
    monkeypatch.setitem(sys.modules, "pycuda", pkg)
    monkeypatch.setitem(sys.modules, "pycuda.driver", drv)
    return drv


def test_pycuda_allocator_pushes_its_own_context_only_while_active(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bug: the allocator pushed its context in __init__ and kept it, so with two GPUs the second
    allocator's context stayed current for the first one's work, and another thread had none."""
    drv = _fake_pycuda(monkeypatch)
    gpu0, gpu1 = cuda_mem.PyCudaAllocator(0), cuda_mem.PyCudaAllocator(1)
    assert drv.stack() == []  # nothing left current after construction
    assert drv.allocs == [("stream", 0), ("stream", 1)]  # each stream made in its own device's context
    with gpu0.activate():
        gpu0.malloc(16)
    with gpu1.activate():
        gpu1.malloc(16)
    assert drv.allocs[2:] == [0, 1] and drv.stack() == []
    seen: list = []

    def other_thread() -> None:
        with gpu0.activate():
            seen.append([c.device for c in drv.stack()])
            gpu0.malloc(8)

    worker = threading.Thread(target=other_thread)
    worker.start()
    worker.join()
    assert seen == [[0]] and drv.allocs[-1] == 0
    for alloc in (gpu0, gpu1):
        alloc.close()
    assert drv.stack() == []


class _FakeCudart:
    """``cuda.bindings.runtime`` as far as CudaPythonAllocator uses it; host memory is real (ctypes)."""

    class cudaError_t:
        cudaSuccess = 0

    class cudaMemcpyKind:
        cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost = 1, 2

    def __init__(self) -> None:
        import ctypes

        self._ctypes = ctypes
        self.pinned: dict[int, Any] = {}
        self.freed_host: list[int] = []
        self.device = 0
        self.set_devices: list[int] = []

    def cudaGetErrorString(self, err: int) -> tuple:
        return 0, b"stand-in error"

    def cudaSetDevice(self, device: int) -> tuple:
        self.device = device
        self.set_devices.append(device)
        return (0,)

    def cudaGetDevice(self) -> tuple:
        return 0, self.device

    def cudaStreamCreate(self) -> tuple:
        return 0, 99

    def cudaStreamDestroy(self, stream: int) -> tuple:
        return (0,)

    def cudaMallocHost(self, nbytes: int) -> tuple:
        buf = self._ctypes.create_string_buffer(int(nbytes))
        ptr = self._ctypes.addressof(buf)
        self.pinned[ptr] = buf
        return 0, ptr

    def cudaFreeHost(self, ptr: int) -> tuple:
        self.freed_host.append(int(ptr))
        return (0,)


def test_cuda_python_host_buffers_are_page_locked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bug: cuda-python host buffers were np.empty (pageable) though documented as page-locked."""
    rt = _FakeCudart()
    monkeypatch.setattr(cuda_mem, "_cudart", lambda: rt)
    alloc = cuda_mem.CudaPythonAllocator(1)
    buf = alloc.host_buffer((2, 3), np.float32)
    assert buf.shape == (2, 3) and buf.dtype == np.float32 and buf.flags.c_contiguous and buf.flags.writeable
    assert buf.ctypes.data in rt.pinned  # the memory cudaMallocHost returned, not a numpy allocation
    buf[:] = 1.5
    assert bytes(rt.pinned[buf.ctypes.data])[:4] == np.float32(1.5).tobytes()
    ptr = buf.ctypes.data
    rt.set_devices.clear()
    with alloc.activate():
        assert rt.device == 1
    alloc.close()
    assert rt.freed_host == [ptr]


# --- the printed trtexec --calib command ---------------------------------------------------------


def _tiny_edgefer_onnx(path: Path) -> Path:
    """A real FP32 ONNX with a dynamic batch and edgefer metadata (no torch needed)."""
    import onnx

    onnx.save(identity_onnx(IMG, extra={"dynamic_batch": True}), str(path))
    return path


def test_printed_trtexec_calib_needs_the_cache_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bug: `--onnx-only` printed `trtexec --int8 --calib=X` before X existed; trtexec does not check
    and calibrates on random data. Now the export refuses, saying how to make the cache."""
    from edgefer.export.api import export
    from edgefer.export.calibrator import calib_key_path, calibration_key

    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    onnx = _tiny_edgefer_onnx(tmp_path / "m.onnx")
    data = tmp_path / "data"
    data.mkdir()
    out = tmp_path / "out"
    kw = dict(onnx=onnx, target="trt", precision="int8", int8_mode="entropy", calib_data=data, out_dir=out)
    with pytest.raises(ExportError, match=r"calib=.*m\.calib\.cache.*no calibration cache.*random data.*--int8-mode"):
        export(onnx_only=True, progress=False, **kw)
    assert not out.exists()  # nothing written

    out.mkdir()
    cache = out / "m.calib.cache"
    cache.write_bytes(b"TRT-8601-EntropyCalibration2\n")
    x = np.zeros((4, 3, IMG, IMG), np.float32)
    write_json(calib_key_path(cache), calibration_key("f" * 64, x))  # keyed to another ONNX
    with pytest.raises(ExportError, match="made for another ONNX"):
        export(onnx_only=True, progress=False, **kw)

    write_json(calib_key_path(cache), calibration_key(sha256_file(onnx), x))
    res = export(onnx_only=True, progress=False, **kw)
    assert not res.engine_built and f"--calib={cache}" in res.commands[0]


# --- backend: throughput mode, one execution context per CUDA stream -------------------------------


def test_throughput_mode_keeps_one_context_per_stream_busy(engine_env) -> None:
    """trtexec --streams: each lane has its own context, stream and buffers; a dynamic engine is
    deserialised once per stream (contexts in concurrent use may not share an optimisation profile)."""
    from edgefer.backends.tensorrt import THROUGHPUT_STREAMS

    backend, _, events = engine_env(mode="throughput")
    trt = engine_env.trt
    assert backend.requests_in_flight() == THROUGHPUT_STREAMS == 2
    assert [e[0] for e in events] == ["deserialize", "context", "deserialize", "context"]
    x = np.random.default_rng(0).standard_normal((2, 3, IMG, IMG)).astype(np.float32)
    run = backend.throughput(x, calls=10, warmup=2)
    assert run.requests == 2 and run.calls == 10 and run.latencies == [0.5e-3] * 10  # events: queued -> done
    lanes = trt.alloc_ref["opened"]
    assert [a.stream_handle for a in lanes] == [1234, 1235]
    assert [set(c.streams) for c in trt.contexts] == [{1234}, {1235}]  # each context on its own stream
    assert [len(c.streams) for c in trt.contexts] == [6, 6]  # warm-up 1 + 5 each: both kept busy
    assert all(a.mallocs and all(a.malloc_active) for a in lanes)  # each lane's own device buffers
    assert all(np.array_equal(a.copies[-1], x) for a in lanes)
    expected = x.mean(axis=(1, 2, 3))[:, None] + np.arange(N_CLASSES)
    np.testing.assert_allclose(backend.infer(x), expected, rtol=1e-5)
    trt.contexts[1].execute_async_v3 = lambda stream: False
    synced = []
    for a in lanes:
        a.synchronize = lambda a=a: synced.append(a.stream_handle)
    with pytest.raises(BackendError, match="execution failed"):
        backend.throughput(x, calls=4)
    # waited on lane 0 (fine, restarted), lane 1 (failed), then every stream drained before the error surfaced
    assert synced == [1234, 1235, 1234, 1235]
    backend.close()
    assert all(a.closed for a in lanes)


def test_streams_sets_the_number_of_contexts(engine_env) -> None:
    """``--streams N`` (trtexec --streams=N): N lanes, each its own context, stream and (dynamic engine)
    engine copy; --streams in latency mode is refused before anything is deserialised."""
    backend, _, events = engine_env(mode="throughput", streams=3)
    assert backend.requests_in_flight() == 3
    assert [e[0] for e in events] == ["deserialize", "context"] * 3
    x = np.ones((2, 3, IMG, IMG), dtype=np.float32)
    run = backend.throughput(x, calls=9)
    assert run.requests == 3 and run.calls == 9
    assert [a.stream_handle for a in engine_env.trt.alloc_ref["opened"]] == [1234, 1235, 1236]
    backend.close()
    backend, _, events = engine_env(mode="throughput", streams=1)
    assert backend.requests_in_flight() == 1 and [e[0] for e in events] == ["deserialize", "context"]
    backend.close()
    with pytest.raises(BackendError, match="add --mode throughput"):
        engine_env(streams=2)


def test_static_engine_shares_one_engine_and_latency_mode_has_one_lane(engine_env) -> None:
    backend, _, events = engine_env(mode="throughput", static_batch=2, max_batch=2)
    assert [e[0] for e in events] == ["deserialize", "context", "context"]  # static: contexts on one engine
    x = np.ones((2, 3, IMG, IMG), dtype=np.float32)
    assert backend.throughput(x, calls=3).requests == 2
    backend.close()
    backend, _, events = engine_env()
    assert backend.requests_in_flight() == 1 and [e[0] for e in events] == ["deserialize", "context"]
    run = backend.throughput(x, calls=3)
    assert run.requests == 1 and run.calls == 3
    with pytest.raises(BackendError, match="either calls or seconds"):
        backend.throughput(x)
    backend.close()
