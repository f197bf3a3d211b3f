"""Benchmark reports: ``report.json`` (the record), ``report.md`` (the table), PNG plots.

The Markdown table follows ``yolo benchmark``: one line per artifact and batch size with backend,
precision, status, size, accuracy, Δ vs the FP32 reference, agreement, worst-class Δ, p50, p99, the
coefficient of variation of the timed calls (CV), FPS, and the start-up a camera pays once: load
time, the first call after it, and whether OpenVINO's model cache was hit. Every number in it is
formatted from the JSON by :func:`table_rows` (one function, so the two cannot disagree); the
pipeline's terminal summary is the same function asked for the :data:`COMPACT_COLUMNS`, so a number
reads the same in both. Under it, the reasons the latencies may not be trusted
(:mod:`edgefer.bench.trust`). Plots need matplotlib (Agg); without it
they are skipped with a note.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgefer.utils.io import ensure_writable_dir, write_json, write_text

#: The headers of the report table's columns, in order.
COLUMNS = (
    "Model",
    "Backend",
    "Precision",
    "Device",
    "Batch",
    "Status",
    "Size (MB)",
    "Acc (%)",
    "Δ (pts)",
    "Agree (%)",
    "Worst-class Δ (pts)",
    "p50 (ms)",
    "p99 (ms)",
    "CV (%)",
    "FPS",
    "E2E p50 (ms)",
    "Load (s)",
    "1st call (ms)",
    "Cache",
)
#: The columns of a one-screen summary (``edgefer pipeline`` prints it): what an artifact is, what
#: quantization did to its accuracy, and its latency and throughput at each batch size.
_DETAIL_ONLY = ("Device", "p99 (ms)", "CV (%)", "E2E p50 (ms)", "Load (s)", "1st call (ms)", "Cache")
COMPACT_COLUMNS = tuple(c for c in COLUMNS if c not in _DETAIL_ONLY)
DASH = "—"


def _num(value: Any, digits: int, scale: float = 1.0, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    v = float(value) * scale
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


def _column_indices(columns: Sequence[str]) -> list[int]:
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown:
        raise ValueError(f"unknown report column(s) {unknown}; the columns are {list(COLUMNS)}")
    return [COLUMNS.index(c) for c in columns]


def table_rows(report_dict: dict[str, Any], columns: Sequence[str] = COLUMNS) -> list[list[str]]:
    """The table's cells, formatted from the report JSON (a dict as in ``report.json``): one line per
    artifact and batch size, holding ``columns`` (names from :data:`COLUMNS`, in the order given)."""
    keep = _column_indices(columns)
    return [[cells[i] for i in keep] for cells in _all_cells(report_dict)]


def _all_cells(report_dict: dict[str, Any]) -> list[list[str]]:
    """Every column of :data:`COLUMNS` for every artifact and batch size, formatted."""
    out: list[list[str]] = []
    batches = report_dict["settings"]["batches"]
    for row in report_dict["rows"]:
        acc = row.get("accuracy") or {}
        worst = _num(acc.get("worst_class_delta_pts"), 2, signed=True)
        if worst != DASH and acc.get("worst_class"):
            net = acc.get("worst_class_net_images")
            worst = f"{worst} ({acc['worst_class']}" + ("" if net is None else f", {net:+d} img") + ")"
        for b in batches:
            lat = (row.get("latency") or {}).get(str(b), {})
            status = row["status"] if row["status"] != "ok" else lat.get("status", "ok")
            model = lat.get("model") or {}
            e2e = lat.get("e2e") or {}
            out.append(
                [
                    row["label"],
                    row.get("backend") or DASH,
                    row.get("precision") or DASH,
                    row.get("device") or DASH,
                    str(b),
                    status.replace("|", "/"),
                    _num(row.get("size_mb"), 2),
                    _num(acc.get("accuracy"), 2, 100),
                    _num(acc.get("delta_pts"), 2, signed=True),
                    _num(acc.get("agreement"), 2, 100),
                    worst,
                    _num(model.get("p50_ms"), 2),
                    _num(model.get("p99_ms"), 2),
                    _num(model.get("cv"), 1, 100),
                    _num(model.get("fps"), 1),
                    _num(e2e.get("p50_ms"), 2),
                    _num(row.get("load_s"), 2),
                    _num(row.get("first_infer_ms"), 1),
                    row.get("cache") or DASH,
                ]
            )
    return out


def _md_table(header: Sequence[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def markdown_table(report: Any, columns: Sequence[str] = COLUMNS) -> str:
    """The report (a dict as in ``report.json``, or a report object) as a Markdown table of ``columns``."""
    d = report if isinstance(report, dict) else report.to_dict()
    return _md_table(columns, table_rows(d, columns))


def _machine_line(m: dict[str, Any]) -> str:
    gpus = ", ".join(m.get("gpus") or []) or "none"
    flags = ",".join(m.get("cpu_flags") or [])
    return (
        f"{m.get('cpu')} ({m.get('cores_usable')}/{m.get('cores_logical')} cores usable; {flags}), "
        f"{m.get('memory_gb')} GB RAM, GPU: {gpus}, {m.get('os')}, Python {m.get('python')}"
    )


def _timing_line(s: dict[str, Any], timing: str) -> str:
    """How latency was measured: one request at a time, or (throughput mode) with requests in flight."""
    where = f"threads {s.get('threads') or 'default'}, device {s['device']}"
    if s.get("mode") == "throughput":
        inflight = (
            f"{s['streams']} request{'s' if s['streams'] != 1 else ''} in flight (--streams)"
            if s.get("streams")
            else "several requests in flight (OpenVINO: THROUGHPUT hint, its optimal number of requests; "
            "ONNX Runtime: one request per core; TensorRT: 2 contexts)"
        )
        return (
            f"- **Throughput mode**: after {s['warmup']} warm-up calls, {timing} with {inflight}; "
            f"{where}. FPS is measured (images completed / wall time); p50/p99 are per request."
        )
    return (
        f"- **Latency**: after {s['warmup']} warm-up calls, {timing}; {where}. p50/p99/FPS are model-only "
        "(preallocated input); E2E = decode + preprocess + infer."
    )


def _load_line(d: dict[str, Any]) -> str:
    """``1.2 before, 3.4 after (1-minute load average, 2 usable cores)``, or "" when not recorded."""
    cond = d.get("conditions") or {}
    loads = [(when, (cond.get(when) or {}).get("load_avg")) for when in ("before", "after")]
    if not all(v for _, v in loads):
        return ""
    cores = d["machine"].get("cores_usable")
    return ", ".join(f"{v[0]:g} {when}" for when, v in loads) + f" (1-minute load average, {cores} usable cores)"


def _jetson_line(j: dict[str, Any]) -> str:
    """One line of Jetson facts: model, L4T, power mode, clocks, hottest zones."""
    if "error" in j:
        return str(j["error"])
    temps = j.get("temperatures_c")
    if isinstance(temps, dict):
        temps = ", ".join(f"{k} {v:g} °C" for k, v in temps.items()) or DASH
    return (
        f"{j.get('model')}, L4T {j.get('l4t')}, power mode {j.get('power_mode')}, clocks {j.get('clocks')}; "
        f"temperatures: {temps}"
    )


def openvino_table(d: dict[str, Any]) -> str:
    """What each OpenVINO row's compiled model actually uses: device name, hint, precision, streams, cache."""
    rows = [r for r in d["rows"] if r.get("backend") == "openvino" and r.get("info")]
    if not rows:
        return ""
    header = ["Model", "Device", "Performance hint", "Inference precision", "Streams", "Threads", "Cache"]
    cells = []
    for r in rows:
        i = r["info"]
        cache = DASH if not i.get("cache_dir") else ("hit" if i.get("loaded_from_cache") else "written")
        device = f"{i.get('full_device_name') or DASH} ({i.get('ov_device') or r.get('device')})"
        fields = (i.get("performance_hint"), i.get("inference_precision"), i.get("num_streams"), i.get("threads"))
        cells.append([r["label"], device, *(DASH if v is None else str(v) for v in fields), cache])
    return _md_table(header, cells)


