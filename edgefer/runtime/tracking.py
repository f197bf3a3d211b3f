"""Temporal smoothing for video: a light IoU tracker and per-track exponential smoothing.

A classifier run frame by frame flickers between neighbouring expressions (Neutral/Sadness,
Fear/Surprise) even when the face does not change. :class:`IoUTracker` links each frame's boxes
to the previous frame's tracks by greedy IoU matching (highest IoU first, a pair only when both
are still free and IoU >= ``iou_threshold``) - the SORT idea without its Kalman filter, enough at
camera frame rates where faces move little between frames. Each track keeps an exponential
moving average of the class probabilities, ``p = alpha * p_new + (1 - alpha) * p_old``, so the
label changes only when the new evidence persists for a few frames. Tracks unseen for more than
``max_age`` frames are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgefer.errors import EdgeferError


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two ``(x, y, w, h)`` boxes."""
    ax1, ay1, ax2, ay2 = a[0], a[1], a[0] + a[2], a[1] + a[3]
    bx1, by1, bx2, by2 = b[0], b[1], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax2, bx2) - max(ax1, bx1))
    ih = max(0.0, min(ay2, by2) - max(ay1, by1))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


@dataclass
class Track:
    """One face followed over frames."""

    track_id: int
    box: tuple[int, int, int, int]
    probs: np.ndarray = field(repr=False)
    hits: int = 1
    misses: int = 0


