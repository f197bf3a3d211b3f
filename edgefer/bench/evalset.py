"""The evaluation images, decoded once and shared by every model of a benchmark run.

Every backend sees the same images in the same order (docs/architecture.md invariant 5). Images are decoded
once with :func:`edgefer.data.open_dataset`; each model's input tensor comes from
:func:`edgefer.preprocess.preprocess_batch` with the preprocessing recorded in *that model's*
metadata, and is cached per :class:`~edgefer.preprocess.Preprocessing`, so an INT8 and an FP32 copy of
the same model share one tensor while a 64-px and a 112-px model each get their own.

:func:`infer_all` is the one batched-inference loop (chunks, a padded last chunk for static-batch
artifacts, shape checks) shared by the FP32 reference (:mod:`edgefer.export.reference`), the
quantization evaluation (:mod:`edgefer.quantize.evaluate`) and the benchmark: all three score an
artifact through :func:`edgefer.backends.open_model` the same way, so their numbers compare like
with like. Torch-free.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgefer.errors import DatasetError, EdgeferError
from edgefer.labels import CLASS_NAMES
from edgefer.preprocess import Preprocessing, preprocess_batch

#: preprocessed tensors are cached up to this many bytes in total (least recently used evicted).
CACHE_BYTES = 1 << 30


@dataclass
class EvalSet:
    """Decoded images, labels and ids of one split, plus the open dataset for re-decoding.

    ``dataset`` is kept so end-to-end latency can time the real decode path (``dataset.load``
    reads and decodes the file again); ``indices[k]`` is the dataset index of image ``k``.
    Unreadable images are not in the set (each readable image is scored once): ``skipped_ids``
    names them (and files missing at open time); ``unvisited_ids`` are the images ``max_images``
    left out on purpose.
    """

    images: list[np.ndarray]
    labels: np.ndarray
    ids: list[str]
    split: str
    source: str
    dataset: Any = None
    indices: list[int] | None = None
    skipped_ids: list[str] = field(default_factory=list)
    unvisited_ids: list[str] = field(default_factory=list)
    _cache: OrderedDict = field(default_factory=OrderedDict, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def class_names(self) -> tuple[str, ...]:
        """The dataset's classes in its label order (what ``labels`` index)."""
        return tuple(getattr(self.dataset, "class_names", None) or CLASS_NAMES)

    @property
    def skipped(self) -> int:
        return len(self.skipped_ids)

    def preprocessed(self, pp: Preprocessing) -> np.ndarray:
        """All images as one float32 tensor of ``pp.batch_shape(N)`` for ``pp`` (cached)."""
        key = pp.to_json()
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        x = (
            np.concatenate([preprocess_batch(chunk, pp) for chunk in self._chunks(256)])
            if self.images
            else (np.zeros(pp.batch_shape(0), np.float32))
        )
        self._cache[key] = x
        while len(self._cache) > 1 and sum(v.nbytes for v in self._cache.values()) > CACHE_BYTES:
            self._cache.popitem(last=False)
        return x

    def _chunks(self, size: int) -> Iterator[list[np.ndarray]]:
        for start in range(0, len(self.images), size):
            yield self.images[start : start + size]

    def decode(self, index: int) -> np.ndarray:
        """Decode image ``index`` again from the dataset (the end-to-end path); falls back to the
        cached image when the set was built from arrays."""
        if self.dataset is None:
            return self.images[index]
        k = self.indices[index] if self.indices is not None else index
        if hasattr(self.dataset, "load"):
            try:
                return self.dataset.load(k)
            except DatasetError:
                return self.images[index]  # became unreadable since: time the cached copy
        return self.dataset[k].image


