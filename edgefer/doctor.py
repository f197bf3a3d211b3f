"""``edgefer doctor``: what this machine can run, and what each missing piece would enable.

The first command a user runs on a new device (a Jetson, an Intel box, a camera): the Python and
platform; every inference backend edgefer knows (the rows of :mod:`edgefer.formats`), whether it
imports, its version and what it sees (ONNX Runtime's execution providers, OpenVINO's devices,
TensorRT and the CUDA buffer libraries); the OpenCV build (GStreamer and CUDA, which camera
pipelines need); on a Jetson its L4T/JetPack release, power mode, clocks and temperatures
(:mod:`edgefer.bench.jetson`); and, for each piece that is missing, the command that brings it -- the
pip extra, or on a Jetson JetPack's own package seen through a venv made with
``--system-site-packages``.

Each probe is guarded: a backend that fails to import or to answer is a row that says why, never
a traceback, so the report is complete on a broken machine too. Device side: no torch is imported
(its presence is looked up), and the module runs on Python 3.8 (JetPack 5).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import platform
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from edgefer.extras import HINTS, MODULE_EXTRAS, TRAIN_PYTHON
from edgefer.formats import FORMATS, Format

#: what each backend's row lets the user do here
ENABLES: dict[str, str] = {
    "onnx": "run .onnx artifacts (predict, run, benchmark) and check Q/DQ INT8 numerics",
    "openvino": "run OpenVINO IR (.xml) on Intel CPU/GPU/NPU and convert ONNX to IR",
    "trt": "run TensorRT engines and build them from an ONNX (edgefer export --onnx X --target trt)",
    "torch": "train, evaluate and export checkpoints (.pt), quantization-aware training",
}


#: L4T major release -> (JetPack, the system Python its TensorRT bindings are built for, that TensorRT).
#: TensorRT ships Python bindings for JetPack's own interpreter only, so another Python cannot import it.
JETPACK: dict[str, tuple[str, str, str]] = {
    "R32": ("4.x", "3.6", "8.2"),
    "R35": ("5.1", "3.8", "8.5"),
    "R36": ("6.x", "3.10", "10.3"),
    "R38": ("7.x", "3.12", "10.x"),
}


def jetpack_facts(l4t: str, python: str | None = None) -> dict[str, Any]:
    """JetPack, its Python and TensorRT for an L4T release (``"R36.4.0"``); a note when ``python`` (this
    interpreter's ``major.minor``) is not the one JetPack's TensorRT bindings exist for. Empty if unknown."""
    known = JETPACK.get(l4t.split(".")[0])
    if known is None:
        return {}
    jetpack, system_python, trt = known
    facts: dict[str, Any] = {"jetpack": jetpack, "system_python": system_python, "jetpack_tensorrt": trt}
    here = python or "{}.{}".format(*sys.version_info[:2])
    if here != system_python:
        facts["python_note"] = (
            f"JetPack {jetpack}'s TensorRT bindings exist for its Python {system_python} only; this is Python {here}: "
            f"make the venv with /usr/bin/python3 -m venv --system-site-packages"
        )
    return facts


@dataclass
class Check:
    """One piece of the machine: whether it works here, what it is, and how to get it when it does not."""

    name: str
    ok: bool
    version: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    enables: str = ""
    fix: str = ""


@dataclass
class Diagnosis:
    """Everything ``edgefer doctor`` found; :attr:`usable` is true when at least one backend runs artifacts."""

    python: dict[str, Any]
    backends: list[Check]
    libraries: list[Check]
    jetson: dict[str, Any] | None
    gpus: list[str]

    @property
    def usable(self) -> bool:
        return any(c.ok for c in self.backends if c.name != "torch")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["usable"] = self.usable
        return out


def _how_to_get(module: str) -> str:
    extra = MODULE_EXTRAS.get(module)
    how = f"pip install 'edgefer[{extra}]'" if extra else f"pip install {module}"
    return how + HINTS.get(module, "")


def _dist_version(*dists: str) -> str | None:
    for dist in dists:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _probe_onnxruntime(mod: Any) -> dict[str, Any]:
    return {"providers": list(mod.get_available_providers())}


def _probe_openvino(mod: Any) -> dict[str, Any]:
    core = mod.Core()
    return {"devices": list(core.available_devices)}


def _probe_tensorrt(mod: Any) -> dict[str, Any]:
    from edgefer.backends.cuda_mem import installed_allocators

    allocators = installed_allocators()
    detail: dict[str, Any] = {"cuda_buffers": {k: v for k, v in allocators.items()}}
    if not any(allocators.values()):
        detail["note"] = "no CUDA buffer library: install pycuda (Jetson habit) or cuda-python to run engines"
    return detail


#: per backend row: how to ask the imported module what it sees (devices, providers)
PROBES: dict[str, Callable[[Any], dict[str, Any]]] = {
    "onnx": _probe_onnxruntime,
    "openvino": _probe_openvino,
    "trt": _probe_tensorrt,
}


def _module_version(mod: Any, dist: str) -> str | None:
    version = getattr(mod, "__version__", None)
    if version is None and hasattr(mod, "get_version"):
        version = mod.get_version()
    return str(version) if version is not None else _dist_version(dist)


def check_backend(fmt: Format) -> Check:
    """Import ``fmt``'s engine package and ask it what it sees; torch is looked up, not imported."""
    enables = ENABLES.get(fmt.name, f"run {'/'.join(fmt.suffixes)} artifacts")
    if fmt.name == "torch":
        return _check_torch(fmt, enables)
    try:
        mod = importlib.import_module(fmt.runtime)
    except Exception as exc:
        missing = isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] == fmt.runtime
        why = "not installed" if missing else f"import failed: {type(exc).__name__}: {str(exc)[:200]}"
        return Check(fmt.runtime, False, detail={"error": why}, enables=enables, fix=_how_to_get(fmt.runtime))
    check = Check(fmt.runtime, True, version=_module_version(mod, fmt.runtime), enables=enables)
    probe = PROBES.get(fmt.name)
    if probe is not None:
        try:
            check.detail = probe(mod)
        except Exception as exc:  # imports but cannot answer: it will not run artifacts either
            check.ok = False
            check.detail = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    return check


