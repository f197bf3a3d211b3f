"""ONNX -> TensorRT engine with the real TensorRT Python API, plus everything around it that is
pure Python: the build plan per TensorRT version, the batch profile and the equivalent ``trtexec``
command line. The JSON sidecar, the TensorRT version parser and the "was this engine built here?"
check live in :mod:`edgefer.engine_sidecar`, which the device-side backend imports without this
builder.

Versions our users have: JetPack 5 = TensorRT 8.5, JetPack 6.0 = 8.6, JetPack 6.1/6.2 = 10.3,
x86 = 10.x or 11.x. The API differences that matter here (NVIDIA's Python API reference and
the 8.x->10.x and 10.x->11.x migration guides):

* **8.x** needs ``1 << NetworkDefinitionCreationFlag.EXPLICIT_BATCH`` for ONNX networks, has no
  strongly typed networks, and takes precision from ``BuilderFlag.FP16`` / ``BuilderFlag.INT8``
  (a Q/DQ ONNX still needs the INT8 flag). Implicit calibration: ``config.int8_calibrator``.
* **10.x**: EXPLICIT_BATCH is deprecated and ignored; ``STRONGLY_TYPED`` exists, and with it the
  precision flags must not be set (each layer runs in the type the ONNX gives it). Weak typing
  (the flags) and the calibrator are still there, deprecated since 10.1 / 10.12. DLA builds use
  the flags (strongly typed DLA arrived with 11.4.1).
* **11.x**: every network is strongly typed (the flag is accepted and ignored);
  ``BuilderFlag.FP16``/``INT8``, ``int8_calibrator`` and the calibration profile are removed.
  FP16 comes from an FP16 ONNX, INT8 from Q/DQ nodes.

Common to all: ``OnnxParser.parse_from_file`` + ``num_errors``/``get_error(i)``,
``config.set_memory_pool_limit(MemoryPoolType.WORKSPACE, bytes)``, one optimisation profile
(``builder.create_optimization_profile().set_shape(name, min, opt, max)``), the timing cache
(``config.create_timing_cache(blob)`` / ``set_timing_cache(cache, ignore_mismatch=False)`` /
``get_timing_cache().serialize()``), DLA (``default_device_type = DeviceType.DLA``,
``DLA_core``, ``BuilderFlag.GPU_FALLBACK``; DLA needs static shapes) and
``builder.build_serialized_network(network, config)``.

Our default precision path is the portable one: **FP16 = the FP16 ONNX built strongly typed,
INT8 = the Q/DQ ONNX**; on TensorRT 8.x (no strong typing) the same files are built with the
precision flags. The legacy entropy calibrator (TensorRT <= 10) is there for JetPack 5 users who
ask for it.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgefer.engine_sidecar import dla_unsupported_reason, gpu_info, make_sidecar, parse_trt_version, write_sidecar
from edgefer.errors import ExportError, MissingDependencyError
from edgefer.metadata import ModelMetadata
from edgefer.utils.io import atomic_path, sha256_file

#: Oldest TensorRT we build with (JetPack 5.1): the name-based I/O API and parse_from_file.
MIN_TRT = (8, 5)
DEFAULT_WORKSPACE_MIB = 1024
DEFAULT_MAX_BATCH = 32
#: Default optimisation batch: a camera frame rarely holds more than a few faces.
DEFAULT_OPT_BATCH = 4
#: The ONNX kinds a build starts from: FP32, FP16 (FP32 I/O), or FP32 with INT8 Q/DQ nodes.
ONNX_KINDS = ("fp32", "fp16", "qdq")
FP16_MODES = ("auto", "strongly-typed", "flag")


# ---------------------------------------------------------------------------------------------
# build plans (pure Python)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildPlan:
    """What a build does on one TensorRT version (decided by :func:`plan_build`).

    ``builder_flags`` are ``tensorrt.BuilderFlag`` member names; ``network_flags`` are
    ``tensorrt.NetworkDefinitionCreationFlag`` member names.
    """

    trt_major: int
    precision: str
    onnx_kind: str
    network_flags: tuple[str, ...]
    builder_flags: tuple[str, ...]
    strongly_typed: bool
    calibrator: bool
    dla_core: int | None
    mode: str  # short human description, recorded in the sidecar

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_build(
    trt_version: str,
    precision: str,
    onnx_kind: str,
    dla_core: int | None = None,
    fp16_mode: str = "auto",
    calibrator: bool = False,
) -> BuildPlan:
    """Decide network and builder flags for ``precision`` on this TensorRT from this ONNX kind.

    Raises :class:`ExportError` for combinations a TensorRT version cannot build (e.g. FP16 from
    an FP32 ONNX on TensorRT 11, the calibrator on TensorRT 11, FP32 on DLA).
    """
    major, minor, _ = parse_trt_version(trt_version)
    if (major, minor) < MIN_TRT:
        raise ExportError(
            f"TensorRT {trt_version} is too old: edgefer builds with TensorRT >= {MIN_TRT[0]}.{MIN_TRT[1]} "
            "(JetPack 5.1 or newer)"
        )
    if precision not in ("fp32", "fp16", "int8"):
        raise ExportError(f"unknown precision {precision!r} (fp32, fp16 or int8)")
    if onnx_kind not in ONNX_KINDS:
        raise ExportError(f"unknown ONNX kind {onnx_kind!r} ({', '.join(ONNX_KINDS)})")
    if fp16_mode not in FP16_MODES:
        raise ExportError(f"fp16_mode must be one of {FP16_MODES}, not {fp16_mode!r}")
    if dla_core is not None and precision == "fp32":
        raise ExportError("DLA runs FP16 or INT8 networks only: use --precision fp16 or int8 with a DLA core")
    if dla_core is not None and (reason := dla_unsupported_reason(trt_version)):
        raise ExportError(reason)
    expected = {"fp32": ("fp32",), "fp16": ("fp16", "fp32"), "int8": ("qdq", "fp32") if calibrator else ("qdq",)}
    if onnx_kind not in expected[precision]:
        if precision == "int8" and onnx_kind == "fp32":
            raise ExportError(
                "INT8 needs the Q/DQ ONNX from `edgefer quantize --target trt` (or, on TensorRT <= 10, "
                "the legacy calibrator with calibration data)"
            )
        raise ExportError(f"a {precision} engine cannot be built from a {onnx_kind} ONNX")
    if calibrator and (precision != "int8" or onnx_kind != "fp32"):
        raise ExportError("the INT8 calibrator is used with the FP32 ONNX and --precision int8 only")

    net: list[str] = []
    flags: list[str] = []
    strongly = False
    if major >= 11:
        # Strong typing is always on; the creation flag is ignored, the precision flags are gone.
        if calibrator:
            raise ExportError(
                f"TensorRT {trt_version} removed implicit INT8 calibration (int8_calibrator): "
                "build from the Q/DQ ONNX instead"
            )
        if precision == "fp16" and onnx_kind != "fp16":
            raise ExportError(
                f"TensorRT {trt_version} takes FP16 from the network: build from the FP16 ONNX "
                "(`edgefer export --target trt --precision fp16` makes it)"
            )
        strongly = True
        mode = {"fp32": "fp32", "fp16": "strongly typed fp16 onnx", "int8": "strongly typed q/dq onnx"}[precision]
    elif major >= 9:
        weak = dla_core is not None or fp16_mode == "flag" or calibrator
        if precision == "fp32":
            mode = "fp32"
        elif not weak and (onnx_kind in ("fp16", "qdq")):
            net.append("STRONGLY_TYPED")
            strongly = True
            mode = "strongly typed fp16 onnx" if precision == "fp16" else "strongly typed q/dq onnx"
        else:
            if fp16_mode == "strongly-typed" and precision == "fp16":
                raise ExportError("a strongly typed FP16 build needs the FP16 ONNX and no DLA core")
            flags.append("FP16" if precision == "fp16" else "INT8")
            mode = f"{precision} builder flag"
            if calibrator:
                mode = "int8 entropy calibrator"
    else:  # 8.5 / 8.6
        if fp16_mode == "strongly-typed" and precision == "fp16":
            raise ExportError(f"TensorRT {trt_version} has no strongly typed networks: use fp16_mode='flag' or 'auto'")
        net.append("EXPLICIT_BATCH")
        if precision == "fp16":
            flags.append("FP16")
        elif precision == "int8":
            flags.append("INT8")  # explicit Q/DQ quantization needs it on 8.x too
        mode = {"fp32": "fp32", "fp16": "fp16 builder flag", "int8": "int8 builder flag"}[precision]
        if calibrator:
            mode = "int8 entropy calibrator"
        elif precision == "int8":
            mode = "q/dq onnx + int8 flag"
    if dla_core is not None:
        if not strongly and precision == "int8" and "FP16" not in flags:
            flags.append("FP16")  # DLA layers without INT8 scales run in FP16
        flags.append("GPU_FALLBACK")
    return BuildPlan(
        trt_major=major,
        precision=precision,
        onnx_kind=onnx_kind,
        network_flags=tuple(net),
        builder_flags=tuple(flags),
        strongly_typed=strongly,
        calibrator=calibrator,
        dla_core=dla_core,
        mode=mode,
    )


def onnx_kind_of(metadata: ModelMetadata) -> str:
    """The ONNX kind of an edgefer ONNX from its metadata (fp32, fp16 or qdq)."""
    if metadata.precision == "int8":
        return "qdq"
    return "fp16" if metadata.precision == "fp16" else "fp32"


# ---------------------------------------------------------------------------------------------
# batch profile (pure Python)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchProfile:
    """The batch range of the optimisation profile: ``min <= opt <= max``."""

    min: int
    opt: int
    max: int

    @property
    def static(self) -> bool:
        return self.min == self.opt == self.max

    def shapes(self, img_size: int | tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(min, opt, max) input shapes; ``img_size`` is the square side of an NCHW RGB input, or one
        image's shape (``Preprocessing.input_shape``: CxHxW, or HxWxC for NHWC)."""
        per = (3, img_size, img_size) if isinstance(img_size, int) else tuple(int(v) for v in img_size)
        return tuple((b, *per) for b in (self.min, self.opt, self.max))  # type: ignore[return-value]


