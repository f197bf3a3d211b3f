"""Describe the machine a benchmark ran on, and measure process memory — without psutil or torch.

Latency numbers mean nothing without the CPU, core count, GPU and library versions next to them,
so every report embeds :func:`machine_info`. Memory comes from ``/proc/self/status`` (Linux,
including Jetson); elsewhere it is reported as unknown rather than guessed.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

#: distributions whose versions are recorded when installed (never imported to find out).
_PACKAGES = (
    "edgefer",
    "numpy",
    "opencv-python-headless",
    "opencv-python",
    "onnx",
    "onnxruntime",
    "onnxruntime-gpu",
    "openvino",
    "nncf",
    "tensorrt",
    "pycuda",
    "cuda-python",
    "torch",
    "torchvision",
)


def cpu_model() -> str:
    """The CPU's name from /proc/cpuinfo (x86 "model name", Arm "Model"/"Hardware"), else what platform says."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                return value.strip()
    return platform.processor() or platform.machine()


def _cpu_flags() -> list[str]:
    interesting = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16", "asimd")
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("flags", "Features"):
                have = set(value.split())
                return [f for f in interesting if f in have]
    return []


def gpus() -> list[str]:
    """GPU names from nvidia-smi, or the Jetson model file; empty when there is none."""
    smi = shutil.which("nvidia-smi")
    if smi:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            res = subprocess.run(
                [smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            if res.returncode == 0:
                return [line.strip() for line in res.stdout.splitlines() if line.strip()]
    model = Path("/proc/device-tree/model")
    if model.exists():
        with contextlib.suppress(OSError):
            text = model.read_text(errors="replace").strip("\x00 \n")
            if "jetson" in text.lower() or "orin" in text.lower():
                return [text]
    return []


def package_versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for dist in _PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[dist] = importlib.metadata.version(dist)
    return out


def machine_info() -> dict[str, Any]:
    """CPU model, cores, flags, memory, GPU(s), OS, Python and backend package versions.

    On a Jetson also ``jetson``: L4T version, power mode, clocks, temperatures (see
    :mod:`edgefer.bench.jetson`); elsewhere that key is absent.
    """
    from edgefer.bench.jetson import jetson_info

    mem_total = None
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total = round(int(line.split()[1]) / 1024 / 1024, 1)
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count()
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_flags": _cpu_flags(),
        "cores_logical": os.cpu_count(),
        "cores_usable": usable,
        "memory_gb": mem_total,
        "gpus": gpus(),
        "os": platform.platform(),
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "packages": package_versions(),
        "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES") if k in os.environ},
    }
    jetson = jetson_info()
    if jetson is not None:
        info["jetson"] = jetson
    return info


def _status_kb(field: str) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def rss_mb() -> float | None:
    """Current resident set size of this process in MiB (None where /proc is missing)."""
    kb = _status_kb("VmRSS")
    return None if kb is None else kb / 1024


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) so the next peak is this model's own.

    Writing ``5`` to ``/proc/self/clear_refs`` does this on Linux >= 4.0. Returns False when
    not possible (then the peak is the process's lifetime peak, reported as such).
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float | None:
    """Peak resident set size (VmHWM) in MiB since the last :func:`reset_peak_rss`."""
    kb = _status_kb("VmHWM")
    return None if kb is None else kb / 1024
