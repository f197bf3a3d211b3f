"""The TensorRT engine sidecar: writing it, reading it, and the "was this engine built here?" check.

A serialized engine runs only on the TensorRT release and the GPU that built it, and says nothing
about itself; the JSON sidecar beside it (``model.engine.json``, :func:`edgefer.metadata.sidecar_path`)
records what it was built with (TensorRT version, GPU, precision, build plan, shapes, source ONNX
hash) and the edgefer metadata (docs/architecture.md invariant 2). The builder
(:mod:`edgefer.export.tensorrt`) writes it, the backend (:mod:`edgefer.backends.tensorrt`) checks it
before deserialising, and :func:`edgefer.metadata.read_metadata` reads the metadata from it. This
module is the one place for all three, with the one TensorRT version parser.

Torch-free and free of builder imports (docs/architecture.md, layer rules): it runs on the device.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any, Protocol

from edgefer.errors import BackendError, EngineMismatchError, ExportError, MissingDependencyError
from edgefer.metadata import ModelMetadata, _load_json, sidecar_path
from edgefer.utils.compat import utc_now_iso
from edgefer.utils.io import sha256_file, write_json

SIDECAR_SCHEMA = 1


class _Plan(Protocol):
    """What the sidecar needs of a build plan (:class:`edgefer.export.tensorrt.BuildPlan`)."""

    precision: str

    def to_dict(self) -> dict[str, Any]: ...


class _Profile(Protocol):
    """What the sidecar needs of a batch profile (:class:`edgefer.export.tensorrt.BatchProfile`)."""

    def shapes(self, img_size: int | tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]: ...


def parse_trt_version(version: str) -> tuple[int, int, int]:
    """``"10.3.0.26"`` -> ``(10, 3, 0)``; ``"8.6"`` -> ``(8, 6, 0)``.

    The one TensorRT version parser (build plans, device profiles, the sidecar check, the
    backend's I/O API choice); a string without a number is an :class:`ExportError`.
    """
    nums = re.findall(r"\d+", str(version))
    if not nums:
        raise ExportError(f"cannot parse TensorRT version {version!r}")
    parts = [int(n) for n in nums[:3]] + [0, 0]
    return parts[0], parts[1], parts[2]


def trt_version_fields(version: str) -> tuple[int, int, int, int]:
    """``"10.3.0.26"`` -> ``(10, 3, 0, 26)``; missing fields are 0 (``"8.6"`` -> ``(8, 6, 0, 0)``).

    All four fields identify the TensorRT that can deserialise a plan: the plan header stores
    major, minor, patch and build (``trtexec --getPlanVersionOnly`` prints bytes 24-27 of it,
    NVIDIA/TensorRT samples/common/sampleEngines.cpp ``printPlanVersion``, 10.x), and the runtime
    refuses a plan from another build ("The engine plan file is not compatible with this version of
    TensorRT, expecting library version 8.5.1.7 got 8.5.3.1, please rebuild").
    """
    nums = re.findall(r"\d+", str(version))
    if not nums:
        raise ExportError(f"cannot parse TensorRT version {version!r}")
    parts = [int(n) for n in nums[:4]] + [0, 0, 0]
    return parts[0], parts[1], parts[2], parts[3]


#: First TensorRT 11 release with DLA again: "DLA was unavailable in TensorRT 11.0 through 11.3, and
#: TensorRT 11.4.0 supported DLA only on Windows on ARM"; 11.4.1 restores it on Jetson AGX Orin
#: (JetPack 7.2.2+), strongly typed (TensorRT 11.4.1 release notes,
#: https://docs.nvidia.com/deeplearning/tensorrt/latest/getting-started/release-notes-11/11.4.1.html).
DLA_MIN_TRT11 = (11, 4, 1)


def dla_unsupported_reason(trt_version: str) -> str | None:
    """Why this TensorRT cannot build or run a DLA engine, or None when it can (TensorRT 11.0-11.4.0).

    One rule for the builder (:func:`edgefer.export.tensorrt.plan_build`) and the backend, which
    raise their own error type with this text.
    """
    version = parse_trt_version(trt_version)
    if version[0] == 11 and version < DLA_MIN_TRT11:
        return (
            f"TensorRT {trt_version} has no DLA support on Jetson (DLA returned in TensorRT 11.4.1, JetPack 7.2.2+): "
            "use TensorRT 11.4.1 or newer, a TensorRT 10.x release, or drop the DLA core"
        )
    return None


def make_sidecar(
    metadata: ModelMetadata,
    trt_version: str,
    gpu_name: str | None,
    compute_capability: str | None,
    plan: _Plan,
    profile: _Profile | None,
    img_size: int | tuple[int, ...],  # the square side, or one image's shape (Preprocessing.input_shape)
    source_onnx: Path,
    workspace_mib: int,
    input_name: str = "input",
    output_name: str = "logits",
    engine_sha256: str = "",
) -> dict[str, Any]:
    """The JSON sidecar of an engine: what it was built with, for what, and from what."""
    shapes: dict[str, Any] = {"input": {"name": input_name}, "output": {"name": output_name}}
    if profile is not None:
        mn, op, mx = profile.shapes(img_size)
        shapes["input"].update(min=list(mn), opt=list(op), max=list(mx))
    meta = metadata.replace(precision=plan.precision)
    return {
        "schema": SIDECAR_SCHEMA,
        "format": "tensorrt-engine",
        "tensorrt_version": str(trt_version),
        "gpu": {"name": gpu_name, "compute_capability": compute_capability},
        "precision": plan.precision,
        "build": {**plan.to_dict(), "workspace_mib": int(workspace_mib)},
        "shapes": shapes,
        "source_onnx": {"file": source_onnx.name, "sha256": sha256_file(source_onnx)},
        "engine_sha256": engine_sha256,
        "class_names": list(meta.class_names),
        "preprocessing": meta.preprocessing.to_dict(),
        "metadata": meta.to_dict(),
        "built_at": utc_now_iso(),
    }


def _cc_str(cc: Any) -> str | None:
    if cc is None or cc == "":
        return None
    if isinstance(cc, (tuple, list)):
        return ".".join(str(int(c)) for c in cc[:2])
    return str(cc)


def _same_trt(a: str, b: str) -> bool:
    """Engines are tied to the exact TensorRT release: major.minor.patch.build (:func:`trt_version_fields`).

    The sidecar's version is ``tensorrt.__version__`` of the build (four fields on every release
    edgefer supports), so it is compared in full rather than the plan header being parsed: the
    header's layout is known only from trtexec's source, where it "may depend on the serialization
    version", while the sidecar is edgefer's own record, tied to the engine by its sha256
    (:func:`check_engine_bytes`).
    """
    return trt_version_fields(a) == trt_version_fields(b)


def check_engine_bytes(blob: bytes, sidecar: dict[str, Any], name: str) -> None:
    """Refuse engine bytes that are not the engine the sidecar describes (its ``engine_sha256``).

    Called on the very bytes that are then deserialised, so the version, GPU and shape checks of the
    sidecar are known to be about this engine: an engine rebuilt or copied over another keeps the old
    sidecar beside it, and TensorRT itself would load a plan of the right version with the wrong
    shapes or precision recorded.
    """
    recorded = sidecar.get("engine_sha256")
    if not isinstance(recorded, str) or not recorded:
        raise BackendError(
            f"the sidecar of {name} records no engine_sha256, so it cannot be tied to this engine: "
            "rebuild it with `edgefer export --target trt`"
        )
    actual = hashlib.sha256(blob).hexdigest()
    if actual != recorded.lower():
        raise BackendError(
            f"{name} does not match its sidecar (engine sha256 {actual[:12]}..., the sidecar describes "
            f"{recorded[:12]}...): the engine was rebuilt or replaced; rebuild it with `edgefer export --target trt`"
        )


def load_sidecar(path: str | os.PathLike) -> dict[str, Any]:
    """The sidecar dict of an engine (``model.engine`` or ``model.engine.json``)."""
    p = Path(path)
    sc = p if p.suffix == ".json" else sidecar_path(p)
    if not sc.exists():
        raise BackendError(
            f"{p.name} has no sidecar {sc.name}: edgefer cannot tell which TensorRT and GPU built it; "
            "rebuild it with `edgefer export --target trt`"
        )
    return _load_json(sc, "engine sidecar")


def write_sidecar(engine: str | os.PathLike, info: dict[str, Any]) -> Path:
    """Write ``info`` (from :func:`make_sidecar`) atomically as the sidecar of ``engine``."""
    return write_json(sidecar_path(engine), info)


def check_engine_compat(
    sidecar: dict[str, Any] | str | os.PathLike,
    trt_version: str | None = None,
    gpu_name: str | None = None,
    compute_capability: Any = None,
    device: int = 0,
    strict_gpu_name: bool = True,
) -> None:
    """Refuse an engine built by another TensorRT release or for another GPU.

    ``sidecar`` is the sidecar dict or the engine / sidecar path. ``trt_version``, ``gpu_name``
    and ``compute_capability`` describe the running system; when omitted they are detected
    (``tensorrt.__version__`` and :func:`gpu_info`). A compute capability mismatch always
    refuses; a different GPU model with the same compute capability refuses when
    ``strict_gpu_name`` (TensorRT only warns, but its tactics were timed on the other GPU). GPU
    fields unknown on either side are not compared.
    """
    sc = sidecar if isinstance(sidecar, dict) else load_sidecar(sidecar)
    if trt_version is None:
        try:
            import tensorrt as trt
        except ImportError as exc:
            raise MissingDependencyError("tensorrt", "trt", "TensorRT engines") from exc
        trt_version = trt.__version__
    if gpu_name is None and compute_capability is None:
        gpu_name, compute_capability = gpu_info(device)
    built_trt = str(sc.get("tensorrt_version", "unknown"))
    gpu = sc.get("gpu") if isinstance(sc.get("gpu"), dict) else {}
    built_name, built_cc = gpu.get("name"), _cc_str(gpu.get("compute_capability"))
    run_cc = _cc_str(compute_capability)
    problems = []
    if built_trt == "unknown" or not _same_trt(built_trt, trt_version):
        problems.append("trt")
    if built_cc and run_cc and built_cc != run_cc:
        problems.append("cc")
    elif strict_gpu_name and built_name and gpu_name and built_name != gpu_name:
        problems.append("name")
    if problems:
        built = f"{built_name or 'an unknown GPU'}" + (f" (sm {built_cc})" if built_cc else "")
        here = f"{gpu_name or 'an unknown GPU'}" + (f" (sm {run_cc})" if run_cc else "")
        raise EngineMismatchError(
            f"engine was built with TensorRT {built_trt} for GPU {built}; this is TensorRT {trt_version} "
            f"on {here}: rebuild with `edgefer export --target trt`"
        )


def gpu_info(device: int = 0) -> tuple[str | None, str | None]:
    """(name, compute capability "major.minor") of CUDA device ``device``, via pycuda or
    cuda-python (the packages the TensorRT backend already uses); (None, None) when neither is
    installed or no GPU answers."""
    try:
        import pycuda.driver as cuda

        cuda.init()
        dev = cuda.Device(device)
        return str(dev.name()), _cc_str(dev.compute_capability())
    except Exception:  # ImportError, or no device
        pass
    try:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart  # cuda-python < 12.6
        err, prop = cudart.cudaGetDeviceProperties(device)
        if int(err) == 0:
            name = prop.name.decode() if isinstance(prop.name, bytes) else str(prop.name)
            return name.rstrip("\x00"), f"{prop.major}.{prop.minor}"
    except Exception:
        pass
    return None, None