def batch_profile(
    batch: int = 1, dynamic: bool = False, max_batch: int | None = None, opt_batch: int | None = None
) -> BatchProfile:
    """``--batch N`` -> (N, N, N); ``--dynamic --max-batch M`` -> (1, opt, M) with ``opt`` =
    ``opt_batch`` or ``min(M, 4)`` (TensorRT picks its kernels for ``opt``)."""
    if batch < 1:
        raise ExportError(f"batch must be >= 1, got {batch}")
    if not dynamic:
        if max_batch is not None and max_batch != batch:
            raise ExportError("--max-batch needs --dynamic (a static engine has exactly --batch)")
        return BatchProfile(batch, batch, batch)
    hi = DEFAULT_MAX_BATCH if max_batch is None else int(max_batch)
    if hi < 1:
        raise ExportError(f"max batch must be >= 1, got {hi}")
    opt = min(hi, DEFAULT_OPT_BATCH) if opt_batch is None else int(opt_batch)
    if not 1 <= opt <= hi:
        raise ExportError(f"opt batch {opt} must lie in [1, {hi}]")
    return BatchProfile(1, opt, hi)


# ---------------------------------------------------------------------------------------------
# trtexec (pure Python)
# ---------------------------------------------------------------------------------------------


def _dims(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


@dataclass(frozen=True)
class EngineBuildSpec:
    """The settings of one engine build, shared by :func:`build_engine` and :func:`trtexec_command`.

    Checked when made, so a bad value fails before any TensorRT work with one clear
    :class:`ExportError`. ``profile=None`` means: take the shapes from the ONNX (a static ONNX) or
    the default dynamic profile. ``calib_data`` (a dataset path) or an existing ``calib_cache``
    selects the legacy entropy calibrator (FP32 ONNX, TensorRT <= 10); ``calib_batch`` is its batch
    for a dynamic-batch ONNX (a static ONNX calibrates with its own batch). ``device`` is the CUDA
    device the engine is built on (made current for the build).
    """

    precision: str = "fp16"
    profile: BatchProfile | None = None
    workspace_mib: int = DEFAULT_WORKSPACE_MIB
    dla_core: int | None = None
    timing_cache: Path | None = None
    fp16_mode: str = "auto"
    calib_data: Any = None
    calib_cache: Path | None = None
    calib_size: int = 300
    calib_batch: int = 8
    device: int = 0

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "fp16", "int8"):
            raise ExportError(f"unknown precision {self.precision!r} (fp32, fp16 or int8)")
        if self.fp16_mode not in FP16_MODES:
            raise ExportError(f"fp16_mode must be one of {FP16_MODES}, not {self.fp16_mode!r}")
        for name in ("workspace_mib", "calib_size", "calib_batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ExportError(f"{name} must be a whole number >= 1, got {value!r}")
        if isinstance(self.device, bool) or not isinstance(self.device, int) or self.device < 0:
            raise ExportError(f"device must be a CUDA device index >= 0, got {self.device!r}")
        if self.dla_core is not None:
            if isinstance(self.dla_core, bool) or not isinstance(self.dla_core, int) or self.dla_core < 0:
                raise ExportError(f"dla_core must be a DLA core index >= 0, got {self.dla_core!r}")
            if self.profile is not None and not self.profile.static:
                raise ExportError("DLA needs static shapes: use --batch N (min = opt = max) with a DLA core")
        # paths given as str are kept as Path (frozen: set through object.__setattr__)
        for name in ("timing_cache", "calib_cache"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))


