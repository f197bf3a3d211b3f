"""Several sources in one ``edgefer run``: one shared detector and classifier, the faces of every stream
that is due classified in one call per tick, per-stream events, videos and statistics, and a stream that
is lost without stopping the others. Also the default OpenVINO model cache of the device commands.

Sources are tiny MJPG clips written here (64x48, a few frames) and one live stand-in that delivers two
frames and is gone; the model is the stand-in of :mod:`_fake_runtime` (its backend records each call's
batch), and ``--detector none`` makes every frame one face, so counts are exact.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from _fake_runtime import MeanBackend, run_cli
from test_sources import FakeCamera

from edgefer.errors import EdgeferError
from edgefer.runtime import Predictor, run_streams
from edgefer.runtime.cache import BUNDLE_CACHE, model_cache_dir
from edgefer.runtime.stream import StreamError, stream_output

LIVE = "rtsp://cam/lost"


def _clip(path: Path, frames: int, shade: int) -> str:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for k in range(frames):
        writer.write(np.full((48, 64, 3), (shade + 7 * k) % 256, np.uint8))
    writer.release()
    return str(path)


def _factory(source: int | str):
    """Files through OpenCV; :data:`LIVE` is a live stand-in that serves two frames and is gone for good."""
    return FakeCamera([2])(source) if source == LIVE else cv2.VideoCapture(source)


def _predictor(max_batch: int | None = None) -> Predictor:
    return Predictor(MeanBackend(max_batch), detector="none", smoothing=0.5)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("clips")
    return [_clip(root / f"c{i}.avi", n, 40 * i) for i, n in enumerate((6, 8, 10))]


def test_four_streams_one_lost_the_others_run_on(clips: list[str], tmp_path: Path) -> None:
    predictor = _predictor()
    warned: list[str] = []
    events, out = tmp_path / "events.jsonl", tmp_path / "ann.avi"
    summary = run_streams(
        predictor,
        [clips[0], LIVE, clips[1], clips[2]],
        jsonl=events,
        out=out,
        reconnect=0,
        realtime=False,  # the live stand-in too: no frame dropped, so the counts are exact
        capture_factory=_factory,
        warn=warned.append,
    )
    got = [(s.frames_processed, s.stopped_by) for s in summary.streams]
    ended = "end of stream"
    assert got == [(6, ended), (2, "source lost (reconnect off)"), (8, ended), (10, ended)]
    assert summary.lost == [1] and summary.source_lost and summary.frames_processed == 26
    assert any(m.startswith("[stream 1] source lost") and "other streams go on" in m for m in warned)
    # one events file, every line with its stream; each stream's frames in order, none missing
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    for i, n in enumerate((6, 2, 8, 10)):
        assert [e["frame"] for e in lines if e["stream"] == i] == list(range(n))
    # one video per stream (the lost one too: it ended, the run did not fail), nothing partial left
    for i, n in enumerate((6, 2, 8, 10)):
        cap = cv2.VideoCapture(str(stream_output(out, i, 4)))
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == n
        cap.release()
    assert sorted(p.name for p in tmp_path.iterdir() if "partial" in p.name) == []
    record = summary.to_dict()
    assert record["lost_streams"] == [1] and [s["stream"] for s in record["streams"]] == [0, 1, 2, 3]
    assert "[stream 3]" in summary.format() and f"{summary.infer_calls} classifier calls" in summary.format()


def test_faces_of_every_stream_go_to_one_classifier_call_per_tick(clips: list[str]) -> None:
    predictor = _predictor()
    summary = run_streams(predictor, [clips[2]] * 4)
    calls = predictor.backend.batches
    assert sum(calls) == 40 == summary.batched_faces  # every frame's face, classified once
    assert len(calls) == summary.infer_calls == summary.ticks  # one call per tick
    assert len(calls) < 40 and max(calls) > 1  # faces of several streams shared calls
    # the shared call directly: one frame of four streams with their own tracks, one backend call
    frames = [np.full((48, 64, 3), 30 * i, np.uint8) for i in range(4)]
    states = [predictor.new_state() for _ in frames]
    before = len(calls)
    results = predictor.predict_many(frames, states)
    assert calls[before:] == [4] and [len(r.faces) for r in results] == [1, 1, 1, 1]
    assert all(st.tracker is not None and st.tracker is not predictor.state.tracker for st in states)


def test_a_static_batch_artifact_is_chunked_to_its_max_batch() -> None:
    predictor = _predictor(max_batch=3)
    frames = [np.full((48, 64, 3), 30 * i, np.uint8) for i in range(4)]
    predictor.predict_many(frames, [predictor.new_state() for _ in frames])
    assert predictor.backend.batches == [3, 1]
    single = _predictor(max_batch=1)
    single.predict_many(frames, [single.new_state() for _ in frames])
    assert single.backend.batches == [1, 1, 1, 1]


def test_no_source_that_opens_is_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "not_a_video.avi"
    bad.write_bytes(b"\x00 not a video")
    with pytest.raises(StreamError, match="no source could be opened"):
        run_streams(_predictor(), [str(bad), str(bad)])


def test_cli_runs_several_sources_and_exits_4_when_one_was_lost(
    clips: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import edgefer.runtime
    from edgefer.runtime import stream as stream_mod

    seen: dict[str, object] = {}

    def predictor(model: object, *args: object, **kwargs: object) -> Predictor:
        seen["cache_dir"] = kwargs.get("cache_dir")
        return _predictor()

    monkeypatch.setattr(edgefer.runtime, "Predictor", predictor)
    monkeypatch.setattr(stream_mod, "open_capture", _factory)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    model = tmp_path / "m.xml"
    model.write_text("<net/>")
    summary = tmp_path / "summary.json"
    args = ["run", "-m", str(model), "-s", clips[0], "-s", LIVE, "-s", clips[1], "-q", "--no-realtime"]
    args += ["--reconnect", "0"]
    rc, err = run_cli([*args, "--out", str(tmp_path / "o.mp4"), "--summary-json", str(summary)], capsys)
    assert rc == 4, err
    assert err.strip().splitlines()[-1] == (
        "error: 1 of 3 streams lost: stream 1 (source lost (reconnect off) after 2 frames)"
    )
    record = json.loads(summary.read_text())
    assert [s["frames_processed"] for s in record["streams"]] == [6, 2, 8] and record["lost_streams"] == [1]
    assert sorted(p.name for p in tmp_path.glob("o*.mp4")) == ["o.s0.mp4", "o.s1.mp4", "o.s2.mp4"]
    assert seen["cache_dir"] == tmp_path / "xdg" / "edgefer" / "openvino"  # the cache is on by default
    from edgefer.cli import main

    capsys.readouterr()
    main([*args[:3], "-s", clips[0], "-q", "--no-cache", "--json"])  # one source that ends: success, no exit
    assert seen["cache_dir"] is None
    printed = json.loads(capsys.readouterr().out)  # --json: the summary as one JSON document on stdout
    assert printed["frames_processed"] == 6


def test_default_model_cache_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "bundle.json").write_text("{}")
    assert model_cache_dir(bundle) == bundle / BUNDLE_CACHE  # a writable bundle keeps its own cache
    assert model_cache_dir(tmp_path / "m.xml") == tmp_path / "xdg" / "edgefer" / "openvino"
    assert model_cache_dir(bundle, tmp_path / "mine") == tmp_path / "mine"
    assert model_cache_dir(bundle, enabled=False) is None
    with pytest.raises(EdgeferError, match="contradict"):
        model_cache_dir(bundle, tmp_path / "mine", enabled=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG spec: only absolute paths count
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert model_cache_dir(tmp_path / "m.xml") == tmp_path / "home" / ".cache" / "edgefer" / "openvino"
    if hasattr(__import__("os"), "geteuid") and __import__("os").geteuid() != 0:  # root writes anywhere
        bundle.chmod(0o555)
        monkeypatch.setenv("HOME", str(bundle / "home"))  # nothing writable: no cache, no error
        try:
            assert model_cache_dir(bundle) is None
        finally:
            bundle.chmod(0o755)


def test_streams_started_together_detect_on_different_frames() -> None:
    from edgefer.runtime import Detection
    from edgefer.runtime.tracking import BoxCarrier

    grey = np.random.default_rng(0).integers(0, 256, (96, 128), dtype=np.uint8)
    face = Detection(box=(30, 20, 40, 40))
    detected: dict[int, list[int]] = {}
    for phase in range(4):
        carrier, frames = BoxCarrier(5, phase=phase), []
        for k in range(12):
            if k == 0 or carrier.due(grey.shape):
                frames.append(k)
                carrier.refresh(grey, [face])
            else:
                assert carrier.carry(grey) is not None
        detected[phase] = frames
    # all detect the first frame; then each every 5th frame, each on its own frames
    assert detected == {0: [0, 5, 10], 1: [0, 4, 9], 2: [0, 3, 8], 3: [0, 2, 7]}
    predictor = Predictor(MeanBackend(), detector="haar", detect_every=5)
    assert [predictor.new_state(phase=i).carrier.phase for i in range(6)] == [0, 1, 2, 3, 4, 0]


def test_a_stream_that_drops_reconnects_while_the_others_run_on(clips: list[str], tmp_path: Path) -> None:
    """A live source that drops after 3 frames comes back (one reconnect) and serves 4 more; when it drops
    again and stays away it is lost. The files beside it are read to their end all the while."""
    camera = FakeCamera([3, 4])  # connects, 3 frames, drops; reconnects, 4 frames, drops; then refuses
    warned: list[str] = []
    summary = run_streams(
        _predictor(),
        [clips[1], LIVE, clips[2]],
        reconnect=2,
        reconnect_delay=0.01,
        realtime=False,
        capture_factory=lambda s: camera(s) if s == LIVE else cv2.VideoCapture(s),
        warn=warned.append,
        jsonl=tmp_path / "events.jsonl",
    )
    live = summary.streams[1]
    assert live.frames_processed == 7 and live.reconnects == 1 and live.source_lost
    assert [(s.frames_processed, s.stopped_by) for s in (summary.streams[0], summary.streams[2])] == [
        (8, "end of stream"),
        (10, "end of stream"),
    ]
    assert summary.lost == [1] and any(m.startswith("[stream 1]") and "reconnect" in m for m in warned)
    lines = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert len([e for e in lines if e["stream"] == 1]) == 7
