"""What a stream run did: per-stream counts, throughput and latency, and, with several sources,
the run as a whole (how many classifier calls the shared batches took, which streams were lost).

Kept apart from the loop so an application that embeds the runtime can read, print or store a
summary without importing OpenCV's capture machinery.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edgefer.bench.metrics import latency_stats
from edgefer.runtime.capture import SOURCE_LOST


def stats(values: list[float]) -> dict[str, float]:
    """Mean, median, 95th percentile and maximum of ``values`` (ms), rounded; zeros when empty (a
    stream that never delivered a frame). The numbers are the benchmark's own
    (:func:`edgefer.bench.metrics.latency_stats`), so a run summary and a benchmark row agree."""
    if not values:
        return {"mean": 0.0, "p50": 0.0, "p95": 0.0, "max": 0.0}
    s = latency_stats(np.asarray(values, dtype=np.float64) / 1000.0)
    return {key: round(s[f"{key}_ms"], 3) for key in ("mean", "p50", "p95", "max")}


@dataclass
class StreamSummary:
    """What a stream run did: frames, drops, throughput and latency (ms)."""

    source: str
    frames_processed: int = 0
    frames_captured: int = 0
    frames_dropped: int = 0
    faces: int = 0
    bad_frames: int = 0
    frames_detected: int = 0  # frames the face detector ran on (the others carried the boxes forward)
    reconnects: int = 0
    reconnect_attempts: int = 0  # failed ones included: "0 reconnects" alone hid two failed attempts
    wall_s: float = 0.0
    fps: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)  # capture -> result
    stage_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    stopped_by: str = "end of stream"
    #: why an output could not be written (a full disk): the run stopped there, kept what it
    #: could, and is not success (``edgefer run`` exits 2)
    output_error: str | None = None

    @property
    def source_lost(self) -> bool:
        """True when the run ended because a live source dropped and could not be reopened: not
        success, so ``edgefer run`` exits with status 4 (a supervisor restarts it)."""
        return self.stopped_by.startswith(SOURCE_LOST)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "source_lost": self.source_lost}

    def failure_line(self) -> str:
        """Why a lost run is not success, in one line (``edgefer run`` prints it after ``error:``)."""
        return f"{self.stopped_by} after {self.frames_processed} frames"

    def format(self) -> str:
        lines = [
            f"source {self.source}: {self.frames_processed} frames processed, {self.frames_captured} captured, "
            f"{self.frames_dropped} dropped, {self.faces} faces, detector on {self.frames_detected} frames, "
            f"{self.reconnects} reconnects ({self.reconnect_attempts} attempts), stopped by {self.stopped_by}",
            f"throughput {self.fps:.1f} FPS over {self.wall_s:.1f} s; capture->result latency "
            f"p50 {self.latency_ms.get('p50', 0):.1f} ms, p95 {self.latency_ms.get('p95', 0):.1f} ms, "
            f"max {self.latency_ms.get('max', 0):.1f} ms",
            "per stage (mean / p95 ms): "
            + ", ".join(f"{k} {v['mean']:.1f}/{v['p95']:.1f}" for k, v in self.stage_ms.items()),
        ]
        return "\n".join(lines)


@dataclass
class MultiStreamSummary:
    """A run over several sources: one :class:`StreamSummary` per stream (in ``--source`` order; a
    stream's id is its index) and what the streams shared.

    ``infer_calls`` counts the classifier calls of the whole run: the faces of every stream that were
    due on one tick go into one call (more only when the artifact's batch is smaller than the faces of
    the tick), so ``batched_faces / infer_calls`` is the mean batch and ``ticks`` the number of loop
    turns. ``source_lost`` is true when at least one stream was lost (``edgefer run`` exits 4 once
    every other stream has ended); the others ran on regardless.
    """

    streams: list[StreamSummary]
    wall_s: float = 0.0
    ticks: int = 0
    infer_calls: int = 0
    batched_faces: int = 0
    tick_ms: dict[str, float] = field(default_factory=dict)  # one loop turn: every due frame, one batch
    output_error: str | None = None

    @property
    def lost(self) -> list[int]:
        """The ids of the streams that were lost (see :attr:`StreamSummary.source_lost`)."""
        return [i for i, s in enumerate(self.streams) if s.source_lost]

    @property
    def source_lost(self) -> bool:
        return bool(self.lost)

    @property
    def frames_processed(self) -> int:
        return sum(s.frames_processed for s in self.streams)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["streams"] = [{"stream": i, **s.to_dict()} for i, s in enumerate(self.streams)]
        d.update(source_lost=self.source_lost, lost_streams=self.lost)
        return d

    def failure_line(self) -> str:
        lost = "; ".join(f"stream {i} ({self.streams[i].failure_line()})" for i in self.lost)
        return f"{len(self.lost)} of {len(self.streams)} streams lost: {lost}"

    def format(self) -> str:
        per_call = self.batched_faces / self.infer_calls if self.infer_calls else 0.0
        lines = []
        for i, s in enumerate(self.streams):
            lines += [f"[stream {i}] {line}" for line in s.format().splitlines()]
        lines.append(
            f"all {len(self.streams)} streams: {self.frames_processed} frames in {self.wall_s:.1f} s, {self.ticks} "
            f"ticks (mean {self.tick_ms.get('mean', 0):.1f} ms), {self.infer_calls} classifier calls "
            f"({per_call:.1f} faces per call)"
        )
        return "\n".join(lines)