def _check_torch(fmt: Format, enables: str) -> Check:
    found = fmt.installed()
    old = sys.version_info[:2] < TRAIN_PYTHON
    if old:
        need = ".".join(map(str, TRAIN_PYTHON))
        fix = f"the training side needs Python >= {need}: train elsewhere and bring the ONNX/IR/bundle here"
    else:
        fix = _how_to_get("torch")
    detail: dict[str, Any] = {} if found else {"error": "not installed"}
    if found and old:
        detail["note"] = (
            f"torch is installed, but edgefer's training side needs Python >= {'.'.join(map(str, TRAIN_PYTHON))}"
        )
    return Check("torch", found and not old, _dist_version("torch"), detail, enables, "" if found and not old else fix)


def _opencv_build(mod: Any) -> dict[str, Any]:
    info = mod.getBuildInformation()

    def says_yes(label: str) -> bool:
        m = re.search(rf"^\s*{label}:\s*(\S+)", info, re.MULTILINE)
        return bool(m) and m.group(1).upper().startswith("YES")

    cuda = says_yes("NVIDIA CUDA")
    try:
        cuda_devices = int(mod.cuda.getCudaEnabledDeviceCount()) if cuda else 0
    except Exception:
        cuda_devices = 0
    return {"gstreamer": says_yes("GStreamer"), "cuda": cuda, "cuda_devices": cuda_devices, "file": mod.__file__}


def check_opencv() -> Check:
    """OpenCV: needed by predict/run/benchmark (decode, detect, draw); GStreamer for camera pipelines."""
    enables = "decode images and video, detect faces (predict, run, benchmark end-to-end)"
    try:
        cv2 = importlib.import_module("cv2")
    except Exception as exc:
        why = "not installed" if isinstance(exc, ModuleNotFoundError) else f"import failed: {exc}"
        return Check("opencv", False, detail={"error": why}, enables=enables, fix=_how_to_get("cv2"))
    check = Check("opencv", True, version=str(cv2.__version__), enables=enables)
    try:
        check.detail = _opencv_build(cv2)
    except Exception as exc:
        check.detail = {"error": f"build information unavailable: {exc}"}
    if check.detail.get("gstreamer") is False:
        check.fix = (
            "camera pipelines (nvarguscamerasrc, RTSP via GStreamer) need an OpenCV built with GStreamer: "
            "on a Jetson use JetPack's (python3 -m venv --system-site-packages)"
        )
    return check


