"""The video loop: a capture thread, a bounded queue that drops stale frames, and the predictor.

A camera produces frames at its own rate whether or not we keep up. If inference is slower and
frames are queued without bound, latency grows for ever (the picture on screen is seconds old).
:class:`FrameSource` therefore reads in its own thread into a queue of ``queue_size`` (1-2)
frames; when the queue is full the *oldest* frame is dropped, so the predictor always gets the
newest frame and the latency from capture to result stays bounded by about one inference time
plus one frame interval. Files are read without dropping by default (every frame is processed,
as fast as inference allows); ``realtime=True`` paces a file at its own frame rate and drops like a
camera does, which is also how the drop policy is tested.

:func:`run_stream` ties it together: optional annotated video (``mp4v``, written to a partial
file and renamed at the end), optional JSONL events (written under their own name from the first
frame, one complete line per processed frame, flushed as it goes: a camera stream never ends, so a
consumer must be able to ``tail -f`` the file while it runs, and a crash leaves only whole lines of
events that really happened), optional
``cv2.imshow`` window, a status line about once a second, and a :class:`StreamSummary` with FPS,
drops, capture-to-result latency and per-stage latency. Ctrl-C or the end of the stream stops the
loop cleanly: the capture thread is joined and every output is closed.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgefer.errors import EdgeferError
from edgefer.runtime.predictor import STAGES, Predictor


class StreamError(EdgeferError):
    """A video source or output that cannot be opened."""


def parse_source(source: str | int) -> int | str:
    """``0``/``"0"`` -> camera index 0; URLs (``rtsp://``...) and existing paths -> str."""
    if isinstance(source, int):
        return source
    text = str(source).strip()
    if text.isdigit():
        return int(text)
    if "://" in text:
        return text
    if not Path(text).exists():
        raise StreamError(f"video source {text} does not exist (use a file, a camera index like 0, or rtsp://...)")
    return text


@dataclass
class CapturedFrame:
    """A frame as it left the capture thread."""

    index: int  # index in the source (counts dropped frames too)
    timestamp: float  # wall-clock time of capture (Unix seconds)
    t_capture: float  # time.perf_counter() at capture, for latency
    image: np.ndarray


class FrameSource:
    """``cv2.VideoCapture`` read by a background thread into a bounded, stale-dropping queue.

    Args:
        source: camera index, file path or stream URL.
        queue_size: frames held at most (1 = always the newest).
        realtime: drop stale frames instead of blocking the reader. Default: True for cameras and
            URLs, False for files. For files, True also paces reading at the file's frame rate.
        max_failures: consecutive failed reads of a live source before it counts as ended.
    """

    def __init__(
        self, source: str | int, queue_size: int = 1, realtime: bool | None = None, max_failures: int = 30
    ) -> None:
        if queue_size < 1:
            raise StreamError(f"queue_size must be >= 1, got {queue_size}")
        self.source = parse_source(source)
        self.is_file = isinstance(self.source, str) and "://" not in self.source
        self.realtime = (not self.is_file) if realtime is None else realtime
        self._cap = cv2.VideoCapture(self.source)
        if not self._cap.isOpened():
            raise StreamError(f"cannot open video source {source!r}")
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0.0 < fps < 1000.0 else 30.0
        self.max_failures = max_failures
        self._queue: queue.Queue[CapturedFrame] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edgefer-capture", daemon=True)
        self._error: BaseException | None = None
        self.captured = 0
        self.dropped = 0

    def start(self) -> FrameSource:
        self._thread.start()
        return self

    def _put(self, item: CapturedFrame) -> None:
        if self.realtime:
            while True:
                try:
                    self._queue.put_nowait(item)
                    return
                except queue.Full:
                    with contextlib.suppress(queue.Empty):
                        self._queue.get_nowait()
                        self.dropped += 1
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        failures = 0
        start = time.perf_counter()
        try:
            while not self._stop.is_set():
                if self.is_file and self.realtime:  # emulate a camera: one frame every 1/fps s
                    wait = start + self.captured / self.fps - time.perf_counter()
                    if wait > 0:
                        time.sleep(wait)
                ok, image = self._cap.read()
                if not ok or image is None:
                    failures += 1
                    if self.is_file or failures >= self.max_failures:
                        break
                    time.sleep(0.01)
                    continue
                failures = 0
                item = CapturedFrame(self.captured, time.time(), time.perf_counter(), image)
                self.captured += 1
                self._put(item)
        except BaseException as exc:  # surfaced to the consumer by get()
            self._error = exc
        finally:
            self._cap.release()
            self._finished.set()

    def get(self, timeout: float | None = None) -> CapturedFrame | None:
        """The next frame, or ``None`` at the end of the stream (or after ``timeout`` seconds)."""
        deadline = None if timeout is None else time.perf_counter() + timeout
        while True:
            try:
                return self._queue.get(timeout=0.05)
            except queue.Empty:
                if self._error is not None:
                    raise StreamError(f"video capture failed: {self._error}") from self._error
                if self._finished.is_set() and self._queue.empty():
                    return None
                if deadline is not None and time.perf_counter() > deadline:
                    return None

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        if not self._thread.is_alive() and not self._finished.is_set():  # never started
            self._cap.release()

    def __enter__(self) -> FrameSource:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"mean": 0.0, "p50": 0.0, "p95": 0.0, "max": 0.0}
    a = np.asarray(values, dtype=np.float64)
    return {
        "mean": round(float(a.mean()), 3),
        "p50": round(float(np.percentile(a, 50)), 3),
        "p95": round(float(np.percentile(a, 95)), 3),
        "max": round(float(a.max()), 3),
    }


