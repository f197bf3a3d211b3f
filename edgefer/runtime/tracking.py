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
