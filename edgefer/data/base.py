"""The torch-free dataset every reader returns: ids and labels up front, images decoded on demand.

A :class:`FERDataset` knows every sample's id and label without decoding an image (readers get
them from a label file, a csv or the folder names), so class histograms, stratified splits and
``edgefer data info`` are instant. Images are decoded in :meth:`FERDataset.load`.

Unreadable images are a fact of life in scraped FER sets. The policy is chosen once, by
``on_error``:

* ``"raise"``: the first unreadable or missing image raises :class:`DatasetError` naming the file.
* ``"skip"`` (default): files missing at open time are dropped and counted; :meth:`validate`
  decodes everything once and drops what fails; an image that fails later, at read time, is
  counted and replaced by the next readable sample (its own id and label travel with it), so an
  epoch never crashes halfway. ``skipped`` / ``skipped_ids`` say what was dropped.

Replacement is for training only. Everything that *scores* images (evaluation, the benchmark,
reference predictions, quantization's validation) walks :meth:`FERDataset.iter_readable`, which
yields each readable image exactly once and skips the rest, so no image is counted twice.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from edgefer.errors import DatasetError
from edgefer.labels import CLASS_NAMES, NUM_CLASSES

ON_ERROR = ("skip", "raise")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

#: Accepted spellings of split names -> canonical split.
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "publictest": "val",
    "test": "test",
    "testing": "test",
    "privatetest": "test",
}


class Sample(NamedTuple):
    """One dataset item: its id, an HxWx3 uint8 RGB image, its canonical class index."""

    id: str
    image: np.ndarray
    label: int


def canonical_split(split: str) -> str:
    """``"Training"`` -> ``"train"``; unknown names raise :class:`DatasetError`."""
    key = str(split).strip().lower()
    if key not in SPLIT_ALIASES:
        raise DatasetError(f"unknown split {split!r}; use train, val or test")
    return SPLIT_ALIASES[key]


def _deep(im: Any) -> bool:
    """True for images with more than 8 bits per channel (16-bit grey or colour PNG/TIFF, int32, float)."""
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        return True
    return any("16" in str(tile[3]) for tile in (im.tile or []) if len(tile) > 3)


def _read_deep(path: str | Path) -> np.ndarray:
    """A >8-bit image decoded at full depth by OpenCV (as the runtime does), then :func:`to_uint8`."""
    import cv2

    from edgefer.preprocess import to_three_channels

    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise DatasetError(f"cannot read image {path}: OpenCV cannot decode it")
    color = "BGR" if image.ndim == 3 else "RGB"
    rgb = to_three_channels(image, color)  # the shared depth rule (edgefer.preprocess.to_uint8)
    return np.ascontiguousarray(rgb[:, :, ::-1] if color == "BGR" else rgb)


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file to HxWx3 uint8 RGB (grey, palette, 16-bit and RGBA are converted).

    Truncated or corrupt files raise :class:`DatasetError` naming the file (Pillow refuses
    truncated JPEGs, unlike OpenCV which returns a half-grey picture). Images deeper than 8 bits
    are decoded by OpenCV at full depth and reduced by :func:`edgefer.preprocess.to_uint8`
    (uint16: ``round(v / 257)``), exactly as the runtime reads the same file.
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            deep = _deep(im)
            im.load()
            if deep:
                return _read_deep(path)
            rgb = im.convert("RGB")
            arr = np.asarray(rgb, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"cannot read image {path}: {exc}") from None
    if arr.ndim != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DatasetError(f"image {path} is empty")
    return arr


class FERDataset:
    """A split of a facial-expression dataset in canonical label order (see module docstring).

    Attributes:
        ids: sample ids (file names or row numbers), sorted; ``ids[i]`` belongs to ``labels[i]``.
        labels: int64 canonical class indices, known without decoding images.
        class_names: :data:`edgefer.labels.CLASS_NAMES`.
        format, root, split: where it came from (``root`` is the resolved dataset root).
        skipped, skipped_ids: unreadable/missing images dropped or replaced so far.
    """

    def __init__(
        self,
        *,
        ids: Sequence[str],
        labels: Sequence[int] | np.ndarray,
        sources: Sequence[Any],
        read: Callable[[Any], np.ndarray],
        format: str,
        root: str | Path,
        split: str,
        on_error: str = "skip",
        describe: Callable[[Any], str] = str,
    ) -> None:
        if on_error not in ON_ERROR:
            raise DatasetError(f"on_error must be one of {ON_ERROR}, not {on_error!r}")
        if not (len(ids) == len(labels) == len(sources)):
            raise ValueError("ids, labels and sources must have the same length")
        order = sorted(range(len(ids)), key=lambda i: ids[i])
        self.ids: list[str] = [ids[i] for i in order]
        self.labels: np.ndarray = np.asarray([int(labels[i]) for i in order], dtype=np.int64)
        self._sources: list[Any] = [sources[i] for i in order]
        self._read = read
        self._describe = describe
        self.class_names: tuple[str, ...] = CLASS_NAMES
        self.format = format
        self.root = Path(root)
        self.split = split
        self.on_error = on_error
        self.skipped_ids: list[str] = []
        self._bad: set[int] = set()
        self._warned = False

    # -- size and bookkeeping ------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return (
            f"FERDataset(format={self.format!r}, split={self.split!r}, n={len(self)}, "
            f"skipped={self.skipped}, root='{self.root}')"
        )

    @property
    def skipped(self) -> int:
        """How many images were found unreadable or missing (dropped or replaced)."""
        return len(self.skipped_ids)

    @property
    def num_classes(self) -> int:
        return NUM_CLASSES

    def class_counts(self) -> np.ndarray:
        """Samples per canonical class (length 7)."""
        return np.bincount(self.labels, minlength=NUM_CLASSES)

    def source(self, i: int) -> str:
        """Human-readable location of sample ``i`` (a path, or a csv row)."""
        return self._describe(self._sources[i])

    def _note_skip(self, sample_id: str, reason: str) -> None:
        if sample_id not in self.skipped_ids:
            self.skipped_ids.append(sample_id)
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"{self.format} {self.split}: skipping unreadable image ({reason}); "
                "further skips are counted in .skipped",
                RuntimeWarning,
                stacklevel=3,
            )

    def drop(self, indices: Sequence[int], reason: str = "missing") -> None:
        """Remove samples (used by readers for files missing at open time); counts them as skipped."""
        gone = set(indices)
        if not gone:
            return
        if self.on_error == "raise":
            first = min(gone)
            raise DatasetError(f"{reason} image: {self.source(first)}")
        for i in sorted(gone):
            self._note_skip(self.ids[i], f"{reason}: {self.source(i)}")
        keep = [i for i in range(len(self)) if i not in gone]
        self._keep(keep)

    def _keep(self, keep: list[int]) -> None:
        self.ids = [self.ids[i] for i in keep]
        self.labels = self.labels[np.asarray(keep, dtype=np.int64)] if keep else np.zeros(0, np.int64)
        self._sources = [self._sources[i] for i in keep]
        remap = {old: new for new, old in enumerate(keep)}
        self._bad = {remap[i] for i in self._bad if i in remap}

    # -- reading ---------------------------------------------------------------------------
    def load(self, i: int) -> np.ndarray:
        """Decode image ``i`` (HxWx3 uint8 RGB); raises :class:`DatasetError` if it cannot be read."""
        image = self._read(self._sources[i])
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise DatasetError(f"reader returned a {image.shape} {image.dtype} array for {self.source(i)}")
        return image

    def __getitem__(self, i: int) -> Sample:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} samples")
        i %= n
        for step in range(n):
            j = (i + step) % n
            if j in self._bad:
                continue
            try:
                return Sample(self.ids[j], self.load(j), int(self.labels[j]))
            except DatasetError as exc:
                if self.on_error == "raise":
                    raise
                self._bad.add(j)
                self._note_skip(self.ids[j], str(exc))
        raise DatasetError(f"no readable image in {self.format} {self.split} split at {self.root}")

    def __iter__(self) -> Iterator[Sample]:
        """Every readable sample once, in order (unreadable ones are skipped and counted, not replaced)."""
        for _, sample in self.iter_readable():
            yield sample

    def iter_readable(
        self, indices: Sequence[int] | None = None, limit: int | None = None
    ) -> Iterator[tuple[int, Sample]]:
        """``(index, sample)`` of every readable image once, in order; unreadable ones are skipped.

        This is what evaluation must use: ``self[i]`` hands back a *replacement* sample for an
        unreadable image (so a training epoch keeps its length), which would score the replacement
        twice. Skipped images are counted in :attr:`skipped`; with ``on_error="raise"`` the first
        one raises. ``indices`` restricts the walk to those samples; ``limit`` stops after that
        many readable ones.
        """
        if limit is not None and limit < 0:
            raise DatasetError(f"limit must be >= 0, got {limit}")
        found = 0
        for j in range(len(self)) if indices is None else (int(i) for i in indices):
            if limit is not None and found >= limit:
                return
            if j in self._bad:
                continue
            try:
                image = self.load(j)
            except DatasetError as exc:
                if self.on_error == "raise":
                    raise
                self._bad.add(j)
                self._note_skip(self.ids[j], str(exc))
                continue
            found += 1
            yield j, Sample(self.ids[j], image, int(self.labels[j]))

    def validate(self, progress: bool = False) -> int:
        """Decode every image once and drop the unreadable ones; returns how many were dropped.

        With ``on_error="raise"`` the first unreadable image raises instead.
        """
        bad: list[int] = []
        reasons: dict[int, str] = {}
        iterator: Any = range(len(self))
        bar = None
        if progress:
            from rich.progress import Progress

            bar = Progress(transient=True)
            bar.__enter__()
            task = bar.add_task(f"checking {self.split} images", total=len(self))
        try:
            for i in iterator:
                try:
                    self.load(i)
                except DatasetError as exc:
                    if self.on_error == "raise":
                        raise
                    bad.append(i)
                    reasons[i] = str(exc)
                if bar is not None:
                    bar.advance(task)
        finally:
            if bar is not None:
                bar.__exit__(None, None, None)
        for i in bad:
            self._note_skip(self.ids[i], reasons[i])
        bad_set = set(bad) | self._bad
        self._bad = set()
        if bad_set:
            self._keep([i for i in range(len(self)) if i not in bad_set])
        return len(bad)

    def subset(self, indices: Sequence[int]) -> FERDataset:
        """A new dataset over ``indices`` (e.g. a validation hold-out carved from train)."""
        idx = [int(i) % len(self) for i in indices]
        sub = FERDataset(
            ids=[self.ids[i] for i in idx],
            labels=self.labels[idx] if idx else [],
            sources=[self._sources[i] for i in idx],
            read=self._read,
            format=self.format,
            root=self.root,
            split=self.split,
            on_error=self.on_error,
            describe=self._describe,
        )
        sub._bad = {k for k, i in enumerate(sorted(idx, key=lambda i: self.ids[i])) if i in self._bad}
        return sub

    def check_classes(self, allow_missing: bool) -> list[str]:
        """Error (train, unless ``allow_missing``) or warn (val/test) when a class has no sample.

        Returns the names of the missing classes. An empty split is always an error.
        """
        if len(self) == 0:
            raise DatasetError(f"the {self.split} split of the {self.format} dataset at {self.root} is empty")
        missing = [CLASS_NAMES[c] for c, n in enumerate(self.class_counts()) if n == 0]
        if not missing:
            return missing
        msg = (
            f"the {self.split} split of the {self.format} dataset at {self.root} has no images of "
            f"class(es) {', '.join(missing)}"
        )
        if self.split == "train" and not allow_missing:
            raise DatasetError(
                msg + "; a model trained on it cannot learn them. Pass allow_missing_classes=True "
                "(CLI: --allow-missing-classes) if that is intended"
            )
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
        return missing


def iter_readable(
    dataset: Any, indices: Sequence[int] | None = None, limit: int | None = None
) -> Iterator[tuple[int, Any]]:
    """``(index, sample)`` of each readable sample of any dataset, once (see :meth:`FERDataset.iter_readable`).

    A :class:`FERDataset` skips and counts unreadable images; any other indexable dataset (an
    in-memory list of samples in tests) is read with ``dataset[i]``.
    """
    if isinstance(dataset, FERDataset):
        yield from dataset.iter_readable(indices, limit)
        return
    if limit is not None and limit < 0:
        raise DatasetError(f"limit must be >= 0, got {limit}")
    for n, i in enumerate(range(len(dataset)) if indices is None else indices):
        if limit is not None and n >= limit:
            return
        yield int(i), dataset[int(i)]


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of ``size`` items (the last one shorter); ``size`` must be >= 1."""
    if size < 1:
        raise DatasetError(f"batch size must be >= 1, got {size}")
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