def load_evalset(
    data: str | os.PathLike | Any,
    split: str = "test",
    max_images: int | None = None,
    progress: bool = False,
    *,
    allow_missing_classes: bool = False,
    on_error: str = "skip",
    purpose: str = "benchmark",
) -> EvalSet:
    """Open ``split`` of a dataset path (any layout :func:`edgefer.data.open_dataset` knows) and
    decode its images once. ``max_images`` keeps the first N readable images (for quick runs), in
    dataset order. Unreadable images are skipped and named in ``skipped_ids`` (``on_error="skip"``)
    or stop the run (``"raise"``); none is replaced by another image. ``purpose`` names what the
    images are for in the "empty split" error ("benchmark", "compute reference predictions", ...)."""
    from edgefer.data.base import iter_readable

    if max_images is not None and max_images < 1:
        raise DatasetError(f"max_images must be >= 1, got {max_images}")
    if isinstance(data, (str, os.PathLike)):
        from edgefer.data import open_dataset

        path = Path(data)
        if not path.exists():
            raise DatasetError(f"benchmark dataset {path} does not exist")
        dataset = open_dataset(path, split, on_error=on_error, allow_missing_classes=allow_missing_classes)
        source = str(path)
    else:
        dataset, source = data, getattr(data, "root", type(data).__name__)
    n = len(dataset)
    if max_images is not None:
        n = min(n, int(max_images))
    if n == 0:
        raise DatasetError(f"the {split!r} split of {source} is empty: nothing to {purpose} on")
    from rich.progress import Progress

    images: list[np.ndarray] = []
    labels: list[int] = []
    ids: list[str] = []
    indices: list[int] = []
    with Progress(transient=True, disable=not progress) as prog:
        task = prog.add_task(f"decoding {split}", total=n)
        for k, sample in iter_readable(dataset, limit=max_images):
            images.append(sample.image)
            labels.append(int(sample.label))
            ids.append(str(sample.id))
            indices.append(k)
            prog.advance(task)
    skipped = list(getattr(dataset, "skipped_ids", []) or [])
    if not ids:
        raise DatasetError(f"no readable image in the {split!r} split of {source} ({len(skipped)} unreadable)")
    all_ids = [str(i) for i in getattr(dataset, "ids", [])]
    unvisited = all_ids[indices[-1] + 1 :] if max_images is not None and len(ids) >= max_images else []
    return EvalSet(
        images, np.asarray(labels, dtype=np.int64), ids, split, str(source), dataset, indices, skipped, unvisited
    )


def infer_all(backend: Any, data: EvalSet | np.ndarray | Any, batch_size: int) -> np.ndarray:
    """Logits of ``backend`` for every image of ``data``, in order, as one (N, C) float32 array.

    ``backend`` is a :class:`edgefer.backends.Backend` (or anything with ``infer(x)`` and
    ``max_batch``); ``data`` is an :class:`EvalSet` (preprocessed with the backend's own metadata),
    a preprocessed array in the model's layout, or an object holding one as ``.x``. Chunks of ``batch_size``
    (at most the artifact's ``max_batch``); a short last chunk is padded with copies of its last
    image when the artifact has a static batch, and the padding's logits are dropped.
    """
    if batch_size < 1:
        raise EdgeferError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(data, EvalSet):
        x = data.preprocessed(backend.metadata.preprocessing)
    else:
        x = np.asarray(getattr(data, "x", data))
    if len(x) == 0:
        raise EdgeferError("no images to run the model on")
    max_batch = getattr(backend, "max_batch", None)
    step = min(batch_size, max_batch) if max_batch else batch_size
    out = []
    for start in range(0, len(x), step):
        chunk = np.ascontiguousarray(x[start : start + step], dtype=np.float32)
        n = len(chunk)
        if max_batch and n < step and max_batch == step:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - n, axis=0)])
        logits = np.asarray(backend.infer(chunk), dtype=np.float32)
        if logits.ndim != 2 or logits.shape[0] < n:
            raise EdgeferError(f"the model returned logits of shape {logits.shape} for a batch of {len(chunk)}")
        out.append(logits[:n])
    return np.concatenate(out)
