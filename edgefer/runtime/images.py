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
from edgefer.utils.compat import is_within

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


def annotated_targets(
    inputs: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike | None = None,
    skipped: list[Path] | None = None,
) -> list[tuple[Path, str]]:
    """Every image of ``inputs`` with the path (relative to ``out_dir``) of its annotated copy.

    A file inside a folder input keeps its sub-path (``DIR/a/x.jpg`` -> ``a/x.jpg``), a file given
    directly its name; formats OpenCV cannot write back become ``.png``. Two images that would get
    the same annotated path are an error (nothing is overwritten silently), and files below
    ``out_dir`` itself (an output inside an input folder) are not inputs: they are appended to
    ``skipped`` when given. No image at all (an empty folder, or every image inside ``out_dir``)
    is an :class:`EdgeferError`: nothing to predict is not success.
    """
    from edgefer.utils.outputs import safe_child

    inputs = list(inputs)
    out = Path(out_dir).resolve() if out_dir is not None else None
    n_inside = 0
    pairs: list[tuple[Path, str]] = []
    taken: dict[str, Path] = {}
    for item in inputs:
        base = Path(item)
        for path in iter_images([item]):
            if out is not None and is_within(path.resolve(), out):
                n_inside += 1
                if skipped is not None:
                    skipped.append(path)
                continue
            rel = path.relative_to(base) if base.is_dir() else Path(path.name)
            if rel.suffix.lower() not in (".jpg", ".jpeg", ".png"):
                rel = rel.with_suffix(".png")
            key = rel.as_posix()
            if out_dir is not None:
                safe_child(out_dir, key, subdirs=True)
                if key.lower() in taken:
                    raise EdgeferError(
                        f"{taken[key.lower()]} and {path} would both be annotated as {Path(out_dir) / key}; "
                        "pass their common folder instead, or predict them in separate runs"
                    )
                taken[key.lower()] = path
            pairs.append((path, key))
    if not pairs:
        named = ", ".join(str(i) for i in inputs)
        if n_inside:
            raise EdgeferError(f"every image of {named} lies inside --out {out_dir}: nothing to predict")
        raise EdgeferError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {named}: nothing to predict")
    return pairs


def check_predicted(records: list[dict[str, Any]]) -> None:
    """Raise :class:`EdgeferError` when not one image could be read: a run that predicted nothing
    is not success (``edgefer predict`` once printed "annotated in DIR" and exited 0)."""
    if records and all(r.get("error") for r in records):
        raise EdgeferError(f"none of the {len(records)} images could be read (all unreadable): nothing was predicted")


def predict_images(
    predictor: Predictor,
    inputs: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike | None = None,
    *,
    overwrite: bool = False,
) -> list[dict[str, Any]]:
    """Predict every image of ``inputs``; one record per image (``path``, ``faces``, ``timings_ms``,
    ``error``). With ``out_dir``, annotated copies are written there under their relative path
    (see :func:`annotated_targets`), all at the end of the run (staged), following the output
    policy of :mod:`edgefer.utils.outputs`: an earlier annotated image is replaced only with
    ``overwrite``, a file edgefer did not write never. The targets are checked before any work."""
    from edgefer.runtime.draw import draw_result
    from edgefer.utils.outputs import check_outputs, staged_output

    inputs = list(inputs)
    pairs = annotated_targets(inputs, out_dir)
    records: list[dict[str, Any]] = []
    if out_dir is None:
        for path, _ in pairs:
            records.append(_predict_one(predictor, path)[0])
        return records
    check_outputs(out_dir, [rel for _, rel in pairs], overwrite=overwrite)
    with staged_output(out_dir, "predict", overwrite=overwrite, grouped=False) as stage:
        for path, rel in pairs:
            record, image, result = _predict_one(predictor, path)
            if image is not None and result is not None and result.error is None:
                annotated = draw_result(image if image.ndim == 3 and image.shape[2] == 3 else _bgr(image), result)
                staged = stage.path(rel, subdirs=True)
                ok, buf = cv2.imencode(staged.suffix, annotated)
                if not ok:
                    raise EdgeferError(f"cannot encode annotated image {rel}")
                staged.write_bytes(buf.tobytes())
                record["annotated"] = str(stage.final(staged))
            records.append(record)
    return records


def _predict_one(predictor: Predictor, path: Path) -> tuple[dict[str, Any], np.ndarray | None, Any]:
    image = read_image(path)
    if image is None:
        return {"path": str(path), "faces": [], "error": "unreadable image"}, None, None
    result = predictor.predict(image)
    return {"path": str(path), **result.to_dict(predictor.class_names)}, image, result


def _bgr(image: np.ndarray) -> np.ndarray:
    from edgefer.runtime.predictor import as_bgr_frame

    return as_bgr_frame(image)
