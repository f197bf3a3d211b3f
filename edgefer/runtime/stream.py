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

Sources (:func:`source_kind`): a camera index (``0``), a video file, a stream URL (``rtsp://``,
``http://``...) or a GStreamer pipeline ending in ``appsink`` (Jetson CSI: ``nvarguscamerasrc !
video/x-raw(memory:NVMM),width=1280,height=720 ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert !
video/x-raw,format=BGR ! appsink drop=1``), opened with ``cv2.CAP_GSTREAMER``, which needs an OpenCV
built with GStreamer (JetPack's is; the pip wheels are not). A live source (URL or pipeline) that
stops delivering frames is reopened with exponential backoff, one message per attempt, until a
configurable number of attempts fails in a row; a file's end is the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Union

import cv2
import numpy as np

from edgefer.errors import EdgeferError
from edgefer.runtime.predictor import STAGES, Predictor
from edgefer.utils.limits import MAX_QUEUE, check_at_most
from edgefer.utils.options import merged


class StreamError(EdgeferError):
    """A video source or output that cannot be opened."""


SOURCE_KINDS = ("device", "file", "url", "gstreamer")
#: ``stopped_by`` when the events file could not be written (a full disk)
WRITE_FAILED = "output write failed"
#: how ``stopped_by`` begins when a live source dropped for good (``edgefer run`` then exits 4)
SOURCE_LOST = "source lost"
#: URL schemes of live network streams (reconnected when they drop); other ``scheme://`` URLs are opened
#: by OpenCV/FFmpeg as given but treated like files (a finished download does not come back).
LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")


def source_kind(source: str | int) -> str:
    """What ``source`` names: ``"device"`` (camera index), ``"gstreamer"`` (a pipeline string with
    ``!`` links, e.g. ``nvarguscamerasrc ! ... ! appsink``), ``"url"`` (``scheme://...``) or ``"file"``.

    A pipeline is recognised by its `` ! `` links (no path or URL contains a bare ``!`` between
    spaces), so ``rtspsrc location=rtsp://... ! ... ! appsink`` is a pipeline, not a URL.
    """
    if isinstance(source, int):
        return "device"
    text = str(source).strip()
    if text.isdigit():
        return "device"
    if " ! " in f" {text} " or "appsink" in text.split():
        return "gstreamer"
    if "://" in text:
        return "url"
    return "file"


def is_live(source: str | int) -> bool:
    """True for sources that reconnect when they drop: GStreamer pipelines and network stream URLs."""
    kind = source_kind(source)
    if kind == "gstreamer":
        return True
    return kind == "url" and str(source).strip().split("://", 1)[0].lower() in LIVE_SCHEMES


def gstreamer_available() -> bool:
    """Whether this OpenCV was built with the GStreamer video I/O backend (``cv2.getBuildInformation()``)."""
    for line in cv2.getBuildInformation().splitlines():
        name, _, value = line.strip().partition(":")
        if name.strip() == "GStreamer":
            return value.strip().upper().startswith("YES")
    return False


def parse_source(source: str | int) -> int | str:
    """``0``/``"0"`` -> camera index 0; GStreamer pipelines, URLs (``rtsp://``...) and existing paths -> str.

    A pipeline given to an OpenCV without GStreamer (the pip wheels have none) is refused here with
    a one-line error, before any model is loaded: OpenCV itself would only say "cannot open".
    """
    kind = source_kind(source)
    if kind == "device":
        return int(str(source).strip())
    text = str(source).strip()
    if kind == "gstreamer":
        if not gstreamer_available():
            raise StreamError(
                f"{text!r} is a GStreamer pipeline but this OpenCV ({cv2.__version__}) was built without GStreamer "
                "(cv2.getBuildInformation() says 'GStreamer: NO'; the pip opencv-python wheels have none): use "
                "JetPack's OpenCV on a Jetson (apt install python3-opencv / nvidia-opencv, in a venv made with "
                "--system-site-packages) or build OpenCV with -DWITH_GSTREAMER=ON; or pass an rtsp:// URL instead"
            )
        return text
    if kind == "url":
        return text
    if not Path(text).exists():
        raise StreamError(
            f"video source {text} does not exist (use a file, a camera index like 0, an rtsp:// or http:// URL, "
            "or a GStreamer pipeline ending in appsink)"
        )
    return text


class VideoCaptureLike(Protocol):
    """The part of ``cv2.VideoCapture`` the frame source uses (a test stand-in implements just this)."""

    def isOpened(self) -> bool: ...  # OpenCV's name

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def get(self, prop_id: int) -> float: ...

    def release(self) -> None: ...


#: evaluated at import, so typing's forms (3.8 has no `int | str`, no subscriptable collections.abc.Callable)
CaptureFactory = Callable[[Union[int, str]], VideoCaptureLike]


def open_capture(source: int | str) -> VideoCaptureLike:
    """The default capture factory: ``cv2.VideoCapture``, through ``cv2.CAP_GSTREAMER`` for pipelines
    (OpenCV would otherwise try the string as a file name with FFmpeg)."""
    if source_kind(source) == "gstreamer":
        return cv2.VideoCapture(str(source), cv2.CAP_GSTREAMER)
    return cv2.VideoCapture(source)


@dataclass
class CapturedFrame:
    """A frame as it left the capture thread."""

    index: int  # index in the source (counts dropped frames too)
    timestamp: float  # wall-clock time of capture (Unix seconds)
    t_capture: float  # time.perf_counter() at capture, for latency
    image: np.ndarray


class FrameSource:
    """A video capture read by a background thread into a bounded, stale-dropping queue.

    Args:
        source: camera index, file path, stream URL or GStreamer pipeline (see :func:`source_kind`).
        queue_size: frames held at most (1 = always the newest).
        realtime: drop stale frames instead of blocking the reader. Default: True for cameras and
            URLs, False for files. For files, True also paces reading at the file's frame rate.
        max_failures: consecutive failed reads before a live source counts as dropped (a camera
            index as ended).
        reconnect: attempts to reopen a dropped live source (network URL or GStreamer pipeline)
            before giving up; 0 = never. Files never reconnect: their end is the end. The count
            starts again once a frame arrives, so a stream that drops every hour runs for ever.
        reconnect_delay: seconds before the first attempt; doubled after each failed one, up to
            ``reconnect_max_delay`` (a camera that reboots takes tens of seconds; hammering it
            every 10 ms helps nobody).
        capture_factory: opens a source, ``cv2.VideoCapture`` by default (:func:`open_capture`);
            tests pass a stand-in that drops and comes back.
        log: receives one line per reconnect attempt and its outcome.
    """

    def __init__(
        self,
        source: str | int,
        queue_size: int = 1,
        realtime: bool | None = None,
        max_failures: int = 30,
        reconnect: int = 10,
        reconnect_delay: float = 1.0,
        reconnect_max_delay: float = 30.0,
        capture_factory: CaptureFactory | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        if queue_size < 1:
            raise StreamError(f"queue_size must be >= 1, got {queue_size}")
        if reconnect < 0:
            raise StreamError(f"--reconnect must be >= 0, got {reconnect}")
        if reconnect_delay < 0 or reconnect_max_delay < reconnect_delay:
            raise StreamError(
                f"reconnect delays must satisfy 0 <= first ({reconnect_delay}) <= max ({reconnect_max_delay})"
            )
        if max_failures < 1:
            raise StreamError(f"max_failures must be >= 1, got {max_failures}")
        self.source = parse_source(source)
        self.kind = source_kind(self.source)
        self.is_file = self.kind == "file"
        self.live = is_live(self.source)
        self.realtime = (not self.is_file) if realtime is None else realtime
        self._factory: CaptureFactory = capture_factory or open_capture
        self._cap = self._factory(self.source)
        if not self._cap.isOpened():
            self._cap.release()
            hint = " (is the camera connected and free?)" if self.kind == "device" else ""
            raise StreamError(f"cannot open video source {source!r}{hint}")
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0.0 < fps < 1000.0 else 30.0
        self.max_failures = max_failures
        self.reconnect = reconnect
        self.reconnect_delay = reconnect_delay
        self.reconnect_max_delay = reconnect_max_delay
        self._log = log
        self._queue: queue.Queue[CapturedFrame] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edgefer-capture", daemon=True)
        self._error: BaseException | None = None
        self.captured = 0
        self.dropped = 0
        self.reconnects = 0  # successful reopenings
        self.reconnect_attempts = 0  # every attempt, failed ones included
        self.ended_by = "end of stream"

    def start(self) -> FrameSource:
        self._thread.start()
        return self

    def _say(self, msg: str) -> None:
        if self._log is not None:
            self._log(msg)

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

    def _finite(self, frames_this_connection: int) -> bool:
        """A URL that is really a file (``http://.../clip.mp4``) has a frame count; past it, it has ended."""
        total = float(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0.0)
        return 0 < total <= frames_this_connection + 1

    def _reopen(self, attempts_so_far: int) -> int | None:
        """Reopen a dropped live source with backoff. Returns the attempts used, None when given up or stopped."""
        self._cap.release()
        attempt = attempts_so_far
        delay = min(self.reconnect_delay * 2**attempt, self.reconnect_max_delay)
        while attempt < self.reconnect:
            attempt += 1
            self.reconnect_attempts += 1
            self._say(
                f"source {self.source}: no frames for {self.max_failures} reads; reconnect attempt "
                f"{attempt}/{self.reconnect} in {delay:g} s"
            )
            if self._stop.wait(delay):
                return None
            cap = self._factory(self.source)
            if cap.isOpened():
                self._cap = cap
                self.reconnects += 1
                self._say(f"source {self.source}: reconnected (attempt {attempt})")
                return attempt
            cap.release()
            delay = min(delay * 2, self.reconnect_max_delay)
        self.ended_by = f"{SOURCE_LOST} (gave up after {self.reconnect} reconnect attempts)"
        self._say(f"source {self.source}: {self.ended_by}")
        return None

    def _run(self) -> None:
        failures = 0
        attempts = 0  # reconnect attempts since the last frame that arrived
        this_connection = 0
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
                    if self.is_file:
                        break
                    if failures < self.max_failures:
                        self._stop.wait(0.01)
                        continue
                    if not self.live or self.reconnect == 0 or self._finite(this_connection):
                        if self.live and self.reconnect == 0:
                            self.ended_by = f"{SOURCE_LOST} (reconnect off)"
                        break
                    used = self._reopen(attempts)
                    if used is None:
                        break
                    attempts, failures, this_connection = used, 0, 0
                    continue
                failures, attempts = 0, 0
                this_connection += 1
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


def _write_error(exc: OSError, path: Path | None) -> str:
    from edgefer.utils.io import storage_error

    err = storage_error(exc)
    return str(err) if err is not None else f"cannot write {path}: {exc}"


def _video_complete(path: Path | None, frames: int) -> bool:
    """True when the video just written reads back with its index and ``frames`` frames.

    OpenCV's writer never reports a failed write: a full disk (or a file-size limit) leaves a
    file cut short, an ``.mp4`` without the index written at the end that no player opens."""
    if path is None or not path.is_file():
        return False
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return False
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        # a backend that cannot count is given the benefit, one that estimates from the duration a frame
        return count <= 0 or count >= frames - 1
    finally:
        cap.release()


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
    from edgefer.utils.io import check_can_create
    from edgefer.utils.outputs import check_outputs

    given = [Path(p) for p in paths if p is not None]
    if len({p.resolve() for p in given}) != len(given):
        raise StreamError("--out, --jsonl and --summary-json must be different files")
    for p in given:
        if not p.name or p.name in (".", ".."):
            raise StreamError(f"{p} is not a file name")
        check_outputs(p.parent, [p.name], overwrite=overwrite)
        check_can_create(p)  # a read-only folder is refused now, not after the last frame


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
    when the run ends (Ctrl-C included) and removed when it fails; the events file is live (see the
    module docstring) and keeps the lines written before a failure. A dropped live source is
    reopened up to ``reconnect`` times (see :class:`FrameSource`); each attempt is reported to
    ``warn`` (default: ``log``), which a quiet run still wants to see.
    """
    opts = merged(StreamOptions, options, fields, StreamError)
    out, jsonl, show, max_frames = opts.out, opts.jsonl, opts.show, opts.max_frames
    queue_size, realtime, status_every_s, overwrite = (
        opts.queue_size,
        opts.realtime,
        opts.status_every_s,
        opts.overwrite,
    )
    reconnect, reconnect_delay = opts.reconnect, opts.reconnect_delay
    from edgefer.utils.outputs import clean_stale_staging, record_outputs

    check_stream_outputs(out, jsonl, overwrite=overwrite)
    if show:
        check_gui()
    out_path = Path(out) if out is not None else None
    jsonl_path = Path(jsonl) if jsonl is not None else None
    for p in (out_path, jsonl_path):
        if p is not None:
            clean_stale_staging(p.parent)
    src = FrameSource(
        source,
        queue_size=queue_size,
        realtime=realtime,
        reconnect=reconnect,
        reconnect_delay=reconnect_delay,
        capture_factory=capture_factory,
        log=warn if warn is not None else log,
    )
    summary = StreamSummary(source=str(source))
    pid = os.getpid()
    partial = out_path.with_name(f".{out_path.stem}.pid{pid}.partial{out_path.suffix or '.mp4'}") if out_path else None
    writer: cv2.VideoWriter | None = None
    writer_size = (0, 0)
    writer_frames = 0
    events_cut: int | None = None
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
                summary.stopped_by = src.ended_by
                break
            result = predictor.predict(item.image)
            latency = (time.perf_counter() - item.t_capture) * 1e3
            latencies.append(latency)
            summary.frames_processed += 1
            summary.faces += len(result.faces)
            summary.frames_detected += int(result.detected)
            if result.error:
                summary.bad_frames += 1
            for k in STAGES:
                stages[k].append(result.timings.get(k, 0.0))
            if events is not None:
                event = {"frame": item.index, "timestamp": round(item.timestamp, 6), "latency_ms": round(latency, 3)}
                event.update(result.to_dict(predictor.class_names))
                whole = events.tell()  # the end of the last whole line
                try:
                    events.write(json.dumps(event) + "\n")
                except OSError as exc:  # a full disk: stop, keeping every whole line and the video so far
                    events_cut = whole
                    summary.frames_processed -= 1
                    summary.stopped_by = f"{WRITE_FAILED} ({jsonl_path})"
                    summary.output_error = _write_error(exc, jsonl_path)
                    break
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
                    writer_frames += 1
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
            try:
                events.close()
            except OSError as exc:  # a full disk: the buffered part of the last line is dropped
                summary.output_error = summary.output_error or _write_error(exc, jsonl_path)
            if events_cut is not None and jsonl_path is not None:  # and what of it reached the disk
                with contextlib.suppress(OSError):
                    os.truncate(jsonl_path, events_cut)
        if writer is not None:
            writer.release()
            if completed and out_path is not None and not _video_complete(partial, writer_frames):
                summary.output_error = summary.output_error or (
                    f"the annotated video {out_path} could not be written completely (the disk is full or a "
                    "file-size limit was reached); it was removed"
                    + (f", and {jsonl_path} keeps every processed frame" if jsonl_path is not None else "")
                )
                completed = False
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
    summary.reconnects = src.reconnects
    summary.reconnect_attempts = src.reconnect_attempts
    summary.fps = round(summary.frames_processed / summary.wall_s, 2) if summary.wall_s > 0 else 0.0
    summary.latency_ms = _stats(latencies)
    summary.stage_ms = {k: _stats(v) for k, v in stages.items()}
    return summary
