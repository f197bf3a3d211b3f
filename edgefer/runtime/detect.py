"""Face detection behind one small interface: ``detect(frame_bgr) -> list[Detection]``.

Three detectors, picked by :func:`make_detector` from a short spec string:

* ``"haar"`` (and ``"auto"``): OpenCV's Haar cascade ``haarcascade_frontalface_default.xml``
  from ``cv2.data.haarcascades``. It needs no download, which is why it is the default, but it
  finds frontal faces only and gives no landmarks (faces are then cropped square with a margin).
  OpenCV 5 dropped the cascades and ``cv2.data`` from its wheels; there we say so and point to
  YuNet or ``opencv-python-headless<5``.
* ``"yunet:/path/face_detection_yunet_2023mar.onnx"``: OpenCV's YuNet (``cv2.FaceDetectorYN``),
  a small CNN with 5 landmarks per face (eyes, nose tip, mouth corners), which lets the runtime
  align faces like RAF-DB's aligned crops. Its weights are in no wheel: the user points to the
  file from the OpenCV model zoo.
* ``"none"`` / ``"full"``: the whole frame is one face (pre-aligned input, ``--aligned``).

Every detector returns boxes as integer ``(x, y, w, h)`` in the coordinates of the frame it was
given. :func:`detect_scaled` runs a detector on a downscaled copy of a very large frame and maps
the boxes and landmarks back, so a 24-megapixel photo costs what a 1280-pixel one does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from edgefer.errors import EdgeferError


class DetectorError(EdgeferError):
    """A face detector that cannot be created (missing cascade, missing YuNet weights)."""


@dataclass
class Detection:
    """One face found in a frame: box ``(x, y, w, h)`` in pixels, a score, optional 5 landmarks.

    ``landmarks`` is a (5, 2) float32 array in image order: left eye, right eye, nose tip, left
    mouth corner, right mouth corner ("left" = smaller x in the image), or ``None``.
    """

    box: tuple[int, int, int, int]
    score: float = 1.0
    landmarks: np.ndarray | None = field(default=None, repr=False)

    def scaled(self, factor: float) -> Detection:
        """The same detection with coordinates multiplied by ``factor``."""
        x, y, w, h = self.box
        box = (round(x * factor), round(y * factor), max(1, round(w * factor)), max(1, round(h * factor)))
        lm = None if self.landmarks is None else (self.landmarks * factor).astype(np.float32)
        return Detection(box=box, score=self.score, landmarks=lm)


@runtime_checkable
class FaceDetector(Protocol):
    """Anything with ``detect(frame_bgr) -> list[Detection]`` (and a ``name`` for reports)."""

    name: str

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]: ...


class HaarDetector:
    """OpenCV Haar cascade (Viola-Jones) frontal-face detector; no landmarks, no download.

    ``min_size_frac`` is the smallest face as a fraction of the frame's shorter side; the score
    is the cascade's level weight (larger = more confident), as returned by ``detectMultiScale3``.
    The cascade runs on a copy downscaled to ``max_side`` pixels (480: a 640x480 frame costs ~50 ms
    on one core instead of ~300 ms at full size with ``scale_factor=1.1`` and 5 % faces) and the
    boxes are mapped back; faces smaller than ``min_size_frac`` of the frame are not looked for.
    """

    name = "haar"

    def __init__(
        self,
        cascade: str | os.PathLike | None = None,
        scale_factor: float = 1.15,
        min_neighbors: int = 5,
        min_size_frac: float = 0.1,
        max_side: int | None = 480,
    ) -> None:
        path = Path(cascade) if cascade is not None else _default_cascade()
        if not path.exists():
            raise DetectorError(f"Haar cascade {path} does not exist")
        try:  # a file that is not a cascade: cv2.error, or a SystemError around it (OpenCV 4.x)
            self._cascade = cv2.CascadeClassifier(str(path))
        except (cv2.error, SystemError) as exc:
            raise DetectorError(
                f"{path} is not a Haar cascade OpenCV can load ({_first_line(exc.__cause__ or exc)})"
            ) from None
        if self._cascade.empty():
            raise DetectorError(f"OpenCV could not load the Haar cascade {path}")
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size_frac = min_size_frac
        self.max_side = max_side

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        small, factor = _downscaled(frame_bgr, self.max_side)
        dets = self._detect(small)
        return dets if factor == 1.0 else [d.scaled(1.0 / factor) for d in dets]

    def _detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        grey = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY) if frame_bgr.ndim == 3 else frame_bgr
        if min(grey.shape[:2]) < 24:  # smaller than the cascade window: nothing to find
            return []
        grey = cv2.equalizeHist(grey)
        side = max(24, int(min(grey.shape[:2]) * self.min_size_frac))
        boxes, _levels, weights = self._cascade.detectMultiScale3(
            grey,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(side, side),
            outputRejectLevels=True,
        )
        weights = np.asarray(weights, dtype=np.float64).ravel()
        out = []
        for i, (x, y, w, h) in enumerate(np.asarray(boxes).reshape(-1, 4)):
            score = float(weights[i]) if i < weights.size else 1.0
            out.append(Detection(box=(int(x), int(y), int(w), int(h)), score=score))
        return out


def _first_line(exc: BaseException) -> str:
    """The informative line of an OpenCV error (its text starts with a blank line and a source path)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:200]


def _default_cascade() -> Path:
    data = getattr(cv2, "data", None)
    root = getattr(data, "haarcascades", None)
    if not root:
        raise DetectorError(
            f"this OpenCV ({cv2.__version__}) ships no Haar cascades (OpenCV 5 dropped them and "
            "cv2.data). Install 'opencv-python-headless<5', or use YuNet: "
            "--detector yunet:/path/face_detection_yunet_2023mar.onnx"
        )
    return Path(root) / "haarcascade_frontalface_default.xml"