@dataclass
class StreamSummary:
    """What a stream run did: frames, drops, throughput and latency (ms)."""

    source: str
    frames_processed: int = 0
    frames_captured: int = 0
    frames_dropped: int = 0
    faces: int = 0
    bad_frames: int = 0
    wall_s: float = 0.0
    fps: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)  # capture -> result
    stage_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    stopped_by: str = "end of stream"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        lines = [
            f"source {self.source}: {self.frames_processed} frames processed, {self.frames_captured} captured, "
            f"{self.frames_dropped} dropped, {self.faces} faces, stopped by {self.stopped_by}",
            f"throughput {self.fps:.1f} FPS over {self.wall_s:.1f} s; capture->result latency "
            f"p50 {self.latency_ms.get('p50', 0):.1f} ms, p95 {self.latency_ms.get('p95', 0):.1f} ms, "
            f"max {self.latency_ms.get('max', 0):.1f} ms",
            "per stage (mean / p95 ms): "
            + ", ".join(f"{k} {v['mean']:.1f}/{v['p95']:.1f}" for k, v in self.stage_ms.items()),
        ]
        return "\n".join(lines)


def check_gui() -> None:
    """Raise a clear error when this OpenCV cannot open windows (headless wheels)."""
    try:
        cv2.namedWindow("edgefer")
    except cv2.error as exc:
        raise StreamError(
            "--show needs an OpenCV build with GUI support; opencv-python-headless has none. "
            "Install 'opencv-python<5' instead (same API), or write --out video.mp4 and watch that"
        ) from exc


def check_stream_outputs(*paths: str | os.PathLike | None, overwrite: bool = False) -> None:
    """Check the files a stream run will write (video, events, summary) before anything runs.

    Each follows the output policy of :mod:`edgefer.utils.outputs`: an existing folder of that
    name, or a file edgefer did not write, is refused; an earlier edgefer output needs
    ``overwrite``. Called by :func:`run_stream` and, earlier still, by ``edgefer run`` (before the
    model is even loaded).
    """
    from edgefer.utils.outputs import check_outputs

    given = [Path(p) for p in paths if p is not None]
    if len({p.resolve() for p in given}) != len(given):
        raise StreamError("--out, --jsonl and --summary-json must be different files")
    for p in given:
        if not p.name or p.name in (".", ".."):
            raise StreamError(f"{p} is not a file name")
        check_outputs(p.parent, [p.name], overwrite=overwrite)


