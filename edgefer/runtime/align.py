"""Face crops for the classifier: 5-point similarity alignment, or a square crop with margin.

RAF-DB's "aligned" images were made by a similarity transform of five facial landmarks onto a
fixed template; a model trained on them expects faces in that geometry. With landmarks we do the
same: :func:`align_by_landmarks` fits a similarity (rotation + uniform scale + translation,
``cv2.estimateAffinePartial2D`` with LMedS, robust to one bad landmark) from the detected points to
the ArcFace 112x112 template (the de-facto standard 5-point template, also used by RetinaFace
pipelines) scaled to the crop size. Without landmarks, :func:`crop_square` takes a square of side
``max(w, h) * (1 + margin)`` centred on the box, padding with black where it leaves the frame, so
faces at the border keep their aspect ratio and position in the crop.
"""

from __future__ import annotations

import cv2
import numpy as np

#: ArcFace / InsightFace 5-point template for a 112x112 crop: left eye, right eye, nose tip,
#: left mouth corner, right mouth corner (image coordinates).
ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)


def template_for(size: int) -> np.ndarray:
    """The 5-point template scaled to a ``size`` x ``size`` crop."""
    return ARCFACE_TEMPLATE_112 * (float(size) / 112.0)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 similarity matrix mapping ``src`` points onto ``dst`` (LMedS fit)."""
    src = np.asarray(src, dtype=np.float32).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float32).reshape(-1, 2)
    matrix, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.LMEDS)
    if matrix is None:  # degenerate points (all equal): fall back to a pure translation
        matrix = np.array([[1, 0, 0], [0, 1, 0]], dtype=np.float64)
        matrix[:, 2] = dst.mean(0) - src.mean(0)
    return matrix


def align_by_landmarks(frame: np.ndarray, landmarks: np.ndarray, size: int) -> np.ndarray:
    """Warp the face given by 5 landmarks onto the template: a ``size`` x ``size`` crop."""
    matrix = similarity_transform(landmarks, template_for(size))
    return cv2.warpAffine(frame, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def square_box(box: tuple[int, int, int, int], margin: float) -> tuple[int, int, int]:
    """Centre-anchored square around ``box`` grown by ``margin``: ``(x0, y0, side)``."""
    x, y, w, h = box
    side = max(1, round(max(w, h) * (1.0 + margin)))
    cx, cy = x + w / 2.0, y + h / 2.0
    return round(cx - side / 2.0), round(cy - side / 2.0), side


def crop_square(frame: np.ndarray, box: tuple[int, int, int, int], margin: float = 0.15) -> np.ndarray:
    """Square crop around ``box`` with ``margin``; parts outside the frame are black."""
    x0, y0, side = square_box(box, margin)
    h, w = frame.shape[:2]
    x1, y1 = x0 + side, y0 + side
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if cx0 >= cx1 or cy0 >= cy1:  # entirely outside the frame
        return np.zeros((side, side, *frame.shape[2:]), dtype=frame.dtype)
    crop = frame[cy0:cy1, cx0:cx1]
    pads = (cy0 - y0, y1 - cy1, cx0 - x0, x1 - cx1)
    if any(pads):
        crop = cv2.copyMakeBorder(crop, *pads, borderType=cv2.BORDER_CONSTANT, value=0)
    return np.ascontiguousarray(crop)
