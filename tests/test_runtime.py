"""The runtime: preprocessing parity with training, detection/alignment, labels through ONNX Runtime
and OpenVINO, bad frames, tracking/smoothing, the stream loop (events, drops, bounded latency), the
CLI, and the absence of torch.

Labels are checked on synthetic frames with the boxes ``compose_frame`` returns (given-boxes
path, ``Predictor.predict(frame, detections=...)``): OpenCV's Haar cascade was trained on real
faces and finds only some of the drawn ones, so it would make a label test about the detector.
Detection is tested where it is honest: on a real photograph (``skimage.data.astronaut()``), where
the Haar cascade of OpenCV 4.x finds the one face.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgefer.backends.base import Backend
from edgefer.labels import CLASS_NAMES
from edgefer.runtime import Detection, FrameError, HaarDetector, IoUTracker, Predictor, as_bgr_frame, make_detector
from edgefer.runtime.align import align_by_landmarks, crop_square, template_for
from edgefer.runtime.detect import DetectorError, detect_scaled
from edgefer.runtime.stream import FrameSource, StreamError, run_stream

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def artifacts(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """FP32 ONNX and OpenVINO IR of the session's trained tiny model (dynamic batch)."""
    from edgefer.export.onnx import export_onnx
    from edgefer.export.openvino import export_openvino

    out = tmp_path_factory.mktemp("runtime_artifacts")
    onnx_path = export_onnx(tiny_checkpoint, out, check_parity=False).artifact
    xml, _ = export_openvino(onnx_path, out, smoke_test=False)
    return {"onnx": Path(onnx_path), "openvino": Path(xml)}


@pytest.fixture(scope="module")
def astronaut_bgr() -> np.ndarray:
    skimage_data = pytest.importorskip("skimage.data", reason="scikit-image not installed")
    return cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR)


def _frame(expressions: list[int], seed: int, hw: tuple[int, int] = (480, 640)):
    """Faces drawn from the distribution the test model was trained on (conftest's difficulty),
    upright and unoccluded as a camera would see them; the drawn squares are the boxes."""
    from dataclasses import replace

    from conftest import SYNTH_DIFFICULTY

    from edgefer.data.synth import compose_frame, jitter_for_difficulty

    jitter = replace(jitter_for_difficulty(SYNTH_DIFFICULTY), occlusion_prob=0.0, rotation=5.0)
    return compose_frame(
        expressions, frame_hw=hw, rng=np.random.default_rng(seed), face_size_range=(96, 150), jitter=jitter
    )


# -- preprocessing is the training eval transform -----------------------------------------------
@pytest.mark.parametrize("crop_size", [64, 100, 37])
def test_predictor_preprocessing_equals_training_eval_transform(artifacts, crop_size: int) -> None:
    from edgefer.training.augment import EvalTransform

    predictor = Predictor(artifacts["onnx"], detector=None)
    pp = predictor.preprocessing
    rng = np.random.default_rng(crop_size)
    crop_rgb = rng.integers(0, 256, (crop_size, crop_size, 3), dtype=np.uint8)
    crop_bgr = np.ascontiguousarray(crop_rgb[:, :, ::-1])  # what a camera frame holds
    ours = predictor.preprocess([crop_bgr])[0]
    theirs = np.asarray(EvalTransform(pp)(crop_rgb))  # training reads RGB files
    assert ours.shape == (3, pp.input_size, pp.input_size)
    np.testing.assert_array_equal(ours, theirs)


# -- labels through both backends ------------------------------------------------------------
@pytest.fixture(scope="module")
def torch_reference(tiny_checkpoint: Path):
    """The trained PyTorch model and its validation mean class accuracy (the training's own number)."""
    from edgefer.training.checkpoint import build_model, load_checkpoint

    ckpt = load_checkpoint(tiny_checkpoint)
    return build_model(ckpt), float(ckpt["metrics"].get("val_mean_class_acc", 0.0))