def save_summary(summary: StreamSummary, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write the run summary as JSON (atomically; the output policy applies)."""
    from edgefer.utils.io import write_json
    from edgefer.utils.outputs import check_outputs, record_outputs

    p = Path(path)
    check_outputs(p.parent, [p.name], overwrite=overwrite)
    write_json(p, summary.to_dict())
    record_outputs(p.parent, [p.name], "run")
    return p


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


def run_stream(
    predictor: Predictor,
    source: str | int,
    out: str | os.PathLike | None = None,
    jsonl: str | os.PathLike | None = None,
    show: bool = False,
    max_frames: int | None = None,
    queue_size: int = 1,
    realtime: bool | None = None,
    log: Callable[[str], None] | None = None,
    status_every_s: float = 1.0,
    overwrite: bool = False,
) -> StreamSummary:
    """Run ``predictor`` on a camera, file or stream until it ends, ``max_frames`` or Ctrl-C.

    ``out`` (video) and ``jsonl`` (events) are checked before the first frame (see
    :func:`check_stream_outputs`). The video is written under a temporary name, renamed into place
    when the run ends (Ctrl-C included) and removed when it fails; the events file is live (see the
    module docstring) and keeps the lines written before a failure.
    """
    from edgefer.utils.outputs import clean_stale_staging, record_outputs

    if max_frames is not None and max_frames < 1:
        raise StreamError(f"--max-frames must be positive, got {max_frames}")
    if queue_size < 1:
        raise StreamError(f"--queue-size must be positive, got {queue_size}")
    check_stream_outputs(out, jsonl, overwrite=overwrite)
    if show:
        check_gui()
    out_path = Path(out) if out is not None else None
    jsonl_path = Path(jsonl) if jsonl is not None else None
    for p in (out_path, jsonl_path):
        if p is not None:
            clean_stale_staging(p.parent)
    src = FrameSource(source, queue_size=queue_size, realtime=realtime)
    summary = StreamSummary(source=str(source))
    pid = os.getpid()
    partial = out_path.with_name(f".{out_path.stem}.pid{pid}.partial{out_path.suffix or '.mp4'}") if out_path else None
    writer: cv2.VideoWriter | None = None
    writer_size = (0, 0)
    events = None
    latencies: list[float] = []
    stages: dict[str, list[float]] = {k: [] for k in STAGES}
    if jsonl_path is not None:
        from edgefer.utils.io import ensure_writable_dir

        ensure_writable_dir(jsonl_path.parent)
        events = open(jsonl_path, "w", encoding="utf-8", buffering=1)  # noqa: SIM115 - closed in finally
        record_outputs(jsonl_path.parent, [jsonl_path.name], "run")
    if out_path is not None:
        from edgefer.utils.io import ensure_writable_dir

        ensure_writable_dir(out_path.parent)
    t_start = time.perf_counter()
    t_status = t_start
    completed = False
    terminated: list[bool] = []
    previous_sigterm = _stop_on_sigterm(terminated)
    try:
        src.start()
        while True:
            item = src.get()
            if item is None:
                break
            result = predictor.predict(item.image)
            latency = (time.perf_counter() - item.t_capture) * 1e3
            latencies.append(latency)
            summary.frames_processed += 1
            summary.faces += len(result.faces)
            if result.error:
                summary.bad_frames += 1
            for k in STAGES:
                stages[k].append(result.timings.get(k, 0.0))
            if events is not None:
                event = {"frame": item.index, "timestamp": round(item.timestamp, 6), "latency_ms": round(latency, 3)}
                event.update(result.to_dict(predictor.class_names))
                events.write(json.dumps(event) + "\n")
            if out_path is not None or show:
                elapsed = time.perf_counter() - t_start
                status = f"{summary.frames_processed / max(elapsed, 1e-6):.1f} FPS  {result.timings['total']:.0f} ms"
                from edgefer.runtime.draw import draw_result

                annotated = draw_result(item.image, result, status)
                if out_path is not None:
                    if writer is None:
                        writer_size = (annotated.shape[1], annotated.shape[0])
                        writer = cv2.VideoWriter(str(partial), cv2.VideoWriter_fourcc(*"mp4v"), src.fps, writer_size)
                        if not writer.isOpened():
                            raise StreamError(f"cannot write video {out_path} (mp4v codec unavailable?)")
                    if (annotated.shape[1], annotated.shape[0]) != writer_size:  # a stream changed resolution
                        annotated = cv2.resize(annotated, writer_size, interpolation=cv2.INTER_AREA)
                    writer.write(annotated)
                if show:
                    cv2.imshow("edgefer", annotated)
                    if cv2.waitKey(1) & 0xFF in (27, ord("q")):
                        summary.stopped_by = "user (q/Esc)"
                        break
            now = time.perf_counter()
            if log is not None and now - t_status >= status_every_s:
                t_status = now
                log(
                    f"frame {item.index}: {len(result.faces)} faces, {summary.frames_processed / (now - t_start):.1f} "
                    f"FPS, latency {latency:.0f} ms, dropped {src.dropped}"
                )
            if max_frames is not None and summary.frames_processed >= max_frames:
                summary.stopped_by = f"--max-frames {max_frames}"
                break
        completed = True
    except KeyboardInterrupt:
        summary.stopped_by = "SIGTERM" if terminated else "Ctrl-C"
        completed = True
    finally:
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)
        src.stop()
        if events is not None:
            events.close()
        if writer is not None:
            writer.release()
            if completed and out_path is not None:
                os.replace(partial, out_path)
                record_outputs(out_path.parent, [out_path.name], "run")
            elif partial is not None:
                with contextlib.suppress(OSError):
                    partial.unlink()
        if show:
            with contextlib.suppress(cv2.error):
                cv2.destroyAllWindows()
    summary.wall_s = round(time.perf_counter() - t_start, 3)
    summary.frames_captured = src.captured
    summary.frames_dropped = src.dropped
    summary.fps = round(summary.frames_processed / summary.wall_s, 2) if summary.wall_s > 0 else 0.0
    summary.latency_ms = _stats(latencies)
    summary.stage_ms = {k: _stats(v) for k, v in stages.items()}
    return summary