def trtexec_command(
    onnx: str | os.PathLike,
    engine: str | os.PathLike,
    spec: EngineBuildSpec,
    img_size: int,
    trt_version: str = "10.3",
    input_name: str = "input",
    onnx_kind: str | None = None,
    trtexec: str = "trtexec",
) -> list[str]:
    """The ``trtexec`` command equivalent to :func:`build_engine` with ``spec`` on this TensorRT version.

    Same plan (:func:`plan_build`): ``--stronglyTyped`` on 10.x for FP16/Q-DQ ONNX, ``--fp16`` /
    ``--int8`` on 8.x (and 10.x weak typing), nothing on 11.x. ``--memPoolSize=workspace:<MiB>``
    works from 8.4 on (MiB is the default unit on 8.x and 10.x). ``spec.profile=None`` means a
    static ONNX (no shape options); ``spec.calib_cache`` becomes ``--calib`` (FP32 ONNX + INT8).
    """
    kind = onnx_kind or {"fp32": "fp32", "fp16": "fp16", "int8": "qdq"}[spec.precision]
    if spec.calib_cache is not None:
        kind = "fp32"
    plan = plan_build(
        trt_version, spec.precision, kind, spec.dla_core, spec.fp16_mode, calibrator=spec.calib_cache is not None
    )
    cmd = [trtexec, f"--onnx={onnx}", f"--saveEngine={engine}"]
    if spec.profile is not None:
        mn, op, mx = spec.profile.shapes(img_size)
        cmd += [
            f"--minShapes={input_name}:{_dims(mn)}",
            f"--optShapes={input_name}:{_dims(op)}",
            f"--maxShapes={input_name}:{_dims(mx)}",
        ]
    cmd.append(f"--memPoolSize=workspace:{int(spec.workspace_mib)}")
    if plan.strongly_typed and plan.trt_major < 11:
        cmd.append("--stronglyTyped")
    if "FP16" in plan.builder_flags:
        cmd.append("--fp16")
    if "INT8" in plan.builder_flags:
        cmd.append("--int8")
    if spec.calib_cache is not None:
        cmd.append(f"--calib={spec.calib_cache}")
    if spec.timing_cache is not None:
        cmd.append(f"--timingCacheFile={spec.timing_cache}")
    if spec.dla_core is not None:
        cmd += [f"--useDLACore={int(spec.dla_core)}", "--allowGPUFallback"]
    return cmd


