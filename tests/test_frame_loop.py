"""The frame loop of a video: detection every N frames with the boxes carried forward in between
(sooner when a face is lost), detection on a downscaled copy, and the detector options.

The scene is a synthetic frame with two faces panned a few pixels per frame (as a camera sees a
person move at 30 FPS); a counting detector returns the true boxes of the current frame, so every
call is visible and the carried boxes can be compared with the truth. The model is a stand-in
(:mod:`_fake_runtime`): these tests are about which frames are detected and where the boxes go.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from _fake_runtime import fake_predictor

from edgefer.errors import EdgeferError
from edgefer.runtime import Detection, make_detector
from edgefer.runtime.detect import DetectorError
from edgefer.runtime.tracking import BoxCarrier

STEP = (3, 2)  # pixels per frame the scene moves (right, down)


def _scene(seed: int = 0) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    from edgefer.data.synth import compose_frame

    return compose_frame([3, 5], frame_hw=(480, 640), rng=np.random.default_rng(seed), face_size_range=(100, 120))


def _shifted(frame: np.ndarray, k: int) -> np.ndarray:
    m = np.float32([[1, 0, STEP[0] * k], [0, 1, STEP[1] * k]])
    return cv2.warpAffine(frame, m, (frame.shape[1], frame.shape[0]), borderMode=cv2.BORDER_REFLECT)


class TruthDetector:
    """Returns the true boxes (and landmarks) of frame ``k``, in the coordinates of the frame it gets."""

    name = "truth"

    def __init__(self, boxes: list[tuple[int, int, int, int]]) -> None:
        self.boxes, self.k, self.calls, self.shapes = boxes, 0, [], []

    def truth(self, k: int) -> list[tuple[int, int, int, int]]:
        return [(x + STEP[0] * k, y + STEP[1] * k, w, h) for x, y, w, h in self.boxes]

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        self.calls.append(self.k)
        self.shapes.append(frame_bgr.shape)
        f = frame_bgr.shape[1] / 640
        out = []
        for x, y, w, h in self.truth(self.k):
            lm = np.float32([[x + 0.3 * w, y + 0.4 * h], [x + 0.7 * w, y + 0.4 * h]] + [[x + w / 2, y + h / 2]] * 3)
            out.append(Detection(box=(round(x * f), round(y * f), round(w * f), round(h * f)), landmarks=lm * f))
        return out


def _run(predictor, det: TruthDetector, frames: list[np.ndarray]):
    results = []
    for k, frame in enumerate(frames):
        det.k = k
        results.append(predictor.predict(frame))
    return results


def test_detects_every_n_frames_and_carries_boxes_in_between() -> None:
    frame, boxes = _scene()
    det = TruthDetector(boxes)
    p = fake_predictor(detector=det, detect_every=4, smoothing=0.5)
    results = _run(p, det, [_shifted(frame, k) for k in range(10)])
    assert det.calls == [0, 4, 8]
    assert [r.detected for r in results] == [k % 4 == 0 for k in range(10)]
    for k, r in enumerate(results):
        got = [f.box for f in r.faces]
        assert len(got) == 2 and [f.track_id for f in r.faces] == [1, 2]
        for (gx, gy, gw, gh), (tx, ty, tw, th) in zip(got, det.truth(k), strict=True):
            assert abs(gx - tx) <= 2 and abs(gy - ty) <= 2 and (gw, gh) == (tw, th), (k, got, det.truth(k))
        for face, (tx, ty, tw, th) in zip(r.faces, det.truth(k), strict=True):  # landmarks move with the box
            lx, ly = face.landmarks[0]
            assert abs(lx - (tx + 0.3 * tw)) <= 2.5 and abs(ly - (ty + 0.4 * th)) <= 2.5
    # the baseline: every frame detected
    det2 = TruthDetector(boxes)
    _run(fake_predictor(detector=det2), det2, [_shifted(frame, k) for k in range(5)])
    assert det2.calls == [0, 1, 2, 3, 4]


def test_a_lost_face_is_detected_at_once_and_reset_starts_over() -> None:
    frame, boxes = _scene()
    other, _ = _scene(seed=7)  # a different scene: the faces are gone from where they were
    det = TruthDetector(boxes)
    p = fake_predictor(detector=det, detect_every=10)
    frames = [_shifted(frame, 0), _shifted(frame, 1), _shifted(other, 0), _shifted(other, 0)]
    results = _run(p, det, frames)
    assert det.calls == [0, 2]  # frame 2 lost both templates -> detected there, not at frame 10
    assert [r.detected for r in results] == [True, False, True, False]
    p.reset()
    det.k = 9
    assert p.predict(frames[3]).detected and det.calls[-1] == 9
    # a new frame size (the stream changed resolution) is detected too
    det.k = 10
    assert p.predict(cv2.resize(frames[3], (320, 240))).detected and det.calls[-1] == 10


def test_detection_runs_on_a_downscaled_copy_and_boxes_come_back_full_size() -> None:
    frame, boxes = _scene()
    det = TruthDetector(boxes)
    r = fake_predictor(detector=det, detect_width=320).predict(frame)
    assert det.shapes == [(240, 320, 3)]
    for face, (x, y, w, h) in zip(r.faces, boxes, strict=True):
        assert all(abs(a - b) <= 2 for a, b in zip(face.box, (x, y, w, h), strict=True)), (face.box, boxes)
    det = TruthDetector(boxes)
    fake_predictor(detector=det, detect_width=1000).predict(frame)  # never upscaled
    assert det.shapes == [(480, 640, 3)]


def test_given_detections_and_bad_settings() -> None:
    frame, boxes = _scene()
    det = TruthDetector(boxes)
    r = fake_predictor(detector=det, detect_every=3).predict(frame, detections=[Detection(box=boxes[0])])
    assert det.calls == [] and len(r.faces) == 1
    for kwargs in ({"detect_every": 0}, {"detect_every": 2.5}, {"detect_width": 8}):
        with pytest.raises(EdgeferError):
            fake_predictor(detector=det, **kwargs)
    with pytest.raises(EdgeferError):
        BoxCarrier(2, min_score=0.0)


def test_carrier_gives_up_on_a_flat_face() -> None:
    """A box with no texture cannot be followed: the next frame is detected again."""
    grey = np.full((240, 320), 128, np.uint8)
    carrier = BoxCarrier(5)
    carrier.refresh(grey, [Detection(box=(50, 50, 60, 60))])
    assert carrier.carry(grey) is None


def test_yunet_by_name_and_model_path(tmp_path: Path) -> None:
    with pytest.raises(DetectorError, match="opencv_zoo"):
        make_detector("yunet")
    with pytest.raises(DetectorError, match=r"not found.*opencv_zoo"):
        make_detector("yunet", tmp_path / "face_detection_yunet_2023mar.onnx")
    with pytest.raises(DetectorError, match="--detector-model"):
        make_detector("none", tmp_path / "x.onnx")


def test_cli_missing_yunet_weights_is_refused_before_the_model(tmp_path: Path, capsys) -> None:
    from _fake_runtime import run_cli

    video = tmp_path / "v.mp4"
    video.write_bytes(b"")
    args = ["run", "--model", str(tmp_path / "absent.onnx"), "--source", str(video), "--detector", "yunet"]
    rc, err = run_cli([*args, "--detector-model", str(tmp_path / "yunet.onnx")], capsys)
    assert rc == 2 and "yunet.onnx not found" in err and "opencv_zoo" in err and err.count("\n") == 1, err
    rc, err = run_cli([*args, "--detect-every", "0", "--detector", "none"], capsys)
    assert rc == 2 and "--detect-every" in err, err
