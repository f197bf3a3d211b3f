"""``edgefer run`` as a library call: :func:`run_stream` (one source) and :func:`run_streams`
(several sources sharing one detector and one classifier), configured by :class:`StreamOptions`.

The jobs live in their own modules and are re-exported here, where they always were:

- :mod:`edgefer.runtime.capture`: what a source names, opening it, the capture thread with its
  bounded stale-dropping queue and the reconnect of a dropped live source;
- :mod:`edgefer.runtime.loop`: the frame loop (one lane per source; the faces of every stream that
  are due on a tick go to the classifier in one call);
- :mod:`edgefer.runtime.outputs`: the live events file, the annotated videos, the summary file and
  the checks made on them before the first frame;
- :mod:`edgefer.runtime.summary`: what a run did (FPS, drops, latency, per-stage times).

Ctrl-C, SIGTERM or the end of every stream stops the loop cleanly: the capture threads are joined
and every output is closed. With several sources a stream that ends or is lost (after its reconnect
attempts) leaves the loop alone; the others run on, and the summary says which were lost.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from edgefer.runtime.capture import (
    LIVE_SCHEMES,
    SOURCE_KINDS,
    SOURCE_LOST,
    CapturedFrame,
    CaptureFactory,
    FrameSource,
    StreamError,
    VideoCaptureLike,
    gstreamer_available,
    is_live,
    open_capture,
    parse_source,
    source_kind,
)
from edgefer.runtime.loop import FrameLoop, LoopSettings, RunTotals
from edgefer.runtime.outputs import (
    WRITE_FAILED,
    check_gui,
    check_run_outputs,
    check_stream_outputs,
    save_summary,
    stream_output,
)
from edgefer.runtime.predictor import Predictor
from edgefer.runtime.summary import MultiStreamSummary, StreamSummary
from edgefer.utils.limits import MAX_QUEUE, check_at_most
from edgefer.utils.options import merged

__all__ = [
    "LIVE_SCHEMES",
    "SOURCE_KINDS",
    "SOURCE_LOST",
    "WRITE_FAILED",
    "CaptureFactory",
    "CapturedFrame",
    "FrameSource",
    "MultiStreamSummary",
    "StreamError",
    "StreamOptions",
    "StreamSummary",
    "VideoCaptureLike",
    "check_gui",
    "check_run_outputs",
    "check_stream_outputs",
    "gstreamer_available",
    "is_live",
    "open_capture",
    "parse_source",
    "run_sources",
    "run_stream",
    "run_streams",
    "save_summary",
    "source_kind",
    "stream_output",
]


@dataclass(frozen=True)
class StreamOptions:
    """How :func:`run_stream` runs, checked when made.

    Attributes:
        out / jsonl: the annotated video and the live events file (None: not written).
        show: show the annotated stream in a window (needs GUI OpenCV).
        max_frames: stop after this many processed frames.
        queue_size / realtime: the capture queue; drop stale frames (default: on for cameras and
            streams, off for files).
        status_every_s: seconds between status lines.
        overwrite: replace the outputs of an earlier run.
        reconnect / reconnect_delay: attempts to reopen a dropped live stream, and the first wait
            (doubled per attempt).
    """

    out: str | os.PathLike | None = None
    jsonl: str | os.PathLike | None = None
    show: bool = False
    max_frames: int | None = None
    queue_size: int = 1
    realtime: bool | None = None
    status_every_s: float = 1.0
    overwrite: bool = False
    reconnect: int = 10
    reconnect_delay: float = 1.0

    def __post_init__(self) -> None:
        if self.max_frames is not None and self.max_frames < 1:
            raise StreamError(f"--max-frames must be positive, got {self.max_frames}")
        if self.queue_size < 1:
            raise StreamError(f"--queue-size must be positive, got {self.queue_size}")
        check_at_most("--queue-size", self.queue_size, MAX_QUEUE, StreamError, "each queued frame is held decoded")
        if self.reconnect < 0:
            raise StreamError(f"--reconnect must be >= 0, got {self.reconnect}")
        if self.reconnect_delay < 0:
            raise StreamError(f"--reconnect-delay must be >= 0, got {self.reconnect_delay}")


def _loop(
    predictor: Predictor,
    sources: Sequence[str | int],
    options: StreamOptions | None,
    fields: dict[str, Any],
    hooks: tuple[Callable[[str], None] | None, Callable[[str], None] | None, CaptureFactory | None],
) -> tuple[list[StreamSummary], RunTotals]:
    """Check the outputs, open the sources and run the loop (the shared body of the run functions)."""
    from edgefer.utils.outputs import clean_stale_staging

    opts = merged(StreamOptions, options, fields, StreamError)
    if not sources:
        raise StreamError("no source given (--source)")
    log, warn, capture_factory = hooks
    check_run_outputs(len(sources), opts.out, opts.jsonl, overwrite=opts.overwrite)
    if opts.show:
        check_gui()
    out = Path(opts.out) if opts.out is not None else None
    jsonl = Path(opts.jsonl) if opts.jsonl is not None else None
    for p in (out, jsonl):
        if p is not None:
            clean_stale_staging(p.parent)
    settings = LoopSettings(
        out=out,
        jsonl=jsonl,
        show=opts.show,
        max_frames=opts.max_frames,
        queue_size=opts.queue_size,
        realtime=opts.realtime,
        status_every_s=opts.status_every_s,
        reconnect=opts.reconnect,
        reconnect_delay=opts.reconnect_delay,
    )
    # looked up here, at call time, so a test that patches this module's open_capture is heard
    factory = capture_factory or open_capture
    return FrameLoop(predictor, list(sources), settings, factory, log=log, warn=warn).run()


def run_stream(
    predictor: Predictor,
    source: str | int,
    options: StreamOptions | None = None,
    *,
    log: Callable[[str], None] | None = None,
    capture_factory: CaptureFactory | None = None,
    warn: Callable[[str], None] | None = None,
    **fields: Any,
) -> StreamSummary:
    """Run ``predictor`` on a camera, file or stream until it ends, ``max_frames`` or Ctrl-C, as
    :class:`StreamOptions` say (``fields`` is shorthand for them: ``run_stream(p, src, max_frames=5)``).

    ``out`` (video) and ``jsonl`` (events) are checked before the first frame (see
    :func:`check_stream_outputs`). The video is written under a temporary name, renamed into place
    when the run ends (Ctrl-C included) and removed when it fails; the events file is live (see
    :mod:`edgefer.runtime.outputs`) and keeps the lines written before a failure. A dropped live
    source is reopened up to ``reconnect`` times (see :class:`FrameSource`); each attempt is reported
    to ``warn`` (default: ``log``), which a quiet run still wants to see.
    """
    summaries, totals = _loop(predictor, [source], options, fields, (log, warn, capture_factory))
    summary = summaries[0]
    summary.output_error = totals.output_error
    return summary


def run_streams(
    predictor: Predictor,
    sources: Sequence[str | int],
    options: StreamOptions | None = None,
    *,
    log: Callable[[str], None] | None = None,
    capture_factory: CaptureFactory | None = None,
    warn: Callable[[str], None] | None = None,
    **fields: Any,
) -> MultiStreamSummary:
    """:func:`run_stream` over several sources at once, sharing ``predictor`` (one detector, one
    classifier; each stream keeps its own tracks and carried boxes).

    Each stream ``i`` (its index in ``sources``) has its own capture thread, reconnect attempts,
    video (``out`` with ``.s<i>`` before its suffix, :func:`stream_output`) and statistics; the events
    of all streams share the ``jsonl`` file, each line with its ``stream`` id. On every tick the faces
    of every stream with a frame ready are classified in one backend call (chunked to the artifact's
    max batch). A stream that cannot be opened, fails or is lost stops alone; the run ends when every
    stream has ended (or on ``max_frames`` per stream, Ctrl-C, q/Esc or a failed events write).
    Only when no source opens at all is it an error (:class:`StreamError`).
    """
    summaries, totals = _loop(predictor, sources, options, fields, (log, warn, capture_factory))
    return MultiStreamSummary(
        streams=summaries,
        wall_s=totals.wall_s,
        ticks=totals.ticks,
        infer_calls=totals.infer_calls,
        batched_faces=totals.batched_faces,
        tick_ms=totals.tick_ms,
        output_error=totals.output_error,
    )


def run_sources(
    predictor: Predictor,
    sources: Sequence[str | int],
    options: StreamOptions | None = None,
    *,
    log: Callable[[str], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> StreamSummary | MultiStreamSummary:
    """What ``edgefer run`` calls: :func:`run_stream` for one source (its outputs and summary exactly
    as they always were), :func:`run_streams` for several."""
    if len(sources) == 1:
        return run_stream(predictor, sources[0], options, log=log, warn=warn)
    return run_streams(predictor, sources, options, log=log, warn=warn)