# ---------------------------------------------------------------------------------------------
# the build (needs tensorrt)
# ---------------------------------------------------------------------------------------------


@dataclass
class EngineBuild:
    """A built engine: its path, sidecar path and the sidecar contents."""

    engine: Path
    sidecar: Path
    info: dict[str, Any]
    timing_cache: Path | None = None
    calib_cache: Path | None = None
    log: list[str] = field(default_factory=list)


def _parser_errors(parser: Any) -> list[str]:
    out = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        where = f"node {err.node()}"
        node_name = getattr(err, "node_name", None)  # TensorRT >= 10 adds node name/operator
        if callable(node_name) and node_name():
            where += f" {node_name()!r}"
        node_op = getattr(err, "node_operator", None)
        if callable(node_op) and node_op():
            where += f" ({node_op()})"
        out.append(f"{err.code()}: {err.desc()} [{where}]")
    return out


def _attach_timing_cache(trt: Any, config: Any, cache_path: Path | None, log: list[str]) -> None:
    """Give the builder the timing cache at ``cache_path`` (or an empty one), checked.

    ``IBuilderConfig.set_timing_cache(cache, ignore_mismatch)`` returns False when it refuses a cache
    (one written by another TensorRT release or GPU, or a damaged file), and ``create_timing_cache``
    may return None for a blob it cannot read (TensorRT Python API, IBuilderConfig:
    https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Core/BuilderConfig.html).
    A refused cache is replaced by a fresh one, with a warning, and the build goes on; the fresh
    cache overwrites the old file after the build.
    """
    blob = cache_path.read_bytes() if cache_path is not None and cache_path.exists() else b""
    cache = config.create_timing_cache(blob)
    if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
        return
    if not blob:
        raise ExportError(f"TensorRT {trt.__version__} refused a new, empty timing cache")
    msg = (
        f"TensorRT {trt.__version__} refused the timing cache {cache_path} (another TensorRT, GPU or a damaged "
        "file): building with a fresh cache, which replaces it"
    )
    warnings.warn(msg, RuntimeWarning, stacklevel=3)
    log.append(msg)
    cache = config.create_timing_cache(b"")
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        raise ExportError(f"TensorRT {trt.__version__} refused a new, empty timing cache")