@pytest.mark.parametrize("kind", ["onnx", "openvino"])
def test_synthetic_frame_faces_and_labels(artifacts, torch_reference, kind: str) -> None:
    """Several drawn faces per frame: one result per face, the label PyTorch gives the same crop
    through the training eval transform, and - once the model has learned - the drawn expression."""
    import torch

    from edgefer.training.augment import EvalTransform

    model, val_mca = torch_reference
    predictor = Predictor(artifacts[kind], detector="haar", margin=0.0)
    correct = total = 0
    for seed in range(12):
        expressions = [int(e) for e in np.random.default_rng(100 + seed).choice(len(CLASS_NAMES), 4, replace=False)]
        frame, boxes = _frame(expressions, seed)
        result = predictor.predict(frame, detections=[Detection(box=b) for b in boxes])
        assert result.error is None
        assert len(result.faces) == len(expressions)
        crops_rgb = [frame[y : y + h, x : x + w, ::-1] for x, y, w, h in boxes]
        with torch.no_grad():
            x = torch.from_numpy(np.stack([EvalTransform(predictor.preprocessing)(c) for c in crops_rgb]))
            ref = torch.softmax(model(x), dim=1).numpy()
        for face, box, expr, p_ref in zip(result.faces, boxes, expressions, ref, strict=True):
            assert face.box == box
            assert face.label == CLASS_NAMES[face.class_index]
            assert abs(float(face.probs.sum()) - 1.0) < 1e-4
            np.testing.assert_allclose(face.probs, p_ref, atol=2e-4)
            assert face.class_index == int(np.argmax(p_ref))
            correct += face.class_index == expr
            total += 1
        assert set(result.timings) == {"detect", "align", "preprocess", "infer", "total"}
    assert val_mca >= 0.6, (
        f"tiny_checkpoint has not learned the synthetic classes (val mean class acc "
        f"{val_mca:.2f}); drawn-expression accuracy ({correct}/{total}) cannot be judged"
    )
    # The conftest model labels drawn faces about as well as it learned them: 0.755 of 192 faces
    # (frames 0-47), 0.71-0.79 per 12 frames; the same model after 2 of its 4 epochs (val mean class
    # acc 0.64): 0.65. Chance is 1/7. 12 frames, not 3: 9/12 against a 0.75 bar was a coin flip.
    assert correct / total >= 0.5, f"{kind}: only {correct}/{total} faces labelled as drawn"


def test_onnxruntime_and_openvino_agree_on_a_frame(artifacts) -> None:
    frame, boxes = _frame([0, 3, 5, 6], seed=7)
    dets = [Detection(box=b) for b in boxes]
    a = Predictor(artifacts["onnx"], margin=0.0).predict(frame, detections=dets)
    b = Predictor(artifacts["openvino"], margin=0.0).predict(frame, detections=dets)
    assert [f.label for f in a.faces] == [f.label for f in b.faces]
    np.testing.assert_allclose(np.stack([f.probs for f in a.faces]), np.stack([f.probs for f in b.faces]), atol=1e-4)


class _CountingBackend(Backend):
    """A real backend behind a wrapper that records batch sizes (and can be slowed down)."""

    name = "wrapped"

    def __init__(self, inner: Backend, delay_s: float = 0.0, max_batch: int | None = None) -> None:
        self.inner, self.delay_s, self._max, self.batches = inner, delay_s, max_batch, []
        super().__init__(inner.path, inner.device)

    @classmethod
    def can_load(cls, path: Path) -> bool:
        return False

    def _load(self, path: Path) -> None:
        self.metadata = self.inner.metadata
        self.max_batch = self._max

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.batches.append(batch.shape[0])
        if self.delay_s:
            time.sleep(self.delay_s)
        return self.inner.infer(batch)

    def info(self) -> dict:
        return {**self.inner.info(), "backend": "wrapped"}