def check_cuda_buffers() -> list[Check]:
    """pycuda and cuda-python: the TensorRT backend needs one of them for device buffers (looked up, not imported)."""
    from edgefer.backends.cuda_mem import installed_allocators

    found = installed_allocators()
    enables = "device buffers for the TensorRT backend"
    rows = (
        ("pycuda", ("pycuda",), "builds against JetPack's CUDA: pip install pycuda"),
        ("cuda-python", ("cuda-python", "cuda-bindings"), "wheels for x86 and Jetson: pip install cuda-python"),
    )
    return [
        Check(
            name, found[name], _dist_version(*dists) if found[name] else None, {}, enables, "" if found[name] else how
        )
        for name, dists, how in rows
    ]


def python_facts() -> dict[str, Any]:
    """The interpreter and platform, and whether it is a venv that sees the system's packages (JetPack's)."""
    in_venv = sys.prefix != getattr(sys, "base_prefix", sys.prefix)
    system_site = None
    cfg = Path(sys.prefix) / "pyvenv.cfg"
    if in_venv and cfg.is_file():
        m = re.search(r"include-system-site-packages\s*=\s*(\w+)", cfg.read_text(errors="replace"))
        system_site = bool(m) and m.group(1).lower() == "true"
    return {
        "version": platform.python_version(),
        "executable": sys.executable,
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "venv": in_venv,
        "system_site_packages": system_site,
        "training_side": sys.version_info[:2] >= TRAIN_PYTHON,
        "edgefer": _dist_version("edgefer"),
        "cores": os.cpu_count(),
    }


def diagnose(jetson: Callable[[], dict[str, Any] | None] | None = None) -> Diagnosis:
    """Probe this machine (each probe guarded; takes a few seconds while the backends import)."""
    from edgefer.bench.jetson import jetson_info
    from edgefer.bench.system import gpus

    try:
        jetson_facts = (jetson or jetson_info)()
        if jetson_facts is not None and str(jetson_facts.get("l4t", "")).startswith("R"):
            jetson_facts.update(jetpack_facts(str(jetson_facts["l4t"])))
    except Exception as exc:
        jetson_facts = {"error": f"unavailable: {exc}"}
    try:
        gpu_names = gpus()
    except Exception:
        gpu_names = []
    return Diagnosis(
        python=python_facts(),
        backends=[check_backend(f) for f in FORMATS],
        libraries=[check_opencv(), *check_cuda_buffers()],
        jetson=jetson_facts,
        gpus=gpu_names,
    )


def _detail_text(detail: dict[str, Any]) -> str:
    parts = []
    for key, value in detail.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={'yes' if v is True else 'no' if v is False else v}" for k, v in value.items())
        elif isinstance(value, list):
            value = ", ".join(map(str, value)) or "none"
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        parts.append(f"{key}: {value}")
    return "; ".join(parts)


def render_text(d: Diagnosis) -> str:
    """The report as plain lines: a status mark per piece, what it enables, and how to get what is missing."""
    py = d.python
    lines = [
        f"Python {py['version']} ({py['implementation']}) at {py['executable']}",
        f"Platform: {py['platform']} ({py['machine']}), {py['cores']} cores",
    ]
    if py["venv"]:
        seen = {True: "sees", False: "does not see", None: "may see"}[py["system_site_packages"]]
        lines.append(f"venv: yes; it {seen} the system's site-packages (JetPack's TensorRT and OpenCV live there)")
    if not py["training_side"]:
        need = ".".join(map(str, TRAIN_PYTHON))
        lines.append(f"Training side: needs Python >= {need}; this interpreter runs the device side only")
    lines.append("GPUs: " + (", ".join(d.gpus) if d.gpus else "none found"))
    for title, checks in (("Backends", d.backends), ("Libraries", d.libraries)):
        lines.append(f"{title}:")
        for c in checks:
            mark = "ok  " if c.ok else "--  "
            version = f" {c.version}" if c.version else ""
            detail = _detail_text(c.detail)
            lines.append(f"  {mark}{c.name}{version}" + (f" ({detail})" if detail else ""))
            lines.append(f"        enables: {c.enables}")
            if c.fix:
                lines.append(f"        to get it: {c.fix}")
    if d.jetson is not None:
        facts = dict(d.jetson)
        note = facts.pop("python_note", None)
        lines.append("Jetson: " + _detail_text(facts))
        if note:
            lines.append(f"  note: {note}")
    verdict = (
        "At least one backend runs artifacts here."
        if d.usable
        else "No backend runs artifacts here: install one (pip install 'edgefer[runtime]')."
    )
    lines.append(verdict)
    return "\n".join(lines)
