"""What a pipeline run hands back and prints: its result, a line per INT8 stage, the summary table.

The table is the benchmark report's own formatter (:func:`edgefer.bench.report.table_rows`) asked
for its compact columns, so ``edgefer pipeline`` and ``edgefer benchmark`` cannot print one number
two ways.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgefer.bench.report import COMPACT_COLUMNS, table_rows
from edgefer.pipeline.stages import StageOutcome


def int8_summary(report: dict[str, Any]) -> str:
    """One line on what an INT8 stage made: the layers accuracy control kept in floating point (or
    that plain PTQ kept none and was not held to the gate), and the result against FP32."""
    acc = report.get("accuracy_control")
    if acc:
        kept = acc.get("kept_fp") or []
        what = f"held to {report.get('gate')}, kept {len(kept)} layer(s) in FP" + (
            f" ({', '.join(kept)})" if kept else ""
        )
    else:
        method = (report.get("quantization") or {}).get("method", "ptq")
        what = f"{method}: every quantizable layer INT8, not held to a gate"
    agreement = report.get("agreement")
    agreed = f", agreement {100 * agreement:.1f} %" if isinstance(agreement, (int, float)) else ""
    delta = report.get("delta_pts")
    return what + (f", delta {delta:+.2f} pt" if isinstance(delta, (int, float)) else "") + agreed


@dataclass
class PipelineResult:
    out: Path
    checkpoint: Path
    artifacts: dict[str, Path]
    report_dir: Path
    bundle: Path
    gate_passed: bool
    gate_failures: list[str]
    report: dict[str, Any]  # report.json of the benchmark stage
    outcomes: list[StageOutcome] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


#: The pipeline's terminal summary: the benchmark report's own compact columns.
SUMMARY_COLUMNS = COMPACT_COLUMNS


def summary_rows(report: dict[str, Any]) -> list[list[str]]:
    """The terminal summary's lines, one per artifact and batch size (``report.md`` has every
    column): the benchmark report's formatter asked for :data:`SUMMARY_COLUMNS`, so the pipeline and
    ``edgefer benchmark`` cannot print one number two ways."""
    return table_rows(report, SUMMARY_COLUMNS)