class IoUTracker:
    """Greedy IoU tracker with exponential smoothing of class probabilities.

    Args:
        alpha: weight of the newest probabilities (1.0 = no smoothing).
        iou_threshold: the least IoU for a detection to continue a track.
        max_age: frames a track survives without a matching detection.
    """

    def __init__(self, alpha: float = 0.5, iou_threshold: float = 0.3, max_age: int = 15) -> None:
        if not 0.0 < alpha <= 1.0:
            raise EdgeferError(f"smoothing alpha must be in (0, 1], got {alpha}")
        if not 0.0 <= iou_threshold <= 1.0:
            raise EdgeferError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
        self.alpha = alpha
        self.iou_threshold = iou_threshold
        self.max_age = max_age
        self.tracks: list[Track] = []
        self._next_id = 1

    def reset(self) -> None:
        self.tracks.clear()
        self._next_id = 1

    def update(self, boxes: list[tuple[int, int, int, int]], probs: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """Match this frame's boxes to tracks; return ``(track_id, smoothed_probs)`` per box, in order."""
        probs = np.asarray(probs, dtype=np.float64).reshape(len(boxes), -1) if len(boxes) else np.zeros((0, 0))
        pairs = sorted(
            ((iou(t.box, b), ti, bi) for ti, t in enumerate(self.tracks) for bi, b in enumerate(boxes)),
            reverse=True,
        )
        track_of: dict[int, int] = {}
        used_tracks: set[int] = set()
        for score, ti, bi in pairs:
            if score < self.iou_threshold:
                break
            if ti in used_tracks or bi in track_of:
                continue
            used_tracks.add(ti)
            track_of[bi] = ti
        out: list[tuple[int, np.ndarray]] = []
        for bi, box in enumerate(boxes):
            if bi in track_of:
                t = self.tracks[track_of[bi]]
                t.probs = self.alpha * probs[bi] + (1.0 - self.alpha) * t.probs
                t.box, t.hits, t.misses = tuple(box), t.hits + 1, 0
            else:
                t = Track(track_id=self._next_id, box=tuple(box), probs=probs[bi].copy())
                self._next_id += 1
                self.tracks.append(t)
                used_tracks.add(len(self.tracks) - 1)
            out.append((t.track_id, t.probs.copy()))
        for ti, t in enumerate(self.tracks):
            if ti not in used_tracks:
                t.misses += 1
        self.tracks = [t for t in self.tracks if t.misses <= self.max_age]
        return out


class BoxCarrier:
    """Carries the last detection's face boxes to the following frames, so the detector can run
    only every ``every`` frames.

    The face detector is the costliest stage of a frame (a Haar cascade ~50-75 ms on a 640x480
    frame on one core, against ~10 ms for the expression model), yet at camera frame rates a face
    moves a few pixels between frames. After a detection, each face's grey patch is kept as a
    template; on the next frames it is looked for by normalised cross-correlation
    (``cv2.matchTemplate``, ``TM_CCOEFF_NORMED``) in a window ``search`` box sides around its
    last position, both shrunk so the template is ``template_side`` pixels wide - about 0.1 ms a
    face whatever its size. The box (and its landmarks) moves by the offset found; its size is
    kept until the next detection. Matching is always against the template of the detection
    frame, so errors do not add up from frame to frame.

    A face is *lost* when its best match scores below ``min_score`` (it turned away, was
    covered, left the window or moved faster than the window); :meth:`carry` then returns
    ``None`` and the caller detects on that very frame. New faces are found at the next scheduled
    detection, at most ``every - 1`` frames late.

    ``phase`` shortens the first interval after a start (or :meth:`reset`) by that many frames: the
    streams of one run, started together, get phases 0, 1, 2... so their detections fall on different
    frames instead of all on the same tick (same work, but no tick that waits for every stream's
    detector at once).
    """

    def __init__(
        self, every: int, search: float = 0.5, min_score: float = 0.6, template_side: int = 32, phase: int = 0
    ) -> None:
        if every < 1:
            raise EdgeferError(f"detect every N frames needs N >= 1, got {every}")
        if search <= 0 or not 0.0 < min_score <= 1.0 or template_side < 8:
            raise EdgeferError(
                f"bad box-carrier settings: search={search} (> 0), min_score={min_score} (0..1], "
                f"template_side={template_side} (>= 8)"
            )
        self.every = every
        self.search = search
        self.min_score = min_score
        self.template_side = template_side
        self._faces: list[_Carried] = []
        self._since = 0  # frames since the last detection
        self._size: tuple[int, int] | None = None
        self._fresh = False
        self.phase = phase % every
        self._started = False  # the first detection since the start or reset is offset by ``phase``

    def reset(self) -> None:
        """Forget everything: the next frame is detected."""
        self._faces.clear()
        self._since = 0
        self._size = None
        self._started = False

    def due(self, frame_shape: tuple[int, ...]) -> bool:
        """Whether the next frame must go to the detector (schedule, first frame, new frame size)."""
        return self._size != (frame_shape[1], frame_shape[0]) or self._since + 1 >= self.every

    def refresh(self, grey: np.ndarray, detections: list[Any]) -> None:
        """Keep templates of the faces just detected on ``grey`` (the frame, one channel)."""
        self._size = (grey.shape[1], grey.shape[0])
        self._since = 0 if self._started else self.phase
        self._started = True
        self._faces = [c for c in (_Carried.make(grey, d, self.template_side) for d in detections) if c is not None]
        # a box with no texture (or off the frame) cannot be followed: detect next frame
        self._fresh = len(self._faces) == len(detections)

    def carry(self, grey: np.ndarray) -> list[Any] | None:
        """The detections moved to this frame, or ``None`` when a face is lost (detect now)."""
        if not self._fresh or (grey.shape[1], grey.shape[0]) != self._size:
            return None
        out = []
        for face in self._faces:
            moved = face.follow(grey, self.search, self.min_score)
            if moved is None:
                return None
            out.append(moved)
        self._since += 1
        return out


@dataclass
class _Carried:
    """One face between detections: its detection, template, shrink factor and current offset."""

    det: Any
    template: np.ndarray = field(repr=False)
    factor: float
    clip: tuple[int, int, int, int]  # the part of the detection box inside the frame, where the template is
    dx: int = 0
    dy: int = 0

    @staticmethod
    def make(grey: np.ndarray, det: Any, side: int) -> _Carried | None:
        import cv2

        x, y, w, h = det.box
        x0, y0 = max(0, x), max(0, y)
        x1, y1 = min(grey.shape[1], x + w), min(grey.shape[0], y + h)
        if x1 - x0 < 8 or y1 - y0 < 8:
            return None
        factor = min(1.0, side / (x1 - x0))
        patch = grey[y0:y1, x0:x1]
        if factor < 1.0:
            patch = cv2.resize(
                patch,
                (max(4, round((x1 - x0) * factor)), max(4, round((y1 - y0) * factor))),
                interpolation=cv2.INTER_AREA,
            )
        if float(patch.std()) < 2.0:  # flat: correlation is undefined
            return None
        return _Carried(det=det, template=np.ascontiguousarray(patch), factor=factor, clip=(x0, y0, x1 - x0, y1 - y0))

    def follow(self, grey: np.ndarray, search: float, min_score: float) -> Any | None:
        import cv2

        x, y, w, h = self.clip
        x, y = x + self.dx, y + self.dy
        pad_x, pad_y = max(2, round(w * search)), max(2, round(h * search))
        sx0, sy0 = max(0, x - pad_x), max(0, y - pad_y)
        sx1, sy1 = min(grey.shape[1], x + w + pad_x), min(grey.shape[0], y + h + pad_y)
        region = grey[sy0:sy1, sx0:sx1]
        f = self.factor
        if f < 1.0:
            region = cv2.resize(
                region, (max(1, round((sx1 - sx0) * f)), max(1, round((sy1 - sy0) * f))), interpolation=cv2.INTER_AREA
            )
        th, tw = self.template.shape[:2]
        if region.shape[0] < th or region.shape[1] < tw:
            return None  # pushed against the border: let the detector decide
        scores = cv2.matchTemplate(region, self.template, cv2.TM_CCOEFF_NORMED)
        _, best, _, (mx, my) = cv2.minMaxLoc(scores)
        if not np.isfinite(best) or best < min_score:
            return None
        self.dx = round(sx0 + mx / f) - self.clip[0]
        self.dy = round(sy0 + my / f) - self.clip[1]
        bx, by, bw, bh = self.det.box
        lm = self.det.landmarks
        shifted = None if lm is None else (lm + np.array([self.dx, self.dy], dtype=np.float32)).astype(np.float32)
        return type(self.det)(box=(bx + self.dx, by + self.dy, bw, bh), score=self.det.score, landmarks=shifted)
