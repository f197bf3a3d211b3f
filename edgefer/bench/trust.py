"""Whether a benchmark's latency numbers can be trusted, said in the report instead of left to guess.

Users of trtexec and benchmark_app ask why their latency moves between runs; the usual causes are a
noisy neighbour on the machine, clocks that scale (a Jetson without ``jetson_clocks``) and thermal
throttling. The benchmark records the machine's conditions before and after the run
(:func:`snapshot`: the load average, and on a Jetson the clocks and thermal zones) and
:func:`trust_warnings` turns what it sees into one line per problem:

* a latency row whose coefficient of variation (std / mean of the timed calls) is above
  :data:`CV_WARN` -- 10 %, the threshold at which trtexec warns that its numbers are unstable;
* a machine that was busy: a 1-minute load average above the usable cores, before or after;
* on a Jetson: clocks not locked, or a thermal zone that warmed by more than :data:`TEMP_RISE_C`.

Device side: numpy-free, torch-free, Python 3.8.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

#: coefficient of variation above which a latency row is flagged (trtexec's threshold)
CV_WARN = 0.10
#: a thermal zone that warmed by more than this during the run may have throttled
TEMP_RISE_C = 5.0


def load_average() -> list[float] | None:
    """The 1, 5 and 15-minute load averages, or None where the OS has none (Windows)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def snapshot(jetson: dict[str, Any] | None = None, root: Path = Path("/")) -> dict[str, Any]:
    """The machine's conditions now: load average; on a Jetson (``jetson`` = its facts) the temperatures."""
    out: dict[str, Any] = {"load_avg": load_average()}
    if jetson is not None:
        from edgefer.bench.jetson import temperatures

        temps = temperatures(root)
        out["temperatures_c"] = temps if isinstance(temps, dict) else None
    return out


def _rows_cv(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    for row in rows:
        for batch, lat in (row.get("latency") or {}).items():
            model = (lat or {}).get("model") or {}
            cv = model.get("cv")
            if cv is not None and cv > CV_WARN:
                out.append(
                    f"{row['label']} batch {batch}: latency varied by {cv:.0%} (coefficient of variation, "
                    f"above {CV_WARN:.0%}): p50/p99 of this row are not stable; quiet the machine or time longer "
                    "(--seconds)"
                )
    return out


def trust_warnings(
    rows: list[dict[str, Any]], machine: dict[str, Any], before: dict[str, Any], after: dict[str, Any]
) -> list[str]:
    """One line per reason the latency numbers of ``rows`` may not be trusted (empty when none is seen)."""
    warnings = _rows_cv(rows)
    cores = machine.get("cores_usable") or machine.get("cores_logical") or os.cpu_count() or 1
    busy = [
        (when, snap["load_avg"][0]) for when, snap in (("before", before), ("after", after)) if snap.get("load_avg")
    ]
    busiest = max(busy, key=lambda x: x[1], default=None)
    if busiest is not None and busiest[1] > cores:
        warnings.append(
            f"the machine was busy: 1-minute load average {busiest[1]:g} {busiest[0]} the run on {cores} usable "
            "cores; other processes shared the CPU with the measurement"
        )
    jetson = machine.get("jetson")
    if isinstance(jetson, dict) and "error" not in jetson:
        clocks = str(jetson.get("clocks", ""))
        if clocks != "locked":
            warnings.append(
                f"Jetson clocks are {clocks or 'unknown'}: latency moves with DVFS; run `sudo jetson_clocks` "
                "(and a fixed nvpmodel mode) before benchmarking"
            )
        t0, t1 = before.get("temperatures_c") or {}, after.get("temperatures_c") or {}
        rises = {k: (t0[k], t1[k]) for k in t0.keys() & t1.keys() if t1[k] - t0[k] > TEMP_RISE_C}
        for zone, (a, b) in sorted(rises.items()):
            warnings.append(
                f"{zone} warmed from {a:g} to {b:g} °C during the run: the device may have throttled "
                "(later rows slower than earlier ones)"
            )
    return warnings
