"""The frame loop over one or several sources sharing one predictor.

Each source has a *lane*: its :class:`~edgefer.runtime.capture.FrameSource` (its own capture
thread, queue and reconnect logic), its :class:`~edgefer.runtime.predictor.StreamState` (tracks,
carried boxes), its video, counters and timings. One turn of the loop (a *tick*) takes the frame each
lane has ready (waiting on one shared event when none has), hands them to
:meth:`~edgefer.runtime.predictor.Predictor.predict_many` (one detector pass per frame that is due,
the faces of every frame classified in one backend call), then writes each lane's event line, video
frame and window. A lane that ends or is lost leaves the loop alone; the others run on until they end
too. The run as a whole stops on ``--max-frames`` per lane, q/Esc, Ctrl-C or SIGTERM, or a failed
write of the shared events file (a full disk).

With one source this is exactly the single-stream loop of ``edgefer run``: a capture failure raises
and the events carry no ``stream`` field. With several, a source that cannot be opened or whose
capture fails counts as lost (``stopped_by`` starts with ``source lost``) and the others go on.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, List, Optional, Union

import cv2

from edgefer.runtime.capture import SOURCE_LOST, CapturedFrame, CaptureFactory, FrameSource, StreamError
from edgefer.runtime.outputs import WRITE_FAILED, EventLog, VideoSink, stream_output
from edgefer.runtime.predictor import STAGES, FrameResult, Predictor, StreamState
from edgefer.runtime.summary import StreamSummary, stats

#: evaluated at import (Python 3.8 has no ``X | None`` at run time)
Log = Optional[Callable[[str], None]]
Sources = List[Union[str, int]]


@dataclass
class LoopSettings:
    """What the loop needs from :class:`~edgefer.runtime.stream.StreamOptions`, already resolved."""

    out: Path | None = None
    jsonl: Path | None = None
    show: bool = False
    max_frames: int | None = None
    queue_size: int = 1
    realtime: bool | None = None
    status_every_s: float = 1.0
    reconnect: int = 10
    reconnect_delay: float = 1.0


@dataclass
class RunTotals:
    """What the lanes shared: loop turns, classifier calls, faces per call and the first output error."""

    ticks: int = 0
    infer_calls: int = 0
    batched_faces: int = 0
    tick_ms: dict[str, float] = field(default_factory=dict)
    output_error: str | None = None
    wall_s: float = 0.0


@dataclass
class _Lane:
    """One source in the loop."""

    index: int
    summary: StreamSummary
    state: StreamState
    source: FrameSource | None = None
    video: VideoSink | None = None
    latencies: list[float] = field(default_factory=list)
    stages: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in STAGES})
    active: bool = True
    t_end: float | None = None

    def stop(self, why: str) -> None:
        if self.active:
            self.summary.stopped_by = why
            self.active = False
            self.t_end = time.perf_counter()


def _stop_on_sigterm(flag: list[bool]) -> Any:
    """Make SIGTERM stop the loop as Ctrl-C does (outputs closed and renamed, summary printed).

    A camera service is stopped with SIGTERM (``systemctl stop``, ``docker stop``, a supervisor),
    not Ctrl-C; without this it would die mid-frame and lose the annotated video. Only the main
    thread can install handlers; elsewhere (an embedding application's worker thread) nothing is
    changed and None is returned. Returns the previous handler, which the caller restores.
    """
    if threading.current_thread() is not threading.main_thread():
        return None

    def _handler(signum: int, frame: Any) -> None:
        flag.append(True)
        raise KeyboardInterrupt

    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _handler)
    return previous if previous is not None else signal.SIG_DFL


class FrameLoop:
    """Runs ``predictor`` over ``sources`` as :class:`LoopSettings` say; :meth:`run` returns the
    per-stream summaries and the shared totals. ``log`` gets the status lines, ``warn`` the
    reconnect attempts and lost streams (shown even when ``log`` is off)."""

    def __init__(
        self,
        predictor: Predictor,
        sources: Sources,
        settings: LoopSettings,
        capture_factory: CaptureFactory,
        log: Log = None,
        warn: Log = None,
    ) -> None:
        self.predictor = predictor
        self.settings = settings
        self.alone = len(sources) == 1
        self.log = log
        self.warn = warn if warn is not None else log
        self.wake = threading.Event()
        self.totals = RunTotals()
        self.events: EventLog | None = None
        self.lanes = [
            # each stream its own tracks and carried boxes, its detections staggered against the others'
            _Lane(i, StreamSummary(source=str(s)), predictor.state if self.alone else predictor.new_state(phase=i))
            for i, s in enumerate(sources)
        ]
        self._open_sources(sources, capture_factory)

    def _open_sources(self, sources: Sources, factory: CaptureFactory) -> None:
        """Open every source; alone, a failure is the run's error, else that lane is lost from the start."""
        s = self.settings
        failures = []
        for lane, source in zip(self.lanes, sources):
            tag = "" if self.alone else f"[stream {lane.index}] "
            warn = self.warn
            try:
                lane.source = FrameSource(
                    source,
                    queue_size=s.queue_size,
                    realtime=s.realtime,
                    reconnect=s.reconnect,
                    reconnect_delay=s.reconnect_delay,
                    capture_factory=factory,
                    log=None if warn is None else (lambda msg, t=tag, w=warn: w(t + msg)),
                    notify=self.wake,
                )
            except StreamError as exc:
                if self.alone:
                    raise
                failures.append(exc)
                lane.stop(f"{SOURCE_LOST} ({exc})")
                self._say_lost(lane)
        if failures and len(failures) == len(self.lanes):
            self._close_sources()
            raise StreamError(f"no source could be opened: {failures[0]}")

    def _say_lost(self, lane: _Lane) -> None:
        if self.warn is not None and not self.alone:
            self.warn(f"[stream {lane.index}] {lane.summary.stopped_by}; the other streams go on")

    def _close_sources(self) -> None:
        for lane in self.lanes:
            if lane.source is not None:
                lane.source.stop()

    # -- the loop -------------------------------------------------------------------------
    def run(self) -> tuple[list[StreamSummary], RunTotals]:
        s = self.settings
        n = len(self.lanes)
        t_start = time.perf_counter()
        completed = False
        terminated: list[bool] = []
        previous_sigterm = None
        ticks: list[float] = []
        calls0 = self.predictor.infer_calls
        try:
            if s.jsonl is not None:
                self.events = EventLog(s.jsonl)
            for lane in self.lanes:
                video = stream_output(s.out, lane.index, n)
                if video is not None and lane.source is not None:
                    lane.video = VideoSink(video, lane.source.fps)
            previous_sigterm = _stop_on_sigterm(terminated)
            for lane in self.lanes:
                if lane.source is not None:
                    lane.source.start()
            t_status = t_start
            while True:
                got = self._collect()
                if not got:
                    break
                t_tick = time.perf_counter()
                results = self.predictor.predict_many([f.image for _, f in got], [ln.state for ln, _ in got])
                self.totals.batched_faces += sum(len(r.faces) for r in results)
                if not self._emit(got, results, t_start):
                    break
                ticks.append((time.perf_counter() - t_tick) * 1e3)
                now = time.perf_counter()
                if self.log is not None and now - t_status >= s.status_every_s:
                    t_status = now
                    for (lane, item), result in zip(got, results):
                        self._status(lane, item, result, now - t_start)
            completed = True
        except KeyboardInterrupt:
            for lane in self.lanes:
                lane.stop("SIGTERM" if terminated else "Ctrl-C")
            completed = True
        finally:
            if previous_sigterm is not None:
                signal.signal(signal.SIGTERM, previous_sigterm)
            self._teardown(completed)
        t_end = time.perf_counter()
        self.totals.wall_s = round(t_end - t_start, 3)
        self.totals.ticks = len(ticks)
        self.totals.tick_ms = stats(ticks)
        self.totals.infer_calls = self.predictor.infer_calls - calls0
        return [self._finish_summary(lane, t_start, t_end) for lane in self.lanes], self.totals

    def _collect(self) -> list[tuple[_Lane, CapturedFrame]]:
        """The frame each active lane has ready; waits when none has one. Empty: every lane has ended."""
        while True:
            self.wake.clear()
            got = []
            for lane in self.lanes:
                if not lane.active or lane.source is None:
                    continue
                try:
                    item = lane.source.poll()
                except StreamError as exc:
                    if self.alone:
                        raise
                    lane.stop(f"{SOURCE_LOST} ({exc})")
                    self._say_lost(lane)
                    continue
                if item is not None:
                    got.append((lane, item))
                elif lane.source.ended:
                    lane.stop(lane.source.ended_by)
                    if lane.summary.source_lost:
                        self._say_lost(lane)
            if got or not any(lane.active for lane in self.lanes):
                return got
            self.wake.wait(0.05)

    def _emit(self, got: list[tuple[_Lane, CapturedFrame]], results: list[FrameResult], t_start: float) -> bool:
        """Count, log and draw each lane's result. False when the run must stop (write failed, q/Esc)."""
        s = self.settings
        names = self.predictor.class_names
        for (lane, item), result in zip(got, results):
            sm = lane.summary
            latency = (time.perf_counter() - item.t_capture) * 1e3
            lane.latencies.append(latency)
            sm.frames_processed += 1
            sm.faces += len(result.faces)
            sm.frames_detected += int(result.detected)
            if result.error:
                sm.bad_frames += 1
            for k in STAGES:
                lane.stages[k].append(result.timings.get(k, 0.0))
            if self.events is not None:
                event: dict[str, Any] = {} if self.alone else {"stream": lane.index}
                event.update(frame=item.index, timestamp=round(item.timestamp, 6), latency_ms=round(latency, 3))
                event.update(result.to_dict(names))
                if not self.events.write(event):
                    sm.frames_processed -= 1
                    for other in self.lanes:
                        other.stop(f"{WRITE_FAILED} ({s.jsonl})")
                    return False
            if (lane.video is not None or s.show) and not self._draw(lane, item, result, t_start):
                for other in self.lanes:
                    other.stop("user (q/Esc)")
                return False
            if s.max_frames is not None and sm.frames_processed >= s.max_frames:
                lane.stop(f"--max-frames {s.max_frames}")
        return True

    def _draw(self, lane: _Lane, item: CapturedFrame, result: FrameResult, t_start: float) -> bool:
        """Annotate the frame into the lane's video and window; False when q/Esc was pressed."""
        from edgefer.runtime.draw import draw_result

        elapsed = time.perf_counter() - t_start
        status = f"{lane.summary.frames_processed / max(elapsed, 1e-6):.1f} FPS  {result.timings['total']:.0f} ms"
        annotated = draw_result(item.image, result, status)
        if lane.video is not None:
            lane.video.write(annotated)
        if self.settings.show:
            cv2.imshow("edgefer" if self.alone else f"edgefer {lane.index}", annotated)
            if cv2.waitKey(1) & 0xFF in (27, ord("q")):
                return False
        return True

    def _status(self, lane: _Lane, item: CapturedFrame, result: FrameResult, elapsed: float) -> None:
        assert self.log is not None and lane.source is not None
        tag = "" if self.alone else f"[stream {lane.index}] "
        self.log(
            f"{tag}frame {item.index}: {len(result.faces)} faces, {lane.summary.frames_processed / elapsed:.1f} "
            f"FPS, latency {lane.latencies[-1]:.0f} ms, dropped {lane.source.dropped}"
        )

    def _teardown(self, completed: bool) -> None:
        """Stop every capture, close the events, rename or remove each video, close the windows."""
        self._close_sources()
        events_path = None
        if self.events is not None:
            self.events.close()
            self.totals.output_error = self.events.error
            events_path = self.events.path
        for lane in self.lanes:
            if lane.video is not None:
                error = lane.video.finish(completed, events_path)
                self.totals.output_error = self.totals.output_error or error
        if self.settings.show:
            with contextlib.suppress(cv2.error):
                cv2.destroyAllWindows()

    def _finish_summary(self, lane: _Lane, t_start: float, t_end: float) -> StreamSummary:
        sm = lane.summary
        if lane.active:
            lane.stop(sm.stopped_by)
        end = t_end if self.alone or lane.t_end is None else lane.t_end
        sm.wall_s = round(max(0.0, end - t_start), 3)  # a source that never opened stopped before the start
        if lane.source is not None:
            sm.frames_captured = lane.source.captured
            sm.frames_dropped = lane.source.dropped
            sm.reconnects = lane.source.reconnects
            sm.reconnect_attempts = lane.source.reconnect_attempts
        sm.fps = round(sm.frames_processed / sm.wall_s, 2) if sm.wall_s > 0 else 0.0
        sm.latency_ms = stats(lane.latencies)
        sm.stage_ms = {k: stats(v) for k, v in lane.stages.items()}
        return sm
