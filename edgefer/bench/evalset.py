"""The evaluation images, decoded once and shared by every model of a benchmark run.

Every backend sees the same images in the same order (DESIGN.md invariant 5). Images are decoded
once with :func:`edgefer.data.open_dataset`; each model's input tensor comes from
:func:`edgefer.preprocess.preprocess_batch` with the preprocessing recorded in *that model's*
metadata, and is cached per :class:`~edgefer.preprocess.Preprocessing`, so an INT8 and an FP32 copy of
the same model share one tensor while a 64-px and a 112-px model each get their own.
Torch-free.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgefer.errors import DatasetError
from edgefer.preprocess import Preprocessing, preprocess_batch

#: preprocessed tensors are cached up to this many bytes in total (least recently used evicted).
CACHE_BYTES = 1 << 30


@dataclass
class EvalSet:
    """Decoded images, labels and ids of one split, plus the open dataset for re-decoding.

    ``dataset`` is kept so end-to-end latency can time the real decode path (``dataset[i]`` reads
    and decodes the file again).
    """

    images: list[np.ndarray]
    labels: np.ndarray
    ids: list[str]
    split: str
    source: str
    dataset: Any = None
    _cache: OrderedDict = field(default_factory=OrderedDict, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    def preprocessed(self, pp: Preprocessing) -> np.ndarray:
        """All images as one (N, 3, S, S) float32 tensor for ``pp`` (cached)."""
        key = pp.to_json()
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        x = np.concatenate([preprocess_batch(chunk, pp) for chunk in self._chunks(256)]) if self.images else (
            np.zeros((0, 3, pp.input_size, pp.input_size), np.float32)
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
        return self.dataset[index].image


def load_evalset(
    data: str | os.PathLike | Any, split: str = "test", max_images: int | None = None, progress: bool = False
) -> EvalSet:
    """Open ``split`` of a dataset path (any layout :func:`edgefer.data.open_dataset` knows) and
    decode its images once. ``max_images`` keeps the first N (for quick runs), in dataset order."""
    if isinstance(data, (str, os.PathLike)):
        from edgefer.data import open_dataset

        path = Path(data)
        if not path.exists():
            raise DatasetError(f"benchmark dataset {path} does not exist")
        dataset = open_dataset(path, split)
        source = str(path)
    else:
        dataset, source = data, getattr(data, "root", type(data).__name__)
    n = len(dataset)
    if max_images is not None:
        n = min(n, int(max_images))
    if n == 0:
        raise DatasetError(f"the {split!r} split of {source} is empty: nothing to benchmark on")
    from rich.progress import Progress

    images: list[np.ndarray] = []
    labels: list[int] = []
    ids: list[str] = []
    with Progress(transient=True, disable=not progress) as prog:
        task = prog.add_task(f"decoding {split}", total=n)
        for i in range(n):
            sample = dataset[i]
            images.append(sample.image)
            labels.append(int(sample.label))
            ids.append(str(sample.id))
            prog.advance(task)
    return EvalSet(images, np.asarray(labels, dtype=np.int64), ids, split, str(source), dataset)