def test_all_faces_go_as_one_batch_and_respect_max_batch(artifacts) -> None:
    from edgefer.backends import open_model

    frame, boxes = _frame([0, 1, 3, 4, 6], seed=3)
    dets = [Detection(box=b) for b in boxes]
    one = _CountingBackend(open_model(artifacts["onnx"]))
    r1 = Predictor(one, margin=0.0).predict(frame, detections=dets)
    assert one.batches == [5]
    two = _CountingBackend(open_model(artifacts["onnx"]), max_batch=2)
    r2 = Predictor(two, margin=0.0).predict(frame, detections=dets)
    assert two.batches == [2, 2, 1]
    np.testing.assert_allclose(np.stack([f.probs for f in r1.faces]), np.stack([f.probs for f in r2.faces]), atol=1e-5)


# -- detection and alignment --------------------------------------------------------------------
def test_haar_finds_the_astronaut_face(artifacts, astronaut_bgr) -> None:
    result = Predictor(artifacts["onnx"], detector="auto").predict(astronaut_bgr)
    assert len(result.faces) == 1
    x, y, w, h = result.faces[0].box
    assert 150 < x + w / 2 < 300 and 60 < y + h / 2 < 180 and 60 < w < 160  # her face, top centre-left
    assert result.faces[0].landmarks is None  # Haar gives no landmarks
    assert result.timings["detect"] > 0


def test_very_large_frame_is_detected_downscaled_and_mapped_back(astronaut_bgr) -> None:
    det = HaarDetector(max_side=None)  # no internal downscale: detect_scaled does it here
    (small,) = det.detect(astronaut_bgr)
    big = cv2.resize(astronaut_bgr, None, fx=5, fy=5, interpolation=cv2.INTER_LINEAR)  # 2560x2560
    mapped = detect_scaled(det, big, max_side=512)
    assert mapped, "no face found in the downscaled copy"
    best = min(mapped, key=lambda d: np.abs(np.array(d.box) / 5 - np.array(small.box)).max())
    np.testing.assert_allclose(np.array(best.box) / 5, np.array(small.box), atol=4)
    assert best.box[2] > 300  # full-resolution pixels


def test_detector_specs_and_clear_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert make_detector("none").name == "full"
    assert make_detector(None).name == "full"
    assert make_detector("haar").name == "haar"
    with pytest.raises(DetectorError, match="face_detection_yunet"):
        make_detector(f"yunet:{tmp_path / 'missing.onnx'}")
    with pytest.raises(DetectorError, match="YuNet needs"):
        make_detector("yunet")
    with pytest.raises(DetectorError, match="unknown detector"):
        make_detector("mtcnn")
    monkeypatch.delattr(cv2, "data", raising=False)  # what an OpenCV 5 wheel looks like
    with pytest.raises(DetectorError, match="opencv-python-headless<5"):
        make_detector("auto")


def test_landmark_alignment_undoes_a_similarity_transform() -> None:
    size = 64
    rng = np.random.default_rng(0)
    face = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    face = cv2.GaussianBlur(face, (0, 0), 1.5)
    # place the face rotated by 20 degrees, scaled 2.5x into a larger frame
    m = cv2.getRotationMatrix2D((0, 0), 20, 2.5)
    m[:, 2] = (150, 80)
    frame = cv2.warpAffine(face, m, (400, 320))
    landmarks = cv2.transform(template_for(size)[None], m)[0]
    aligned = align_by_landmarks(frame, landmarks, size)
    inner = (slice(8, -8), slice(8, -8))
    err = np.abs(aligned[inner].astype(int) - face[inner].astype(int)).mean()
    assert err < 6, err


