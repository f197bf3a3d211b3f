"""Annotated frames: a box, label, score, track id and landmarks per face, plus a status line."""

from __future__ import annotations

import cv2
import numpy as np

from edgefer.runtime.predictor import FrameResult

#: One BGR colour per canonical class (Surprise, Fear, Disgust, Happiness, Sadness, Anger, Neutral).
CLASS_COLORS: tuple[tuple[int, int, int], ...] = (
    (0, 200, 255),
    (180, 0, 180),
    (0, 140, 70),
    (0, 220, 0),
    (200, 120, 0),
    (0, 0, 230),
    (200, 200, 200),
)


def _color(index: int) -> tuple[int, int, int]:
    return CLASS_COLORS[index % len(CLASS_COLORS)]


def draw_result(frame_bgr: np.ndarray, result: FrameResult, status: str | None = None) -> np.ndarray:
    """A copy of ``frame_bgr`` with the faces of ``result`` drawn on it (and ``status`` top-left)."""
    out = np.ascontiguousarray(frame_bgr).copy()
    h, w = out.shape[:2]
    thick = max(1, round(min(h, w) / 320))
    font_scale = max(0.4, min(h, w) / 900)
    for face in result.faces:
        x, y, bw, bh = face.box
        color = _color(face.class_index)
        cv2.rectangle(out, (x, y), (x + bw, y + bh), color, thick)
        text = f"{face.label} {face.score:.2f}"
        if face.track_id is not None:
            text = f"#{face.track_id} {text}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thick)
        ty = y - 4 if y - th - base - 4 >= 0 else min(h - 1, y + bh + th + 4)
        cv2.rectangle(out, (x, ty - th - base), (x + tw, ty + base), color, cv2.FILLED)
        cv2.putText(out, text, (x, ty), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), thick, cv2.LINE_AA)
        if face.landmarks is not None:
            for px, py in face.landmarks:
                cv2.circle(out, (int(px), int(py)), max(1, thick + 1), (255, 255, 0), cv2.FILLED)
    if status:
        cv2.putText(
            out,
            status,
            (8, 8 + int(22 * font_scale)),
            cv2.FONT_HERSHEY_SIMPLEX,
            font_scale,
            (0, 255, 255),
            thick,
            cv2.LINE_AA,
        )
    return out
