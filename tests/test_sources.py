"""Video sources of ``edgefer run``: what a source string names, GStreamer pipelines (and the clear
error on an OpenCV without GStreamer), and reconnecting a live stream that drops.

Reconnection is tested with a stand-in camera injected through ``capture_factory`` (the same
parameter production code uses for ``cv2.VideoCapture``): each connection serves a planned number
of frames and then fails every read, as a dropped RTSP stream does; planned refusals stand for a
camera that is rebooting. The rest of the frame source (thread, queue, backoff) is the real one.
No assertion depends on timing: the delays are milliseconds and only the messages are checked.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgefer.runtime import stream as stream_mod
from edgefer.runtime.stream import FrameSource, StreamError, is_live, parse_source, source_kind

JETSON_CSI = (
    "nvarguscamerasrc sensor-id=0 ! video/x-raw(memory:NVMM),width=1280,height=720,framerate=30/1 ! "
    "nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! appsink drop=1"
)
RTSP_PIPELINE = (
    "rtspsrc location=rtsp://192.168.1.20:554/stream latency=100 ! rtph264depay ! h264parse ! avdec_h264 ! "
    "videoconvert ! appsink"
)


class _Connection:
    """One opened connection of :class:`FakeCamera`: ``frames`` frames, then every read fails."""

    def __init__(self, camera: FakeCamera, frames: int | None) -> None:
        self.camera, self.left, self.opened = camera, frames, frames is not None

    def isOpened(self) -> bool:  # cv2.VideoCapture's name
        return self.opened

    def read(self) -> tuple[bool, np.ndarray | None]:
        if not self.opened or not self.left:
            return False, None
        self.left -= 1
        serial = self.camera.served
        self.camera.served += 1
        return True, np.full((6, 8, 3), serial % 256, dtype=np.uint8)

    def get(self, prop_id: int) -> float:
        if prop_id == cv2.CAP_PROP_FRAME_COUNT:
            return float(self.camera.frame_count)
        return 25.0 if prop_id == cv2.CAP_PROP_FPS else 0.0

    def release(self) -> None:
        self.opened = False


class FakeCamera:
    """A capture factory following a plan: an int serves that many frames and drops, None refuses."""

    def __init__(self, plan: list[int | None], frame_count: int = 0) -> None:
        self.plan, self.frame_count = list(plan), frame_count
        self.opens: list[object] = []
        self.served = 0

    def __call__(self, source: int | str) -> _Connection:
        self.opens.append(source)
        return _Connection(self, self.plan.pop(0) if self.plan else None)


def _drain(src: FrameSource) -> list[int]:
    """The serial numbers of all frames the source delivers until it ends."""
    got = []
    with src:
        while (item := src.get(timeout=30.0)) is not None:
            got.append(int(item.image[0, 0, 0]))
    return got


def test_source_kinds() -> None:
    assert source_kind(0) == source_kind("1") == "device"
    assert source_kind(JETSON_CSI) == source_kind(RTSP_PIPELINE) == "gstreamer"
    assert source_kind("videotestsrc ! appsink") == "gstreamer"
    assert source_kind("rtsp://cam/stream") == source_kind("http://cam/mjpg") == "url"
    assert source_kind("clips/a b!.mp4") == "file"  # a '!' inside a name is no pipeline link
    assert is_live("rtsp://cam/stream") and is_live(JETSON_CSI) and is_live("https://cam/live.m3u8")
    assert not is_live("clip.mp4") and not is_live(0) and not is_live("file:///tmp/clip.mp4")


def test_gstreamer_without_gstreamer_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cv2, "getBuildInformation", lambda: "  Video I/O:\n    GStreamer:                   NO\n")
    assert not stream_mod.gstreamer_available()
    with pytest.raises(StreamError, match="built without GStreamer") as info:
        parse_source(JETSON_CSI)
    assert "JetPack" in str(info.value) and "\n" not in str(info.value)


def test_gstreamer_pipeline_opens_through_cap_gstreamer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cv2, "getBuildInformation", lambda: "    GStreamer:                   YES (1.20.3)\n")
    assert stream_mod.gstreamer_available()
    calls: list[tuple] = []
    monkeypatch.setattr(cv2, "VideoCapture", lambda *args: calls.append(args) or _Connection(FakeCamera([]), 3))
    src = FrameSource(JETSON_CSI, realtime=False)
    src.stop()
    assert calls == [(JETSON_CSI, cv2.CAP_GSTREAMER)] and src.live
    stream_mod.open_capture("rtsp://cam/stream")
    assert calls[-1] == ("rtsp://cam/stream",)  # URLs go to the default (FFmpeg) backend


def test_cli_refuses_a_pipeline_before_loading_the_model(monkeypatch: pytest.MonkeyPatch, tmp_path, capsys) -> None:
    from _fake_runtime import run_cli

    monkeypatch.setattr(cv2, "getBuildInformation", lambda: "GStreamer: NO")
    rc, err = run_cli(["run", "--model", str(tmp_path / "absent.onnx"), "--source", JETSON_CSI], capsys)
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert "GStreamer" in err and "absent.onnx" not in err


def test_dropped_stream_reconnects_with_backoff_then_gives_up() -> None:
    # 5 frames, drop, 2 refused attempts, back with 4 frames, drop, then never back.
    camera = FakeCamera([5, None, None, 4])
    messages: list[str] = []
    src = FrameSource(
        "rtsp://cam/stream",
        realtime=False,
        max_failures=2,
        reconnect=3,
        reconnect_delay=0.001,
        reconnect_max_delay=0.004,
        capture_factory=camera,
        log=messages.append,
    )
    assert _drain(src) == list(range(9))  # every frame once, in order, across the reconnect
    assert src.captured == 9 and src.reconnects == 1
    assert len(camera.opens) == 1 + 3 + 3 and set(camera.opens) == {"rtsp://cam/stream"}
    attempts = [m for m in messages if "reconnect attempt " in m]
    assert [m.split("attempt ")[1].split(" ")[0] for m in attempts] == ["1/3", "2/3", "3/3"] * 2
    # the delay doubles per failed attempt, capped; it starts again once frames flow
    assert [m.rsplit(" in ", 1)[1] for m in attempts] == ["0.001 s", "0.002 s", "0.004 s"] * 2
    assert any("reconnected (attempt 3)" in m for m in messages)
    assert src.ended_by == "source lost (gave up after 3 reconnect attempts)" and messages[-1].endswith(src.ended_by)


def test_reconnect_off_and_files_end_at_their_end(tmp_path) -> None:
    camera = FakeCamera([3, 5])
    src = FrameSource("rtsp://cam/stream", realtime=False, max_failures=1, reconnect=0, capture_factory=camera)
    assert _drain(src) == [0, 1, 2] and len(camera.opens) == 1 and src.ended_by == "source lost (reconnect off)"

    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"")  # only its existence matters: the stand-in serves the frames
    camera, messages = FakeCamera([3, 5]), []
    src = FrameSource(str(clip), max_failures=1, capture_factory=camera, log=messages.append)
    assert _drain(src) == [0, 1, 2] and len(camera.opens) == 1 and not messages
    assert src.ended_by == "end of stream"

    # an http:// URL that is a file (it reports a frame count) ends after its last frame too
    camera = FakeCamera([4, 5], frame_count=4)
    src = FrameSource("http://host/clip.mp4", realtime=False, max_failures=1, capture_factory=camera)
    assert _drain(src) == [0, 1, 2, 3] and len(camera.opens) == 1 and src.ended_by == "end of stream"


def test_unopenable_source_and_bad_settings() -> None:
    with pytest.raises(StreamError, match="cannot open video source 'rtsp://cam/x'"):
        FrameSource("rtsp://cam/x", capture_factory=FakeCamera([None]))
    for kwargs in ({"reconnect": -1}, {"reconnect_delay": 5.0, "reconnect_max_delay": 1.0}, {"max_failures": 0}):
        with pytest.raises(StreamError):
            FrameSource("rtsp://cam/x", capture_factory=FakeCamera([3]), **kwargs)


def test_run_stream_reports_reconnects(monkeypatch: pytest.MonkeyPatch) -> None:
    from _fake_runtime import fake_predictor

    camera = FakeCamera([4, None, 3])
    messages: list[str] = []
    summary = stream_mod.run_stream(
        fake_predictor(detector="none"),
        "rtsp://cam/stream",
        realtime=False,
        reconnect=2,
        reconnect_delay=0.001,
        capture_factory=camera,
        warn=messages.append,
    )
    assert summary.frames_processed == summary.frames_captured == 7 and summary.reconnects == 1
    assert summary.stopped_by == "source lost (gave up after 2 reconnect attempts)"
    assert sum("reconnect attempt " in m for m in messages) == 4