def test_square_crop_pads_at_the_border() -> None:
    frame = np.full((100, 200, 3), 200, np.uint8)
    crop = crop_square(frame, (-10, 80, 40, 30), margin=0.0)
    assert crop.shape == (40, 40, 3)
    assert crop[10, 5].tolist() == [0, 0, 0]  # x < 0: left of the frame
    assert crop[35, 20].tolist() == [0, 0, 0]  # y >= 100: below the frame
    assert crop[10, 20].tolist() == [200, 200, 200]
    assert crop_square(frame, (500, 500, 10, 10)).shape[:2] == (12, 12)  # fully outside: black square


# -- bad frames --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("frame", "error"),
    [
        (None, "None"),
        (np.zeros((0, 0, 3), np.uint8), "empty"),
        (np.zeros((2, 2, 2, 2), np.uint8), "HxW"),
        (np.zeros((10, 10, 5), np.uint8), "channels"),
    ],
)
def test_non_images_give_an_empty_result_with_an_error(artifacts, frame, error: str) -> None:
    predictor = Predictor(artifacts["onnx"])
    result = predictor.predict(frame)
    assert result.faces == [] and error in result.error
    with pytest.raises(FrameError, match=error):
        Predictor(artifacts["onnx"], strict=True).predict(frame)


def test_odd_frames_are_converted_not_crashed(artifacts, astronaut_bgr) -> None:
    predictor = Predictor(artifacts["onnx"], detector="auto")
    grey = cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2GRAY)
    bgra = cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2BGRA)
    for frame in (
        grey,
        grey[:, :, None],
        bgra,
        astronaut_bgr.astype(np.uint16) * 257,
        astronaut_bgr.astype(np.float32) / 255.0,
    ):
        result = predictor.predict(frame)
        assert result.error is None and len(result.faces) == 1, frame.shape
    for frame in (np.zeros((1, 1, 3), np.uint8), np.zeros((7, 3), np.uint8), np.zeros((33, 513, 3), np.uint8)):
        result = predictor.predict(frame)
        assert result.error is None and result.faces == [] and result.frame_size == (frame.shape[1], frame.shape[0])
    big = cv2.resize(astronaut_bgr, (4096, 4096))
    result = predictor.predict(big)
    assert len(result.faces) == 1 and result.faces[0].box[2] > 400  # box in full-resolution pixels
    assert as_bgr_frame(np.zeros((4, 4), bool)).shape == (4, 4, 3)


def test_aligned_mode_classifies_the_whole_frame(artifacts) -> None:
    from edgefer.data.synth import render_face

    predictor = Predictor(artifacts["openvino"], aligned=True)
    face_rgb = render_face(3, 100, np.random.default_rng(5))
    result = predictor.predict(face_rgb[:, :, ::-1])
    assert len(result.faces) == 1 and result.faces[0].box == (0, 0, 100, 100)
    direct = predictor.infer(predictor.preprocess([np.ascontiguousarray(face_rgb[:, :, ::-1])]))
    assert result.faces[0].class_index == int(np.argmax(direct[0]))


# -- tracking and smoothing ------------------------------------------------------------------------
def test_tracker_keeps_ids_and_smooths_flicker() -> None:
    tracker = IoUTracker(alpha=0.3, max_age=2)
    a, b = np.eye(7)[3], np.eye(7)[6]
    noisy = np.eye(7)[4]
    labels = []
    for t in range(12):
        boxes = [(100 + 2 * t, 100, 80, 80), (400 - 2 * t, 120, 90, 90)]
        p_first = noisy if t % 3 == 2 else a  # every third frame the classifier flickers
        out = tracker.update(boxes, np.stack([p_first, b]))
        assert [tid for tid, _ in out] == [1, 2]
        labels.append(int(np.argmax(out[0][1])))
    assert labels == [3] * 12  # the flicker never reaches the label
    raw = IoUTracker(alpha=1.0)
    assert [int(np.argmax(raw.update([(0, 0, 10, 10)], noisy[None])[0][1]))] == [4]
    for _ in range(3):  # unseen for more than max_age frames: the track is dropped
        tracker.update([], np.zeros((0, 7)))
    assert tracker.tracks == []
    assert tracker.update([(100, 100, 80, 80)], a[None])[0][0] == 3  # a new id


