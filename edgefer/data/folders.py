"""Generic image folders: ``ROOT/<split>/<class name>/*.{jpg,jpeg,png,bmp,webp}``.

Split folders may be spelled ``train``/``training``, ``val``/``valid``/``validation``,
``test``/``testing`` (any case). Class folders use any common name of a class
(``angry``/``anger``, ``happy``/``happiness``, ``surprised``, ... case-insensitive; see
:func:`edgefer.labels.class_index`); an unknown class folder is an error naming it. Sample ids
are ``<class folder>/<file stem>``.
"""

from __future__ import annotations

from pathlib import Path

from edgefer.data.base import IMAGE_EXTENSIONS, SPLIT_ALIASES, FERDataset, canonical_split, read_image
from edgefer.errors import DatasetError
from edgefer.labels import class_index


def split_dirs(root: Path) -> dict[str, Path]:
    """Canonical split name -> folder, for the split folders present under ``root``."""
    out: dict[str, Path] = {}
    if not root.is_dir():
        return out
    for p in sorted(root.iterdir()):
        key = p.name.lower()
        if p.is_dir() and key in SPLIT_ALIASES and key not in ("publictest", "privatetest"):
            split = SPLIT_ALIASES[key]
            if split in out:
                raise DatasetError(f"{root} has two folders for the {split} split: {out[split].name} and {p.name}")
            out[split] = p
    return out


def looks_like_folders(root: Path) -> bool:
    """True when ``root`` has at least one split folder containing a sub-folder."""
    return any(any(c.is_dir() and not c.name.startswith(".") for c in d.iterdir()) for d in split_dirs(root).values())


def open_folders(root: Path, split: str, on_error: str) -> FERDataset:
    """Read ``ROOT/<split>/<class name>/*`` into a dataset."""
    split = canonical_split(split)
    dirs = split_dirs(root)
    if split not in dirs:
        hint = " (hold out part of train for validation; edgefer train does this)" if split == "val" else ""
        raise DatasetError(
            f"the image-folder dataset at {root} has no {split!r} split folder; it has: "
            f"{', '.join(dirs) or 'none'}{hint}"
        )
    ids: list[str] = []
    labels: list[int] = []
    sources: list[Path] = []
    for class_dir in sorted(dirs[split].iterdir()):
        if not class_dir.is_dir() or class_dir.name.startswith("."):
            continue
        try:
            label = class_index(class_dir.name)
        except DatasetError as exc:
            raise DatasetError(f"{class_dir}: folder name is not an expression class. {exc}") from None
        for f in sorted(class_dir.iterdir()):
            if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith("."):
                ids.append(f"{class_dir.name}/{f.stem}")
                labels.append(label)
                sources.append(f)
    if len(set(ids)) != len(ids):
        raise DatasetError(f"{dirs[split]}: two images share a name within one class folder (e.g. a.jpg and a.png)")
    return FERDataset(
        ids=ids,
        labels=labels,
        sources=sources,
        read=read_image,
        format="folders",
        root=root,
        split=split,
        on_error=on_error,
    )