def _change_cell(ch: dict[str, Any]) -> str:
    """``14: -1 img (-4.55 pt, p=0.5)``: correct images, net change in images and points, and for a
    drop the one-sided McNemar p-value the gate's ``max-class-drop`` rule judges it by."""
    if not ch.get("images"):
        return DASH
    net = int(ch["net_images"])
    p = f", p={ch['p_drop']:.2g}" if net < 0 and ch.get("p_drop") is not None else ""
    return f"{ch['correct']}: {net:+d} img ({_num(ch['delta_pts'], 2, signed=True)} pt{p})"


def per_class_table(d: dict[str, Any]) -> str:
    """Per-class change vs the reference, one line per successful row.

    With image counts (``per_class_changes``): a header with each class's images, a line with the
    reference's correct images, then per row correct images, net change in images and points (a
    point on a 22-image class is not a point on a 1000-image one). Older reports: points only.
    """
    rows = [r for r in d["rows"] if r.get("accuracy") and r["accuracy"].get("per_class_delta_pts") is not None]
    if not rows:
        return ""
    names = rows[0]["accuracy"]["class_names"]
    counted = [r for r in rows if r["accuracy"].get("per_class_changes")]
    if not counted:
        cells = [[r["label"]] + [_num(v, 2, signed=True) for v in r["accuracy"]["per_class_delta_pts"]] for r in rows]
        return _md_table(["Model", *names], cells)
    first = counted[0]["accuracy"]["per_class_changes"]
    header = ["Model", *(f"{c['class']} ({c['images']} images)" for c in first)]
    cells = [["FP32 reference (correct)", *(str(c["reference_correct"]) for c in first)]]
    cells += [[r["label"], *(_change_cell(c) for c in r["accuracy"]["per_class_changes"])] for r in counted]
    return _md_table(header, cells)