def build_engine(
    onnx_path: str | os.PathLike,
    engine_path: str | os.PathLike,
    spec: EngineBuildSpec | None = None,
    verbose: bool = False,
) -> EngineBuild:
    """Build a serialized engine from an edgefer ONNX with ``spec`` and write it atomically with its sidecar.

    The ONNX kind (FP32 / FP16 / Q-DQ) comes from its metadata; :func:`plan_build` decides the
    flags for the installed TensorRT. ``spec.profile`` is required for a dynamic-batch ONNX (default
    (1, 4, 32)) and must be static for DLA. ``spec.calib_data`` (a dataset path) or an existing
    ``spec.calib_cache`` selects the legacy entropy calibrator (FP32 ONNX, TensorRT <= 10); the cache
    is written after calibration and reused on the next build. CUDA device ``spec.device`` is made
    current for the whole build (TensorRT builds on the calling thread's current device).
    """
    from edgefer.backends.cuda_mem import device_current

    try:
        import tensorrt as trt
    except ImportError as exc:
        raise MissingDependencyError("tensorrt", "trt", "building TensorRT engines") from exc
    spec = spec if spec is not None else EngineBuildSpec()
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if not onnx_path.exists():
        raise ExportError(f"ONNX model {onnx_path} does not exist")
    with device_current(spec.device):
        return _build(trt, onnx_path, engine_path, spec, verbose)


