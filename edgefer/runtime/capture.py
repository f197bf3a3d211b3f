"""Video capture: what a source string names, opening it, and a background reader with a bounded,
stale-dropping queue that reopens a dropped live source.

A camera produces frames at its own rate whether or not we keep up. If inference is slower and
frames are queued without bound, latency grows for ever (the picture on screen is seconds old).
:class:`FrameSource` therefore reads in its own thread into a queue of ``queue_size`` (1-2)
frames; when the queue is full the *oldest* frame is dropped, so the predictor always gets the
newest frame and the latency from capture to result stays bounded by about one inference time
plus one frame interval. Files are read without dropping by default (every frame is processed,
as fast as inference allows); ``realtime=True`` paces a file at its own frame rate and drops like a
camera does, which is also how the drop policy is tested.

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
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Union

import cv2
import numpy as np

from edgefer.errors import EdgeferError


class StreamError(EdgeferError):
    """A video source or output that cannot be opened."""


SOURCE_KINDS = ("device", "file", "url", "gstreamer")
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
        notify: set whenever a frame is queued or the source ends, so a loop reading several
            sources sleeps on one event instead of polling each of them (see :meth:`poll`).
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
        notify: threading.Event | None = None,
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
        self._notify = notify
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

    def _wake(self) -> None:
        if self._notify is not None:
            self._notify.set()

    def _put(self, item: CapturedFrame) -> None:
        if self.realtime:
            while True:
                try:
                    self._queue.put_nowait(item)
                    self._wake()
                    return
                except queue.Full:
                    with contextlib.suppress(queue.Empty):
                        self._queue.get_nowait()
                        self.dropped += 1
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                self._wake()
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
            self._wake()

    def get(self, timeout: float | None = None) -> CapturedFrame | None:
        """The next frame, or ``None`` at the end of the stream (or after ``timeout`` seconds)."""
        deadline = None if timeout is None else time.perf_counter() + timeout
        while True:
            try:
                return self._queue.get(timeout=0.05)
            except queue.Empty:
                self._raise_if_failed()
                if self.ended:
                    return None
                if deadline is not None and time.perf_counter() > deadline:
                    return None

    def poll(self) -> CapturedFrame | None:
        """The next frame if one is queued, else ``None`` at once (check :attr:`ended` to tell the end)."""
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            self._raise_if_failed()
            return None

    @property
    def ended(self) -> bool:
        """True once the reader has stopped (end, lost or failed) and every queued frame was taken."""
        return self._finished.is_set() and self._queue.empty()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise StreamError(f"video capture failed: {self._error}") from self._error

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