def kept_fp_lines(d: dict[str, Any]) -> list[str]:
    """One line per artifact whose metadata says which layers accuracy control kept out of INT8
    (``quantization.kept_fp``): the mixed precision a row's numbers were measured with."""
    out = []
    for row in d["rows"]:
        kept = row.get("kept_fp")
        if kept is None:
            continue
        names = ", ".join(f"`{n}`" for n in kept) if kept else "none (fully INT8)"
        out.append(f"- **{row['label']}**: {len(kept)} layer(s): {names}")
    return out


def to_markdown(report: Any) -> str:
    d = report if isinstance(report, dict) else report.to_dict()
    s = d["settings"]
    pkgs = d["machine"].get("packages", {})
    versions = ", ".join(f"{k} {v}" for k, v in pkgs.items() if k in ("onnxruntime", "openvino", "tensorrt", "torch"))
    timing = f"{s['seconds']} s per measurement" if s.get("seconds") else f"{s['iters']} iterations"
    if s.get("timing") and s["timing"] != "given":
        timing += f" ({s['timing']})"
    ref = d.get("reference")
    ref_line = (
        f"{ref['source']}: {ref.get('path') or ref.get('artifact')} (model {ref.get('model')}, {ref.get('n')} images)"
        if ref
        else "none (no deltas)"
    )
    if ref and ref.get("not_found"):
        ref_line += (
            f"; **{ref['not_found']} of its {ref.get('total')} images were not found in the data** "
            f"({ref.get('unreadable', 0)} unreadable)"
        )
    skipped = f", {s['skipped']} unreadable or missing skipped" if s.get("skipped") else ""
    parts = [
        "# edgefer benchmark",
        "",
        f"- **Machine**: {_machine_line(d['machine'])}",
        *([f"- **Jetson**: {_jetson_line(d['machine']['jetson'])}"] if d["machine"].get("jetson") else []),
        f"- **Backends**: {versions or 'n/a'}",
        f"- **Data**: {s['data']} split `{s['split']}`, {s['images']} images{skipped}",
        f"- **FP32 reference**: {ref_line}",
        _timing_line(s, timing),
        *([f"- **Load**: {_load_line(d)}"] if _load_line(d) else []),
        f"- **Created**: {d['created']} (edgefer {d['edgefer_version']}, report schema {d['schema']})",
        "",
        markdown_table(d),
        "",
    ]
    if d.get("warnings"):
        parts += ["## Can these latencies be trusted?", ""] + [f"- **warning**: {w}" for w in d["warnings"]] + [""]
    ovt = openvino_table(d)
    if ovt:
        parts += ["## OpenVINO: what each compiled model uses", "", ovt, ""]
    pc = per_class_table(d)
    if pc:
        parts += ["## Per-class change vs the FP32 reference", "", pc, ""]
        if "images)" in pc.splitlines()[0]:
            parts += [
                "Cells: correct images: net change in images (points; for a drop, the exact one-sided "
                "McNemar p-value over the images whose correctness changed).",
                "",
            ]
    kept = kept_fp_lines(d)
    if kept:
        parts += ["## Layers kept in higher precision (mixed-precision INT8)", "", *kept, ""]
    if d.get("gate") is not None:
        verdict = "PASSED" if d.get("gate_passed") else "FAILED"
        gate = ",".join(f"{k}={v:g}" for k, v in d["gate"].items())
        parts += [f"## Gate `{gate}`: {verdict}", ""]
        parts += [f"- {f}" for f in d.get("gate_failures", [])]
        parts.append("")
    if d.get("notes"):
        parts += ["## Notes", ""] + [f"- {n}" for n in d["notes"]] + [""]
    return "\n".join(parts)


def save_report(report: Any, out_dir: str | os.PathLike, plots: bool = True) -> dict[str, str]:
    """Write report.json, report.md and plots; returns {kind: path}."""
    out = ensure_writable_dir(out_dir)
    files: dict[str, str] = {}
    if plots:
        from edgefer.bench.plots import save_plots

        made, note = save_plots(report.to_dict(), out)
        files.update(made)
        if note:
            report.notes.append(note)
    d = report.to_dict()
    d["files"] = {k: Path(v).name for k, v in files.items()}
    files["json"] = str(write_json(out / "report.json", d))
    files["markdown"] = str(write_text(out / "report.md", to_markdown(d)))
    return files