def _build(trt: Any, onnx_path: Path, engine_path: Path, spec: EngineBuildSpec, verbose: bool) -> EngineBuild:
    """:func:`build_engine` once its device is current."""
    from edgefer.metadata import read_metadata

    meta = read_metadata(onnx_path)
    dla_core, calib_cache = spec.dla_core, spec.calib_cache
    use_calib = spec.calib_data is not None or (calib_cache is not None and calib_cache.exists())
    plan = plan_build(trt.__version__, spec.precision, onnx_kind_of(meta), dla_core, spec.fp16_mode, use_calib)
    logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    net_flags = 0
    for name in plan.network_flags:
        net_flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(net_flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = _parser_errors(parser)
        raise ExportError(
            f"TensorRT {trt.__version__} cannot parse {onnx_path.name} ({len(errors)} error(s)):\n  "
            + "\n  ".join(errors or ["no error reported; rerun with verbose=True"])
        )
    if network.num_inputs != 1:
        raise ExportError(f"{onnx_path.name} has {network.num_inputs} inputs; edgefer models have one")
    inp = network.get_input(0)
    dynamic = int(inp.shape[0]) < 0
    profile = spec.profile
    if dynamic and profile is None:
        profile = batch_profile(dynamic=True, max_batch=meta.extra.get("max_batch"))
    if not dynamic:
        static_b = int(inp.shape[0])
        if profile is not None and not (profile.static and profile.min == static_b):
            raise ExportError(
                f"{onnx_path.name} has a static batch of {static_b}; export it with --dynamic for a range"
            )
        profile = None
    if dla_core is not None and profile is not None and not profile.static:
        raise ExportError("DLA needs static shapes: use --batch N (min = opt = max) with a DLA core")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(spec.workspace_mib) << 20)
    for name in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    if profile is not None:
        opt_profile = builder.create_optimization_profile()
        opt_profile.set_shape(inp.name, *profile.shapes(meta.preprocessing.input_shape))
        config.add_optimization_profile(opt_profile)
    if dla_core is not None:
        if builder.num_DLA_cores <= dla_core:
            raise ExportError(f"DLA core {dla_core} requested but this device has {builder.num_DLA_cores} DLA core(s)")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(dla_core)

    calibrator = None
    log: list[str] = []
    calib_path = calib_cache if calib_cache is not None else engine_path.with_suffix(".calib.cache")
    if plan.calibrator:
        from edgefer.export.calibrator import make_entropy_calibrator

        # the input's own shape decides the calibration batch (a static batch wins over calib_batch)
        input_shape = tuple(int(d) for d in inp.shape)
        calibrator = make_entropy_calibrator(
            trt,
            meta,
            spec.calib_data,
            calib_path,
            spec.calib_size,
            spec.calib_batch,
            input_shape,
            sha256_file(onnx_path),  # the cache is keyed to this ONNX (TensorRT matches it by tensor names only)
            spec.device,
        )
        log.append(
            f"INT8 calibration cache {calib_path.name} "
            + ("reused (same ONNX and calibration images)" if calibrator.reused else "made by calibrating")
        )
        config.int8_calibrator = calibrator
        if dynamic:
            cal_profile = builder.create_optimization_profile()
            shape = (calibrator.batch, *meta.preprocessing.input_shape)
            cal_profile.set_shape(inp.name, shape, shape, shape)
            config.set_calibration_profile(cal_profile)

    cache_path = spec.timing_cache
    _attach_timing_cache(trt, config, cache_path, log)

    try:
        serialized = builder.build_serialized_network(network, config)
    finally:
        if calibrator is not None:
            calibrator.close()
    if serialized is None:
        raise ExportError(f"TensorRT {trt.__version__} failed to build an engine from {onnx_path.name} (see log above)")
    with atomic_path(engine_path, suffix=engine_path.suffix) as tmp:
        tmp.write_bytes(bytes(serialized))
    if cache_path is not None:
        with atomic_path(cache_path) as tmp:
            tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    gpu_name, cc = gpu_info(spec.device)
    info = make_sidecar(
        meta,
        trt.__version__,
        gpu_name,
        cc,
        plan,
        profile,
        meta.preprocessing.input_shape,
        onnx_path,
        spec.workspace_mib,
        input_name=inp.name,
        output_name=network.get_output(0).name,
        engine_sha256=sha256_file(engine_path),
    )
    sc = write_sidecar(engine_path, info)
    return EngineBuild(
        engine=engine_path,
        sidecar=sc,
        info=info,
        timing_cache=cache_path,
        calib_cache=calib_path if plan.calibrator else None,
        log=log,
    )
