"""Still images: expand files and folders, predict each, optionally write annotated copies.

Unreadable files are not fatal: they get a record with ``error`` and are counted, so one
corrupt JPEG in a folder of thousands does not stop the run.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgefer.errors import EdgeferError
from edgefer.runtime.predictor import Predictor

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def iter_images(inputs: Iterable[str | os.PathLike]) -> Iterator[Path]:
    """Image files named by ``inputs``: files as given, folders searched recursively (sorted)."""
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            yield from sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            yield p
        else:
            raise EdgeferError(f"{p} is neither an image file nor a folder")


def read_image(path: str | os.PathLike) -> np.ndarray | None:
    """BGR uint8 image (alpha and 16-bit kept for the predictor to convert), or None if unreadable."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)  # works for non-ASCII paths, unlike imread
    except OSError:
        return None
    if data.size == 0:
        return None
    return cv2.imdecode(data, cv2.IMREAD_UNCHANGED)


def predict_images(
    predictor: Predictor, inputs: Iterable[str | os.PathLike], out_dir: str | os.PathLike | None = None
) -> list[dict[str, Any]]:
    """Predict every image of ``inputs``; one record per image (``path``, ``faces``, ``timings_ms``,
    ``error``). With ``out_dir``, annotated copies are written there (atomically) under the same name."""
    from edgefer.runtime.draw import draw_result
    from edgefer.utils.io import atomic_path, ensure_writable_dir

    out = ensure_writable_dir(out_dir) if out_dir is not None else None
    records = []
    for path in iter_images(inputs):
        image = read_image(path)
        if image is None:
            records.append({"path": str(path), "faces": [], "error": "unreadable image"})
            continue
        result = predictor.predict(image)
        record = {"path": str(path), **result.to_dict(predictor.class_names)}
        if out is not None and result.error is None:
            annotated = draw_result(image if image.ndim == 3 and image.shape[2] == 3 else _bgr(image), result)
            target = out / (path.stem + (path.suffix if path.suffix.lower() in (".jpg", ".jpeg", ".png") else ".png"))
            with atomic_path(target, suffix=target.suffix) as tmp:
                ok, buf = cv2.imencode(target.suffix, annotated)
                if not ok:
                    raise EdgeferError(f"cannot encode annotated image {target}")
                tmp.write_bytes(buf.tobytes())
            record["annotated"] = str(target)
        records.append(record)
    return records


def _bgr(image: np.ndarray) -> np.ndarray:
    from edgefer.runtime.predictor import as_bgr_frame

    return as_bgr_frame(image)
