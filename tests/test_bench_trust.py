"""The benchmark says when its latency numbers cannot be trusted: an unstable row (CV above 10 %), a busy
machine, and on a Jetson unlocked clocks or a device that warmed up during the run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_bench_device import _fake_jetson

from edgefer.bench.metrics import latency_stats
from edgefer.bench.report import markdown_table, to_markdown
from edgefer.bench.trust import CV_WARN, snapshot, trust_warnings

MACHINE = {"cores_usable": 2, "cores_logical": 2}
CALM = {"load_avg": [0.4, 0.5, 0.6]}


def _row(label: str, cv: float) -> dict:
    return {"label": label, "latency": {"1": {"status": "ok", "model": {"cv": cv, "p50_ms": 1.0}}}}


def test_cv_is_std_over_mean_of_the_timed_calls() -> None:
    seconds = np.array([1.0, 1.2, 0.9, 1.1, 1.3]) / 1000
    stats = latency_stats(seconds)
    ms = seconds * 1000
    assert stats["cv"] == pytest.approx(ms.std(ddof=1) / ms.mean())
    assert latency_stats([0.002])["cv"] == 0.0  # one call: no spread to speak of


def test_an_unstable_row_is_named_and_a_stable_one_is_not() -> None:
    rows = [_row("model.onnx [onnxruntime]", CV_WARN * 2.5), _row("model.xml [openvino]", CV_WARN / 2)]
    (warning,) = trust_warnings(rows, MACHINE, CALM, CALM)
    assert warning.startswith("model.onnx [onnxruntime] batch 1: latency varied by 25%")
    assert trust_warnings([_row("x", CV_WARN)], MACHINE, CALM, CALM) == []  # at the threshold: fine


def test_a_busy_machine_is_said_with_its_load() -> None:
    busy = {"load_avg": [6.5, 4.0, 2.0]}
    (warning,) = trust_warnings([], MACHINE, CALM, busy)
    assert "machine was busy: 1-minute load average 6.5 after the run on 2 usable cores" in warning
    assert trust_warnings([], MACHINE, {"load_avg": None}, {"load_avg": None}) == []  # no load average (Windows)


def test_jetson_clocks_and_a_warming_device_are_warned_about(tmp_path: Path) -> None:
    root = _fake_jetson(tmp_path)
    jetson = {"model": "Orin", "clocks": "not locked"}
    before = {**snapshot(jetson, root), "load_avg": None}  # this machine's own load is not the point here
    assert before["temperatures_c"] == {"cpu-thermal": 45.5, "gpu-thermal": 43.0}
    (root / "sys/devices/virtual/thermal/thermal_zone1/temp").write_text("51000\n")  # gpu +8 °C
    after = {**snapshot(jetson, root), "load_avg": None}
    warnings = trust_warnings([], {**MACHINE, "jetson": jetson}, before, after)
    assert any("clocks are not locked" in w and "sudo jetson_clocks" in w for w in warnings)
    assert any(w.startswith("gpu-thermal warmed from 43 to 51 °C") for w in warnings)
    assert not any("cpu-thermal" in w for w in warnings)  # unchanged
    locked = trust_warnings([], {**MACHINE, "jetson": {**jetson, "clocks": "locked"}}, before, before)
    assert locked == []
    assert "temperatures_c" not in snapshot(None)  # not a Jetson: no thermal probe at all


def test_report_shows_cv_load_and_the_warnings() -> None:
    d = {
        "machine": {"cpu": "x", "cores_usable": 2, "cores_logical": 2, "packages": {}},
        "settings": {"batches": [1], "data": "d", "split": "test", "images": 3, "warmup": 1, "iters": 5,
                     "device": "cpu"},
        "reference": None,
        "rows": [{"label": "m.onnx", "status": "ok", **_row("m.onnx", 0.234)}],
        "conditions": {"before": {"load_avg": [0.5, 0.4, 0.3]}, "after": {"load_avg": [3.25, 1.0, 0.5]}},
        "warnings": ["m.onnx batch 1: latency varied by 23%"],
        "created": "now", "edgefer_version": "0", "schema": 1,
    }  # fmt: skip
    table = markdown_table(d)
    assert "| CV (%) |" in table.splitlines()[0] and "| 23.4 |" in table
    md = to_markdown(d)
    assert "- **Load**: 0.5 before, 3.25 after (1-minute load average, 2 usable cores)" in md
    assert "## Can these latencies be trusted?\n\n- **warning**: m.onnx batch 1: latency varied by 23%" in md
    assert "Can these latencies" not in to_markdown({**d, "warnings": []})
