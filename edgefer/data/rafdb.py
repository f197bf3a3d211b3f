"""RAF-DB readers: the official ``basic/`` layout and the common re-packed folder layout.

Official (as the authors ship it, http://www.whdeng.cn/RAF/model1.html)::

    basic/EmoLabel/list_patition_label.txt     lines "train_00001.jpg 5", labels 1..7
    basic/Image/aligned/train_00001_aligned.jpg   100x100 aligned faces
    basic/Image/original/train_00001.jpg          the original photos

The split is the file-name prefix (``train_`` / ``test_``); RAF-DB has no validation split.

Re-packed (the widespread Kaggle copy)::

    DATASET/train/<1..7>/train_00001_aligned.jpg
    DATASET/test/<1..7>/test_0001_aligned.jpg
    train_labels.csv, test_labels.csv              optional, columns "image,label" (label 1..7)

When a csv is present it is the label source and the folder is only where the file is looked
for; otherwise the folder number is the label. Labels 1..7 follow the canonical order.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from edgefer.data.base import IMAGE_EXTENSIONS, FERDataset, canonical_split, read_image
from edgefer.errors import DatasetError
from edgefer.labels import rafdb_label_to_index
from edgefer.utils.compat import zip_strict

LABEL_FILE_NAME = "list_patition_label.txt"
RAFDB_SPLITS = ("train", "test")
VARIANTS = ("aligned", "original")


# -- official layout ------------------------------------------------------------------------
def find_rafdb_base(path: Path) -> Path | None:
    """The ``basic/`` folder for a RAF-DB root, ``basic/`` itself, or the label file; else None."""
    if path.is_file():
        return path.parent.parent if path.name == LABEL_FILE_NAME and path.parent.name == "EmoLabel" else None
    for base in (path / "basic", path):
        if (base / "EmoLabel" / LABEL_FILE_NAME).is_file():
            return base
    return None


def parse_label_file(label_file: Path) -> list[tuple[str, str, int]]:
    """``(split, file name, canonical label)`` per line; bad lines raise naming file and line."""
    try:
        text = label_file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read RAF-DB label file {label_file}: {exc}") from None
    rows: list[tuple[str, str, int]] = []
    seen: set[str] = set()
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{label_file}:{lineno}"
        parts = line.split()
        if len(parts) != 2:
            raise DatasetError(f"{where}: expected 'train_00001.jpg <label 1..7>', got {line.strip()!r}")
        name, label = parts
        prefix = name.split("_", 1)[0].lower()
        if prefix not in RAFDB_SPLITS or "_" not in name:
            raise DatasetError(f"{where}: image name {name!r} does not start with train_ or test_")
        try:
            index = rafdb_label_to_index(label)
        except DatasetError as exc:
            raise DatasetError(f"{where}: {exc}") from None
        if name in seen:
            raise DatasetError(f"{where}: {name} is listed twice")
        seen.add(name)
        rows.append((prefix, name, index))
    if not rows:
        raise DatasetError(f"RAF-DB label file {label_file} has no entries")
    return rows


def _image_name(name: str, variant: str) -> str:
    if variant == "aligned":
        stem, _ = os.path.splitext(name)
        return f"{stem}_aligned.jpg"
    return name


def _no_split(fmt: str, root: Path, split: str, available: tuple[str, ...] | list[str]) -> DatasetError:
    hint = " (hold out part of train for validation; edgefer train does this)" if split == "val" else ""
    return DatasetError(
        f"the {fmt} dataset at {root} has no {split!r} split; it has: {', '.join(available) or 'none'}{hint}"
    )


def rafdb_splits(base: Path) -> list[str]:
    present = {row[0] for row in parse_label_file(base / "EmoLabel" / LABEL_FILE_NAME)}
    return [s for s in RAFDB_SPLITS if s in present]


def open_rafdb(base: Path, split: str, on_error: str, image_variant: str = "aligned") -> FERDataset:
    """Read one split of the official layout under ``base`` (the ``basic/`` folder)."""
    split = canonical_split(split)
    if image_variant not in VARIANTS:
        raise DatasetError(f"image_variant must be one of {VARIANTS}, not {image_variant!r}")
    rows = parse_label_file(base / "EmoLabel" / LABEL_FILE_NAME)
    if split not in RAFDB_SPLITS:
        raise _no_split("rafdb", base, split, rafdb_splits(base))
    image_dir = base / "Image" / image_variant
    if not image_dir.is_dir():
        raise DatasetError(
            f"RAF-DB image folder {image_dir} is missing (expected basic/Image/{image_variant}/ beside basic/EmoLabel/)"
        )
    present = set(os.listdir(image_dir))
    chosen = [(name, label) for prefix, name, label in rows if prefix == split]
    files = [_image_name(name, image_variant) for name, _ in chosen]
    ids = [os.path.splitext(name)[0] for name, _ in chosen]
    ds = FERDataset(
        ids=ids,
        labels=[label for _, label in chosen],
        sources=[image_dir / f for f in files],
        read=read_image,
        format="rafdb",
        root=base.parent if base.name == "basic" else base,
        split=split,
        on_error=on_error,
    )
    gone = {sid for sid, f in zip_strict(ids, files) if f not in present}
    ds.drop([i for i, sid in enumerate(ds.ids) if sid in gone], reason="missing")
    return ds


# -- re-packed folder layout ----------------------------------------------------------------
def _is_label_dir(p: Path) -> bool:
    return p.is_dir() and p.name.isdigit()


def find_repacked_root(path: Path) -> Path | None:
    """The folder holding ``train/`` and ``test/`` with numbered class folders, or None."""
    for cand in (path / "DATASET", path):
        if not cand.is_dir():
            continue
        for split_dir in (cand / "train", cand / "test"):
            if split_dir.is_dir() and any(_is_label_dir(p) for p in split_dir.iterdir()):
                return cand
    return None


def _find_csv(dataset_dir: Path, split: str) -> Path | None:
    for folder in (dataset_dir, dataset_dir.parent):
        for name in (f"{split}_labels.csv", f"{split}_label.csv"):
            if (folder / name).is_file():
                return folder / name
    return None


def _read_label_csv(path: Path) -> list[tuple[str, int]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = [h.strip().lower() for h in next(reader, [])]
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from None
    name_col = next((header.index(c) for c in ("image", "name", "file", "filename", "image_name") if c in header), None)
    label_col = next((header.index(c) for c in ("label", "emotion", "class") if c in header), None)
    if name_col is None or label_col is None:
        raise DatasetError(f"{path}: expected a header with columns 'image,label', got {','.join(header)!r}")
    out: list[tuple[str, int]] = []
    for lineno, row in enumerate(rows, start=2):
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(name_col, label_col):
            raise DatasetError(f"{path}:{lineno}: expected {len(header)} columns, got {row!r}")
        try:
            out.append((row[name_col].strip(), rafdb_label_to_index(row[label_col].strip())))
        except DatasetError as exc:
            raise DatasetError(f"{path}:{lineno}: {exc}") from None
    return out


def repacked_splits(root: Path) -> list[str]:
    return [s for s in RAFDB_SPLITS if (root / s).is_dir()]


def open_rafdb_folders(root: Path, split: str, on_error: str) -> FERDataset:
    """Read one split of ``DATASET/<split>/<1..7>/`` (labels from the csv when present)."""
    split = canonical_split(split)
    split_dir = root / split
    if split not in RAFDB_SPLITS or not split_dir.is_dir():
        raise _no_split("rafdb_folders", root, split, repacked_splits(root))
    files: dict[str, Path] = {}
    folder_label: dict[str, int] = {}
    for sub in sorted(split_dir.iterdir()):
        if sub.name.startswith(".") or not sub.is_dir():
            continue
        if not sub.name.isdigit():
            raise DatasetError(f"{sub}: RAF-DB class folders must be named 1..7, found {sub.name!r}")
        try:
            label = rafdb_label_to_index(sub.name)
        except DatasetError as exc:
            raise DatasetError(f"{sub}: {exc}") from None
        for f in sorted(sub.iterdir()):
            if f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith("."):
                if f.name in files:
                    raise DatasetError(f"{f.name} appears in two class folders of {split_dir}")
                files[f.name] = f
                folder_label[f.name] = label
    label_csv = _find_csv(root, split)
    if label_csv is None:
        names = list(files)
        labels = [folder_label[n] for n in names]
        sources = [files[n] for n in names]
        missing: list[int] = []
    else:
        entries = _read_label_csv(label_csv)
        names = [n for n, _ in entries]
        labels = [lab for _, lab in entries]
        sources = [files.get(n, split_dir / str(lab + 1) / n) for n, lab in entries]
        missing = [i for i, n in enumerate(names) if n not in files]
        if len(set(names)) != len(names):
            raise DatasetError(f"{label_csv}: an image is listed twice")
    ds = FERDataset(
        ids=[os.path.splitext(n)[0] for n in names],
        labels=labels,
        sources=sources,
        read=read_image,
        format="rafdb_folders",
        root=root,
        split=split,
        on_error=on_error,
    )
    if missing:
        missing_names = {os.path.splitext(names[i])[0] for i in missing}
        ds.drop([i for i, sid in enumerate(ds.ids) if sid in missing_names], reason="missing")
    return ds
