"""One result formatter: the pipeline's terminal summary and the benchmark's report table are the same
function (edgefer.bench.report.table_rows) over the same rows, so one number cannot read two ways."""

from __future__ import annotations

import pytest

from edgefer.bench.report import COLUMNS, COMPACT_COLUMNS, markdown_table, table_rows
from edgefer.pipeline.flow import SUMMARY_COLUMNS, summary_rows


def _report() -> dict:
    """Two artifacts at batch sizes 1 and 8: an INT8 row with its damage and a failed TensorRT row."""
    int8 = {
        "label": "model_int8.xml",
        "backend": "openvino",
        "precision": "int8",
        "device": "CPU",
        "status": "ok",
        "size_mb": 3.21,
        "accuracy": {
            "accuracy": 0.8125,
            "delta_pts": -0.625,
            "agreement": 0.975,
            "worst_class_delta_pts": -4.545,
            "worst_class": "Fear",
            "worst_class_net_images": -1,
        },
        "latency": {
            "1": {"status": "ok", "model": {"p50_ms": 1.234, "p99_ms": 2.0, "cv": 0.05, "fps": 790.0}},
            "8": {"status": "ok", "model": {"p50_ms": 6.0, "p99_ms": 7.5, "cv": 0.02, "fps": 1310.4}},
        },
    }
    failed = {"label": "model_int8.engine", "backend": "tensorrt", "precision": "int8", "status": "error: no GPU"}
    return {"settings": {"batches": [1, 8]}, "rows": [int8, failed]}


def test_pipeline_summary_is_the_benchmark_table_for_the_same_rows() -> None:
    report = _report()
    assert tuple(SUMMARY_COLUMNS) == COMPACT_COLUMNS and set(COMPACT_COLUMNS) <= set(COLUMNS)
    summary = summary_rows(report)
    assert summary == table_rows(report, SUMMARY_COLUMNS)
    # ... and each of its cells is the full report table's cell under the same header
    full = table_rows(report)
    picked = [[line[COLUMNS.index(c)] for c in SUMMARY_COLUMNS] for line in full]
    assert summary == picked
    md_lines = markdown_table(report).splitlines()[2:]
    assert md_lines == ["| " + " | ".join(line) + " |" for line in full]


def test_summary_gives_each_batch_its_own_line_and_fps() -> None:
    summary = summary_rows(_report())
    col = {c: i for i, c in enumerate(SUMMARY_COLUMNS)}
    assert [(r[col["Model"]], r[col["Batch"]]) for r in summary] == [
        ("model_int8.xml", "1"),
        ("model_int8.xml", "8"),
        ("model_int8.engine", "1"),
        ("model_int8.engine", "8"),
    ]
    first, second, failed, _ = summary
    # FPS and p50 belong to the line's batch size (no max over batch sizes hiding which one it was)
    assert (first[col["p50 (ms)"]], first[col["FPS"]]) == ("1.23", "790.0")
    assert (second[col["p50 (ms)"]], second[col["FPS"]]) == ("6.00", "1310.4")
    assert first[col["Acc (%)"]] == "81.25" and first[col["Δ (pts)"]] == "-0.62"
    assert first[col["Worst-class Δ (pts)"]] == "-4.54 (Fear, -1 img)"
    assert failed[col["Status"]] == "error: no GPU" and failed[col["FPS"]] == "—"


def test_an_unknown_column_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown report column"):
        table_rows(_report(), ("Model", "FPS (max)"))
