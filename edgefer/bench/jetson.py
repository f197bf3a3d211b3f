"""Jetson facts for a benchmark report: JetPack/L4T, power mode, clocks, temperatures, jtop.

A Jetson's latency depends on its power mode (``nvpmodel``), on whether ``jetson_clocks`` pinned
the clocks and on how hot it is; a report without them cannot be compared with another one. Every
probe here is optional and time-limited, never raises, and says ``"unavailable: why"`` when it
cannot answer. Files are read under ``root`` and commands run through ``runner`` so that tests can
give a fake ``/etc`` and ``/sys`` tree and fake ``nvpmodel`` output. Not a Jetson:
:func:`jetson_info` returns None and the report has no Jetson section at all.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable, List, Tuple

#: ``runner(argv) -> (returncode, stdout + stderr)``; raises OSError/SubprocessError on failure.
Runner = Callable[[List[str]], Tuple[int, str]]

#: seconds a probe command may take before it is given up on.
PROBE_TIMEOUT_S = 2.0


def run_command(argv: list[str]) -> tuple[int, str]:
    """Run ``argv`` with a :data:`PROBE_TIMEOUT_S` limit; ``(127, ...)`` when it is not installed."""
    exe = shutil.which(argv[0])
    if exe is None:
        return 127, f"{argv[0]} not found"
    res = subprocess.run([exe, *argv[1:]], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=False)
    return res.returncode, (res.stdout or "") + (res.stderr or "")


def _read(root: Path, rel: str) -> str | None:
    with contextlib.suppress(OSError):
        return (root / rel).read_text(encoding="utf-8", errors="replace")
    return None


def _call(runner: Runner, argv: list[str]) -> tuple[int | None, str]:
    """``(returncode, output)``; ``(None, why)`` when the command could not run or timed out."""
    try:
        return runner(argv)
    except subprocess.TimeoutExpired:
        return None, f"{argv[0]} timed out after {PROBE_TIMEOUT_S:g} s"
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"{argv[0]} failed: {exc}"


def is_jetson(root: Path = Path("/")) -> bool:
    """True on an NVIDIA Jetson (L4T release file, or a Jetson/Tegra device-tree model)."""
    if (root / "etc/nv_tegra_release").exists():
        return True
    model = (_read(root, "proc/device-tree/model") or "").lower()
    return any(k in model for k in ("jetson", "orin", "tegra"))


def l4t_version(root: Path = Path("/"), runner: Runner = run_command) -> str:
    """``R36.4.0`` style L4T release from ``/etc/nv_tegra_release``, else the nvidia-l4t-core package."""
    text = _read(root, "etc/nv_tegra_release")
    if text:
        m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
        if m:
            return f"R{m.group(1)}.{m.group(2)}"
    rc, out = _call(runner, ["dpkg-query", "--showformat=${Version}", "--show", "nvidia-l4t-core"])
    if rc == 0 and out.strip():
        return out.strip().splitlines()[0]
    why = "no /etc/nv_tegra_release" if text is None else "unrecognised /etc/nv_tegra_release"
    return f"unavailable: {why}, and no nvidia-l4t-core package ({out.strip()[:100] or rc})"


def power_mode(runner: Runner = run_command) -> str:
    """The ``nvpmodel -q`` mode, e.g. ``MAXN (0)`` or ``15W (1)``."""
    rc, out = _call(runner, ["nvpmodel", "-q"])
    if rc != 0:
        return f"unavailable: {out.strip()[:150] or f'nvpmodel exited {rc}'}"
    name = re.search(r"NV Power Mode:\s*(\S.*)", out)
    if name is None:
        return f"unavailable: unrecognised nvpmodel output {out.strip()[:100]!r}"
    after = out[name.end() :].split()
    mode_id = after[0] if after and after[0].isdigit() else None
    return name.group(1).strip() + (f" ({mode_id})" if mode_id is not None else "")


def clocks_locked(runner: Runner = run_command) -> str:
    """``locked`` when ``jetson_clocks --show`` reports every CPU at its max, ``not locked``, or ``unknown``.

    ``jetson_clocks --show`` needs root; refused (or absent), the answer is ``unknown: why``.
    """
    rc, out = _call(runner, ["jetson_clocks", "--show"])
    low = out.lower()
    if rc != 0 or "root" in low or "permission" in low:
        return f"unknown: {out.strip().splitlines()[0][:150] if out.strip() else f'jetson_clocks exited {rc}'}"
    cpus = re.findall(r"MinFreq=(\d+)\s+MaxFreq=(\d+)\s+CurrentFreq=(\d+)", out)
    if not cpus:
        return f"unknown: unrecognised jetson_clocks output {out.strip()[:100]!r}"
    return "locked" if all(lo == hi == cur for lo, hi, cur in cpus) else "not locked"


def temperatures(root: Path = Path("/")) -> dict[str, float] | str:
    """Thermal zones in °C ({type: temp}) from ``/sys/devices/virtual/thermal``; a reason when none."""
    base = root / "sys/devices/virtual/thermal"
    temps: dict[str, float] = {}
    for zone in sorted(base.glob("thermal_zone*")):
        kind, value = _read(zone, "type"), _read(zone, "temp")
        with contextlib.suppress(TypeError, ValueError):
            temps[(kind or zone.name).strip()] = round(int(str(value).strip()) / 1000, 1)
    return temps or f"unavailable: no readable thermal zone under {base}"


def jtop_stats(timeout_s: float = PROBE_TIMEOUT_S) -> dict[str, Any] | str:
    """What jetson-stats' ``jtop`` reports (power mode, jetson_clocks, temperatures), when it imports."""
    try:
        from jtop import jtop  # jetson-stats: optional, talks to its own service
    except Exception as exc:
        return f"unavailable: jtop does not import ({type(exc).__name__})"
    try:
        with jtop(interval=0.5) as jetson:
            if not jetson.ok(timeout=timeout_s):
                return "unavailable: jtop service did not answer"
            stats = dict(jetson.stats)
    except Exception as exc:
        return f"unavailable: jtop failed ({type(exc).__name__}: {str(exc)[:100]})"
    keep = ("nvp model", "jetson_clocks", "uptime")
    out = {k: str(v) for k, v in stats.items() if k in keep or k.lower().startswith("temp")}
    return out or {k: str(v) for k, v in list(stats.items())[:20]}


def jetson_info(
    root: Path = Path("/"), runner: Runner = run_command, jtop: Callable[[], Any] | None = jtop_stats
) -> dict[str, Any] | None:
    """The Jetson facts of this machine, or None when it is not a Jetson. Never raises."""
    try:
        if not is_jetson(root):
            return None
        model = (_read(root, "proc/device-tree/model") or "").strip("\x00 \n") or "unavailable: no device-tree model"
        info: dict[str, Any] = {
            "model": model,
            "l4t": l4t_version(root, runner),
            "power_mode": power_mode(runner),
            "clocks": clocks_locked(runner),
            "temperatures_c": temperatures(root),
        }
        if jtop is not None:
            info["jtop"] = jtop()
        return info
    except Exception as exc:  # a probe must never cost the benchmark
        return {"error": f"unavailable: {type(exc).__name__}: {str(exc)[:150]}"}