def test_predictor_tracks_faces_across_frames(artifacts) -> None:
    predictor = Predictor(artifacts["onnx"], smoothing=0.5, margin=0.0)
    frame, boxes = _frame([0, 6], seed=11)
    ids = []
    for shift in range(3):
        dets = [Detection(box=(x + shift, y, w, h)) for x, y, w, h in boxes]
        ids.append([f.track_id for f in predictor.predict(frame, detections=dets).faces])
    assert ids == [[1, 2]] * 3


# -- stream loop ---------------------------------------------------------------------------------
def _write_video(path: Path, n: int, fps: float, hw: tuple[int, int] = (240, 320)) -> list[list[int]]:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (hw[1], hw[0]))
    assert writer.isOpened()
    rng = np.random.default_rng(0)
    from edgefer.data.synth import compose_frame

    exprs = []
    for i in range(n):
        e = [i % 7, (i + 3) % 7]
        side = min(hw) // 3
        frame, _ = compose_frame(e, frame_hw=hw, rng=rng, face_size_range=(side, side + 8))
        writer.write(frame)
        exprs.append(e)
    writer.release()
    return exprs


def test_edgefer_run_writes_events_and_video(artifacts, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from edgefer.cli import app

    video = tmp_path / "synth.mp4"
    _write_video(video, 12, 15.0)
    events, out, summary = tmp_path / "events.jsonl", tmp_path / "annotated.mp4", tmp_path / "summary.json"
    res = CliRunner().invoke(
        app,
        [
            "run",
            "--model",
            str(artifacts["openvino"]),
            "--source",
            str(video),
            "--jsonl",
            str(events),
            "--out",
            str(out),
            "--summary-json",
            str(summary),
            "--max-frames",
            "10",
            "--cache-dir",
            str(tmp_path / "ov-cache"),
            "--quiet",
        ],
    )
    assert res.exit_code == 0, res.output
    assert any((tmp_path / "ov-cache").iterdir())  # the compiled model was cached for the next start
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert [e["frame"] for e in lines] == list(range(10))  # a file is read without drops by default
    assert all({"timestamp", "faces", "timings_ms", "latency_ms"} <= set(e) for e in lines)
    faces = [f for e in lines for f in e["faces"]]
    assert faces and all(f["label"] in CLASS_NAMES and "track_id" in f and len(f["probs"]) == 7 for f in faces)
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 10 and int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 320
    cap.release()
    s = json.loads(summary.read_text())
    assert s["frames_processed"] == 10 and s["stopped_by"] == "--max-frames 10"
    assert not list(tmp_path.glob(".*partial*"))  # the partial video was renamed


def test_run_to_end_of_stream_and_bad_source(artifacts, tmp_path: Path) -> None:
    video = tmp_path / "short.mp4"
    _write_video(video, 5, 10.0, hw=(120, 160))
    predictor = Predictor(artifacts["onnx"], detector="none", smoothing=0.5)
    summary = run_stream(predictor, str(video))
    assert summary.frames_processed == 5 and summary.frames_dropped == 0 and summary.stopped_by == "end of stream"
    assert summary.stage_ms["infer"]["mean"] > 0 and summary.fps > 0
    with pytest.raises(StreamError, match="does not exist"):
        run_stream(predictor, str(tmp_path / "nope.mp4"))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(StreamError, match="cannot open"):
        FrameSource(str(bad))


def test_slow_model_drops_stale_frames_and_latency_stays_bounded(artifacts, tmp_path: Path) -> None:
    """At 40 FPS in and ~12 FPS out, a 1-frame queue drops frames and keeps latency near one
    inference; an unbounded-ish queue (the failure mode we prevent) lets latency grow."""
    from edgefer.backends import open_model

    video = tmp_path / "fast.mp4"
    fps, n, delay = 40.0, 40, 0.08
    _write_video(video, n, fps, hw=(96, 128))
    inner = open_model(artifacts["onnx"])
    bounded = run_stream(
        Predictor(_CountingBackend(inner, delay), detector="none"), str(video), realtime=True, queue_size=1
    )
    assert bounded.frames_dropped > n // 3
    assert bounded.frames_processed + bounded.frames_dropped == bounded.frames_captured == n
    # A frame waits at most for the inference in progress, then for its own: about two inferences, as
    # measured in this run (a loaded machine slows inference and latency alike; a fixed number of ms
    # fails there). Measured on 2 cores at load ~9, 5 runs of this test's body (`for i in 1 2 3 4 5;
    # do pytest -s tests/test_runtime.py -k slow_model; done` prints the numbers): max latency 188-268
    # ms = 1.01-1.56x the max predict time (171-203 ms); the bound below leaves >= 1.8x.
    bound_ms = 2 * bounded.stage_ms["total"]["max"] + 1000 * 2 / fps + 100
    piled = run_stream(
        Predictor(_CountingBackend(inner, delay), detector="none"), str(video), realtime=True, queue_size=n
    )
    print(
        f"bounded max latency {bounded.latency_ms['max']:.0f} ms, max predict {bounded.stage_ms['total']['max']:.0f}"
        f" ms, bound {bound_ms:.0f} ms; piled max latency {piled.latency_ms['max']:.0f} ms"
    )
    assert bounded.latency_ms["max"] < bound_ms, (bounded.latency_ms, bounded.stage_ms["total"])
    assert piled.frames_dropped == 0
    # Same runs: piled max 4.8-5.3 s, 18-26x the bounded max (and far over its bound).
    assert piled.latency_ms["max"] > 3 * bounded.latency_ms["max"], (piled.latency_ms, bounded.latency_ms)
    assert piled.latency_ms["max"] > 2 * bound_ms, (piled.latency_ms, bound_ms)


def test_show_without_gui_says_so(artifacts, tmp_path: Path) -> None:
    from edgefer.runtime.stream import check_gui

    try:
        check_gui()
    except StreamError as exc:
        assert "opencv-python" in str(exc)
    else:  # a GUI build: nothing to test here
        cv2.destroyAllWindows()
        pytest.skip("this OpenCV has GUI support")


# -- predict CLI -----------------------------------------------------------------------------------
def test_edgefer_predict_images_and_folders(artifacts, astronaut_bgr, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from edgefer.cli import app

    folder = tmp_path / "imgs"
    folder.mkdir()
    cv2.imwrite(str(folder / "astronaut.png"), astronaut_bgr)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    out = tmp_path / "annotated"
    res = CliRunner().invoke(
        app, ["predict", str(folder), "--model", str(artifacts["onnx"]), "--out", str(out), "--json"]
    )
    assert res.exit_code == 0, res.output
    records = {Path(r["path"]).name: r for r in json.loads(res.stdout[res.stdout.index("[") :])}
    assert records["broken.jpg"]["error"] == "unreadable image"
    assert len(records["astronaut.png"]["faces"]) == 1
    assert (out / "astronaut.png").exists()
    res = CliRunner().invoke(app, ["predict", str(tmp_path / "missing.png"), "--model", str(artifacts["onnx"])])
    assert res.exit_code != 0


# -- torch-free ---------------------------------------------------------------------------------
def test_runtime_imports_no_torch(artifacts, tmp_path: Path) -> None:
    """In a process where ``import torch`` fails, the runtime, both backends and the CLI still work."""
    img = tmp_path / "face.png"
    from edgefer.data.synth import render_face

    cv2.imwrite(str(img), render_face(2, 100, np.random.default_rng(0))[:, :, ::-1])
    code = f"""
import sys
sys.modules["torch"] = None  # any 'import torch' now raises ImportError
import numpy as np
from edgefer.runtime import Predictor
from edgefer.runtime.stream import run_stream
for art in ({str(artifacts["onnx"])!r}, {str(artifacts["openvino"])!r}):
    r = Predictor(art, aligned=True).predict(np.zeros((64, 64, 3), np.uint8))
    assert len(r.faces) == 1, r
from edgefer.cli import app
app(["predict", {str(img)!r}, "--model", {str(artifacts["openvino"])!r}, "--aligned", "--json"],
    standalone_mode=False)
print("TORCH_FREE_OK")
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=180)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "TORCH_FREE_OK" in res.stdout
    res = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, edgefer.runtime.stream, edgefer.runtime.deepstream, "
            "edgefer.cli.runtime; print('torch' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert res.stdout.strip() == "False", res.stderr[-2000:]


def test_predictor_runs_from_a_verified_bundle(artifacts, tmp_path: Path) -> None:
    from edgefer.bundle import BundleError, make_bundle

    bundle = make_bundle([artifacts["onnx"], artifacts["openvino"]], tmp_path / "bundle")
    frame, boxes = _frame([3], seed=1)
    dets = [Detection(box=b) for b in boxes]
    with Predictor(bundle, backend="openvino", margin=0.0) as p:
        assert p.backend.name == "openvino" and p.backend.path.parent == bundle
        via_bundle = p.predict(frame, detections=dets).faces[0].probs
    direct = Predictor(artifacts["openvino"], margin=0.0).predict(frame, detections=dets).faces[0].probs
    np.testing.assert_allclose(via_bundle, direct, atol=1e-6)
    bin_file = next(bundle.glob("*.bin"))
    bin_file.write_bytes(bin_file.read_bytes()[:-16])  # a copy cut short
    with pytest.raises(BundleError, match=r"sha256|missing"):
        Predictor(bundle)


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM"])
def test_ctrl_c_stops_the_stream_cleanly(how: str, artifacts, tmp_path: Path) -> None:
    """Ctrl-C (SIGINT) and a service stop (SIGTERM) end the stream cleanly: exit 0, whole event lines,
    the video renamed into place with the frames processed so far.

    The child gets SIGINT's default disposition explicitly, as a terminal gives it: a process started
    in the background by a non-interactive shell (CI runners, ``nohup ... &``) inherits SIGINT
    *ignored*, and Python then installs no KeyboardInterrupt handler, so the Ctrl-C case depended on
    how the test suite itself was launched (it failed in CI and passed in a terminal)."""
    import signal

    video = tmp_path / "long.mp4"
    # 120 frames at 5 FPS: played in real time the file lasts 24 s, so Ctrl-C (sent ~0.6 s after the
    # first result) lands well before its end even on a loaded machine (at 20 FPS only 6 s were left).
    _write_video(video, 120, 5.0, hw=(96, 128))
    out, events = tmp_path / "out.mp4", tmp_path / "events.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from edgefer.cli import main; main()",
            "run",
            "--model",
            str(artifacts["onnx"]),
            "--source",
            str(video),
            "--realtime",
            "--detector",
            "none",
            "--out",
            str(out),
            "--jsonl",
            str(events),
            "--quiet",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 60
    while time.time() < deadline and (not events.exists() or events.stat().st_size == 0):
        time.sleep(0.1)
    assert events.exists() and events.stat().st_size > 0, "events must be written live, while the stream runs"
    time.sleep(0.5)
    proc.send_signal(getattr(signal, how))
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr[-2000:]
    assert f"stopped by {'Ctrl-C' if how == 'SIGINT' else 'SIGTERM'}" in stdout
    lines = events.read_text().splitlines()
    assert lines and all(json.loads(line)["frame"] >= 0 for line in lines)  # only whole lines
    assert out.exists() and not list(tmp_path.glob(".*partial*"))
    cap = cv2.VideoCapture(str(out))
    assert 0 < int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) < 120
    cap.release()
