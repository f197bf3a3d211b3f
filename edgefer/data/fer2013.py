"""FER2013 reader: the Kaggle challenge csv (``emotion,pixels,Usage``).

Each row is a 48x48 grey face as 2304 space-separated pixel values. ``Usage`` gives the split:
``Training`` -> train, ``PublicTest`` -> val, ``PrivateTest`` -> test (the usual protocol reports
PrivateTest). A csv without ``Usage`` (the challenge's ``train.csv``) is all train. Emotions
0..6 (Angry, Disgust, Fear, Happy, Sad, Surprise, Neutral) are mapped to the canonical order.
Grey images are returned as 3-channel RGB so every reader yields the same kind of array.

Pixels are parsed when the split is opened (about a second for the full set) and kept as a
uint8 array (66 MB for train); rows whose pixel string is malformed are unreadable images and
follow the ``on_error`` policy.
"""

from __future__ import annotations

import contextlib
import csv
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edgefer.data.base import FERDataset, canonical_split
from edgefer.errors import DatasetError
from edgefer.labels import fer2013_label_to_index

SIDE = 48
USAGE_TO_SPLIT = {"training": "train", "publictest": "val", "privatetest": "test"}
CSV_NAMES = ("fer2013.csv", "icml_face_data.csv", "train.csv")


def find_fer2013_csv(path: Path) -> Path | None:
    """The csv for a csv path, or a folder holding ``fer2013.csv`` (also ``fer2013/fer2013.csv``)."""
    candidates = [path] if path.is_file() else [path / n for n in CSV_NAMES] + [path / "fer2013" / "fer2013.csv"]
    for cand in candidates:
        if cand.is_file() and cand.suffix.lower() == ".csv" and _has_fer_header(cand):
            return cand
    return None


def _header(path: Path) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            return [h.strip().lower() for h in next(csv.reader(fh), [])]
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def _has_fer_header(path: Path) -> bool:
    header = _header(path)
    return "emotion" in header and "pixels" in header


@contextlib.contextmanager
def _rows(path: Path) -> Iterator[tuple[list[str], Iterator[list[str]]]]:
    """Stream ``(header, rows)`` of the csv (the full FER2013 text is ~300 MB; never held at once)."""
    csv.field_size_limit(min(sys.maxsize, 1 << 24))
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = [h.strip().lower() for h in next(reader, [])]
            yield header, reader
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"cannot read FER2013 csv {path}: {exc}") from None


def _split_of(row: list[str], usage_col: int | None, path: Path, lineno: int) -> str:
    if usage_col is None:
        return "train"
    usage = row[usage_col].strip().lower()
    if usage not in USAGE_TO_SPLIT:
        raise DatasetError(
            f"{path}:{lineno}: unknown Usage {row[usage_col]!r} (expected Training, PublicTest or PrivateTest)"
        )
    return USAGE_TO_SPLIT[usage]


def fer2013_splits(path: Path) -> list[str]:
    with _rows(path) as (header, rows):
        if "usage" not in header:
            return ["train"]
        col = header.index("usage")
        present = {USAGE_TO_SPLIT.get(r[col].strip().lower()) for r in rows if len(r) > col}
    return [s for s in ("train", "val", "test") if s in present]


def parse_pixels(text: str) -> np.ndarray | None:
    """A 48x48 uint8 array from the space-separated pixel string, or None if malformed."""
    try:
        values = np.array(text.split(), dtype=np.int64)
    except ValueError:
        return None
    if values.size != SIDE * SIDE or values.min(initial=0) < 0 or values.max(initial=0) > 255:
        return None
    return values.astype(np.uint8).reshape(SIDE, SIDE)


def _parse_split(
    path: Path, header: list[str], rows: Iterator[list[str]], split: str
) -> tuple[list[str], list[int], list[np.ndarray], list[tuple[str, str]]]:
    """Ids, labels, 48x48 pixel arrays and ``(id, reason)`` of malformed rows, for one split."""
    for col in ("emotion", "pixels"):
        if col not in header:
            raise DatasetError(f"{path}: FER2013 csv needs columns emotion,pixels[,Usage]; got {','.join(header)}")
    e_col, p_col = header.index("emotion"), header.index("pixels")
    u_col = header.index("usage") if "usage" in header else None
    if u_col is None and split != "train":
        raise DatasetError(f"{path} has no Usage column, so it has only a train split (asked for {split!r})")
    need = max(e_col, p_col, u_col or 0)
    ids: list[str] = []
    labels: list[int] = []
    images: list[np.ndarray] = []
    bad: list[tuple[str, str]] = []
    for lineno, row in enumerate(rows, start=2):
        if not row or not any(c.strip() for c in row):
            continue
        if len(row) <= need:
            raise DatasetError(f"{path}:{lineno}: expected {len(header)} columns, got {len(row)}")
        if _split_of(row, u_col, path, lineno) != split:
            continue
        try:
            label = fer2013_label_to_index(row[e_col].strip())
        except DatasetError as exc:
            raise DatasetError(f"{path}:{lineno}: {exc}") from None
        sid = f"row_{lineno:06d}"
        pixels = parse_pixels(row[p_col])
        if pixels is None:
            bad.append((sid, f"{path}:{lineno}: pixels are not {SIDE * SIDE} values 0..255"))
            pixels = np.zeros((SIDE, SIDE), np.uint8)
        ids.append(sid)
        labels.append(label)
        images.append(pixels)
    return ids, labels, images, bad


def open_fer2013(path: Path, split: str, on_error: str) -> FERDataset:
    """Read one split (train / val = PublicTest / test = PrivateTest) of a FER2013 csv."""
    split = canonical_split(split)
    with _rows(path) as (header, rows):
        ids, labels, images, bad = _parse_split(path, header, rows, split)
    stack = np.stack(images) if images else np.zeros((0, SIDE, SIDE), np.uint8)
    bad_reason = dict(bad)

    def read(index: int) -> np.ndarray:
        sid = ids[index]
        if sid in bad_reason:
            raise DatasetError(f"unreadable image: {bad_reason[sid]}")
        return np.ascontiguousarray(np.repeat(stack[index][:, :, None], 3, axis=2))

    ds = FERDataset(
        ids=ids,
        labels=labels,
        sources=list(range(len(ids))),
        read=read,
        format="fer2013",
        root=path,
        split=split,
        on_error=on_error,
        describe=lambda index: bad_reason.get(ids[index], f"{path}:{int(ids[index][4:])}"),
    )
    if bad:
        bad_ids = set(bad_reason)
        ds.drop([i for i, sid in enumerate(ds.ids) if sid in bad_ids], reason="unreadable")
    return ds
