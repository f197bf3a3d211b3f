"""Format detection and the one entry point to every dataset layout: :func:`open_dataset`.

Layouts, tried in this order (the first that matches wins):

``rafdb``          RAF-DB official: ``[ROOT/]basic/EmoLabel/list_patition_label.txt`` + ``basic/Image/aligned/``
``fer2013``        a csv with columns ``emotion,pixels[,Usage]``, or a folder holding ``fer2013.csv``
``rafdb_folders``  RAF-DB re-packed: ``[ROOT/]DATASET/{train,test}/{1..7}/*.jpg`` (+ optional ``*_labels.csv``)
``folders``        ``ROOT/{train,val,test}/<class name>/*.{jpg,png}``
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgefer.data.base import ON_ERROR, FERDataset, canonical_split
from edgefer.data.fer2013 import fer2013_splits, find_fer2013_csv, open_fer2013
from edgefer.data.folders import looks_like_folders, open_folders, split_dirs
from edgefer.data.rafdb import (
    find_rafdb_base,
    find_repacked_root,
    open_rafdb,
    open_rafdb_folders,
    rafdb_splits,
    repacked_splits,
)
from edgefer.errors import DatasetError
from edgefer.labels import CLASS_NAMES
from edgefer.utils.compat import zip_strict

FORMATS = ("rafdb", "fer2013", "rafdb_folders", "folders")

LAYOUTS_HELP = """\
  rafdb          RAF-DB official: PATH/basic/EmoLabel/list_patition_label.txt and PATH/basic/Image/aligned/*.jpg
  fer2013        FER2013: a csv file with columns emotion,pixels,Usage (or PATH/fer2013.csv)
  rafdb_folders  RAF-DB re-packed: PATH/DATASET/{train,test}/{1..7}/*.jpg, optional train_labels.csv/test_labels.csv
  folders        image folders: PATH/{train,val,test}/<class name>/*.jpg|png (class names like happy, angry)"""


def _detect(p: Path) -> tuple[str, Path] | None:
    """The layout at ``p`` and the root its reader opens, or None."""
    base = find_rafdb_base(p)
    if base is not None:
        return "rafdb", base
    csv_path = find_fer2013_csv(p)
    if csv_path is not None:
        return "fer2013", csv_path
    if p.is_dir():
        repacked = find_repacked_root(p)
        if repacked is not None:
            return "rafdb_folders", repacked
        if looks_like_folders(p):
            return "folders", p
    return None


def _resolve(path: str | os.PathLike) -> tuple[str, Path]:
    p = Path(path).expanduser()
    if not p.exists():
        raise DatasetError(f"dataset path {p} does not exist")
    found = _detect(p)
    if found is not None:
        return found
    # A common slip: pointing at the folder above the dataset (e.g. runs/demo/data instead of
    # runs/demo/data/synthetic). Name the sub-folders that do hold one, rather than guess.
    hint = ""
    if p.is_dir():
        subs = sorted(c for c in p.iterdir() if c.is_dir() and not c.name.startswith("."))[:50]
        inside = [f"{c} ({fmt})" for c in subs if (hit := _detect(c)) is not None for fmt in [hit[0]]]
        if inside:
            hint = f"\nA dataset was found one level down; did you mean {' or '.join(inside[:3])}?"
    raise DatasetError(f"no known dataset layout at {p}. Looked for:\n{LAYOUTS_HELP}{hint}")


def detect_format(path: str | os.PathLike) -> str:
    """Name of the layout at ``path`` (one of :data:`FORMATS`); :class:`DatasetError` if none matches."""
    return _resolve(path)[0]


def list_splits(path: str | os.PathLike) -> list[str]:
    """The splits present at ``path``, in train/val/test order (RAF-DB has no val)."""
    fmt, where = _resolve(path)
    if fmt == "rafdb":
        return rafdb_splits(where)
    if fmt == "fer2013":
        return fer2013_splits(where)
    if fmt == "rafdb_folders":
        return repacked_splits(where)
    dirs = split_dirs(where)
    return [s for s in ("train", "val", "test") if s in dirs]


def open_dataset(
    path: str | os.PathLike,
    split: str = "train",
    on_error: str = "skip",
    image_variant: str = "aligned",
    *,
    validate: bool = False,
    allow_missing_classes: bool = False,
    progress: bool = False,
) -> FERDataset:
    """Open one split of the dataset at ``path`` (format detected, see :data:`LAYOUTS_HELP`).

    Args:
        split: ``train``, ``val`` or ``test`` (also ``training``/``validation``/...). Asking for a
            split the layout lacks (RAF-DB has no ``val``) is a :class:`DatasetError` that says so.
        on_error: ``"skip"`` drops and counts unreadable/missing images (``ds.skipped``);
            ``"raise"`` stops at the first one with a :class:`DatasetError` naming the file.
        image_variant: RAF-DB official only: ``aligned`` (100x100 faces) or ``original``.
        validate: decode every image now and drop the unreadable ones (otherwise they are found,
            counted and replaced at read time).
        allow_missing_classes: accept a train split that lacks a class (an error otherwise).
            Val/test splits that lack a class only warn: evaluation on them is still meaningful.

    Empty splits and unknown labels are errors.
    """
    if on_error not in ON_ERROR:
        raise DatasetError(f"on_error must be one of {ON_ERROR}, not {on_error!r}")
    split = canonical_split(split)
    fmt, where = _resolve(path)
    if fmt == "rafdb":
        ds = open_rafdb(where, split, on_error, image_variant)
    elif fmt == "fer2013":
        ds = open_fer2013(where, split, on_error)
    elif fmt == "rafdb_folders":
        ds = open_rafdb_folders(where, split, on_error)
    else:
        ds = open_folders(where, split, on_error)
    if validate:
        ds.validate(progress=progress)
    ds.check_classes(allow_missing_classes)
    return ds


def dataset_info(path: str | os.PathLike, validate: bool = False, progress: bool = False) -> dict[str, Any]:
    """Format, root, and per split: size, class histogram, skipped images, missing classes."""
    import warnings

    fmt, where = _resolve(path)
    splits: dict[str, Any] = {}
    for split in list_splits(path):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            try:
                ds = open_dataset(path, split, validate=validate, allow_missing_classes=True, progress=progress)
            except DatasetError as exc:
                splits[split] = {"size": 0, "error": str(exc)}
                continue
        counts = ds.class_counts()
        splits[split] = {
            "size": len(ds),
            "histogram": {name: int(n) for name, n in zip_strict(CLASS_NAMES, counts)},
            "skipped": ds.skipped,
            "skipped_ids": list(ds.skipped_ids),
            "missing_classes": [n for n, c in zip_strict(CLASS_NAMES, counts) if c == 0],
        }
    return {
        "format": fmt,
        "path": str(where.parent if fmt == "rafdb" and where.name == "basic" else where),
        "class_names": list(CLASS_NAMES),
        "splits": splits,
        "skipped": sum(s.get("skipped", 0) for s in splits.values()),
        "validated": validate,
    }