class YuNetDetector:
    """OpenCV YuNet (``cv2.FaceDetectorYN``): boxes, scores and 5 landmarks per face.

    Weights: ``face_detection_yunet_2023mar.onnx`` from the OpenCV model zoo (not in any wheel).
    YuNet's landmark order (right eye, left eye, nose, right mouth corner, left mouth corner, in
    the *subject's* terms) is image-left first, which is the order :class:`Detection` uses.
    """

    name = "yunet"

    def __init__(
        self,
        weights: str | os.PathLike,
        score_threshold: float = 0.7,
        nms_threshold: float = 0.3,
        top_k: int = 50,
    ) -> None:
        path = Path(weights)
        if not path.is_file():
            raise DetectorError(
                f"YuNet weights {path} not found: download face_detection_yunet_2023mar.onnx from the "
                "OpenCV model zoo (github.com/opencv/opencv_zoo, models/face_detection_yunet)"
            )
        if not hasattr(cv2, "FaceDetectorYN"):
            raise DetectorError(f"this OpenCV ({cv2.__version__}) has no cv2.FaceDetectorYN (needs >= 4.5.4)")
        try:
            self._det = cv2.FaceDetectorYN.create(str(path), "", (320, 320), score_threshold, nms_threshold, top_k)
            # an ONNX that is not YuNet loads, then fails on its first frame: try one now
            self._det.detect(np.zeros((320, 320, 3), np.uint8))
        except (cv2.error, SystemError) as exc:
            raise DetectorError(
                f"{path} is not YuNet face-detector weights OpenCV can run ({_first_line(exc)}); "
                "use face_detection_yunet_2023mar.onnx from github.com/opencv/opencv_zoo"
            ) from None
        self._size: tuple[int, int] = (320, 320)

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        h, w = frame_bgr.shape[:2]
        if (w, h) != self._size:
            self._det.setInputSize((w, h))
            self._size = (w, h)
        _, faces = self._det.detect(frame_bgr)
        out = []
        for row in np.asarray(faces if faces is not None else []).reshape(-1, 15):
            x, y, bw, bh = (round(v) for v in row[:4])
            out.append(
                Detection(
                    box=(x, y, bw, bh), score=float(row[14]), landmarks=row[4:14].reshape(5, 2).astype(np.float32)
                )
            )
        return out


class FullFrameDetector:
    """The whole frame is one face: for pre-aligned crops (``--aligned``)."""

    name = "full"

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        h, w = frame_bgr.shape[:2]
        return [Detection(box=(0, 0, int(w), int(h)), score=1.0)]


def make_detector(spec: str | FaceDetector | None = "auto", model: str | os.PathLike | None = None) -> FaceDetector:
    """A detector from a spec: ``auto``/``haar``, ``haar:/path/cascade.xml``, ``yunet:/path.onnx``,
    ``none``/``full`` (whole frame), ``None`` (whole frame), or a ready :class:`FaceDetector`.

    ``model`` is the weights file for a detector named without one (``yunet`` + ``model`` is
    ``yunet:model``; ``edgefer run --detector yunet --detector-model PATH``)."""
    if model is not None:
        if not isinstance(spec, str) or ":" in spec or spec.strip().lower() not in ("auto", "haar", "yunet"):
            raise DetectorError(
                f"--detector-model is the weights file of --detector yunet (or a cascade for haar), not of {spec!r}"
            )
        spec = f"{spec.strip().lower()}:{model}"
    if spec is None:
        return FullFrameDetector()
    if not isinstance(spec, str):
        if not hasattr(spec, "detect"):
            raise DetectorError(f"{spec!r} is not a face detector (it has no detect(frame) method)")
        return spec
    kind, _, arg = spec.partition(":")
    kind = kind.strip().lower()
    if kind in ("auto", "haar"):
        return HaarDetector(arg or None)
    if kind == "yunet":
        if not arg:
            raise DetectorError(
                "YuNet needs its weights: --detector yunet --detector-model /path/face_detection_yunet_2023mar.onnx "
                "(download it from github.com/opencv/opencv_zoo, models/face_detection_yunet)"
            )
        return YuNetDetector(arg)
    if kind in ("none", "full"):
        return FullFrameDetector()
    raise DetectorError(f"unknown detector {spec!r}; use auto, haar[:cascade.xml], yunet:/path/weights.onnx or none")


def detect_scaled(
    detector: FaceDetector, frame_bgr: np.ndarray, max_side: int | None, width: int | None = None
) -> list[Detection]:
    """Run ``detector`` on ``frame_bgr`` downscaled so its longer side is ``max_side`` at most and its
    width ``width`` at most, and return detections in the coordinates of the full frame."""
    if isinstance(detector, FullFrameDetector):
        return detector.detect(frame_bgr)
    small, factor = _downscaled(frame_bgr, max_side, width)
    if factor == 1.0:
        return detector.detect(frame_bgr)
    return [d.scaled(1.0 / factor) for d in detector.detect(small)]


def _downscaled(frame: np.ndarray, max_side: int | None, width: int | None = None) -> tuple[np.ndarray, float]:
    """``frame`` shrunk so its longer side is at most ``max_side`` and its width at most ``width``,
    and the factor used."""
    h, w = frame.shape[:2]
    factor = 1.0
    if max_side and max(h, w) > max_side:
        factor = max_side / max(h, w)
    if width and w * factor > width:
        factor = width / w
    if factor == 1.0:
        return frame, 1.0
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA), factor
