"""Calibration and validation data for quantization and engine calibration, through the *eval* preprocessing.

Calibration must see exactly the tensors the deployed model will see, so images go through
:func:`edgefer.preprocess.preprocess_batch` with the model's own :class:`Preprocessing` (never the
training augmentation). The subset is deterministic (a seeded permutation, so the same command
gives the same INT8 model) and its size is checked up front: NNCF happily "calibrates" on one
image and produces ranges that clip everything else, so too little data is a clear error here.

Torch-free, and in the data layer so that both :mod:`edgefer.quantize` (NNCF PTQ) and the TensorRT
entropy calibrator in :mod:`edgefer.export.calibrator` read the same images without one builder
package importing the other.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from edgefer.errors import QuantizationError
from edgefer.preprocess import Preprocessing, preprocess_batch

#: Fewer calibration images than this give activation ranges that are noise, whatever the model.
MIN_CALIB_SIZE = 10


class SampleLike(Protocol):
    id: str
    image: np.ndarray
    label: int


class DatasetLike(Protocol):
    """What :func:`edgefer.data.open_dataset` returns: indexable samples plus ``labels``."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> SampleLike: ...


@dataclass
class ArrayData:
    """Preprocessed images (N, 3, H, W float32) with their labels and ids, in a fixed order."""

    x: np.ndarray
    labels: np.ndarray
    ids: list[str]
    split: str

    def __len__(self) -> int:
        return len(self.labels)


def open_split(data: str | os.PathLike | DatasetLike, split: str, allow_missing_classes: bool = False) -> DatasetLike:
    """``data`` is a dataset path (opened with :func:`edgefer.data.open_dataset`) or an open dataset."""
    if not isinstance(data, (str, os.PathLike)):
        return data
    from edgefer.data import open_dataset

    # raises DatasetError naming the expected layouts
    return open_dataset(Path(data), split, allow_missing_classes=allow_missing_classes)


def select_subset(n_available: int, size: int | None, seed: int = 0) -> np.ndarray:
    """Indices of a deterministic subset of ``size`` items (all of them, in order, when ``size`` is None
    or not smaller than ``n_available``). Sorted, so images are read in dataset order."""
    if size is None or size >= n_available:
        return np.arange(n_available)
    rng = np.random.default_rng(seed)
    return np.sort(rng.permutation(n_available)[:size])


def load_arrays(
    dataset: DatasetLike, indices: Sequence[int], pp: Preprocessing, split: str, chunk: int = 256
) -> ArrayData:
    """Read and preprocess ``dataset[indices]`` in chunks (bounded memory for the raw images).

    Unreadable images are skipped (each readable one is used once), not replaced by a neighbour.
    """
    from edgefer.data.base import batched, iter_readable

    xs: list[np.ndarray] = []
    labels: list[int] = []
    ids: list[str] = []
    idx = [int(i) for i in indices]
    for samples in batched((s for _, s in iter_readable(dataset, idx)), chunk):
        xs.append(preprocess_batch([s.image for s in samples], pp))
        labels.extend(int(s.label) for s in samples)
        ids.extend(str(s.id) for s in samples)
    x = np.concatenate(xs) if xs else np.zeros(pp.batch_shape(0), np.float32)
    return ArrayData(x=x, labels=np.asarray(labels, dtype=np.int64), ids=ids, split=split)


def calibration_arrays(
    data: str | os.PathLike | DatasetLike,
    pp: Preprocessing,
    calib_size: int = 300,
    split: str = "train",
    seed: int = 0,
    min_size: int = MIN_CALIB_SIZE,
    allow_missing_classes: bool = False,
) -> ArrayData:
    """The calibration subset of ``split``: ``calib_size`` images chosen deterministically.

    Raises :class:`QuantizationError` when ``calib_size`` is below ``min_size`` or the split holds
    fewer images than asked (rather than silently calibrating on less than the user asked for).
    """
    if calib_size < min_size:
        raise QuantizationError(
            f"calibration subset of {calib_size} images is too small: at least {min_size} are needed "
            "for meaningful activation ranges (300 is the usual choice)"
        )
    dataset = open_split(data, split, allow_missing_classes)
    n = len(dataset)
    if n == 0:
        raise QuantizationError(f"the {split!r} split is empty: no images to calibrate the INT8 ranges on")
    if n < calib_size:
        raise QuantizationError(
            f"the {split!r} split has only {n} images but --calib-size {calib_size} was asked; "
            f"pass --calib-size {n} (>= {min_size}) or use a larger dataset"
        )
    return load_arrays(dataset, select_subset(n, calib_size, seed), pp, split)


def validation_arrays(
    data: str | os.PathLike | DatasetLike,
    pp: Preprocessing,
    size: int | None = None,
    split: str = "test",
    seed: int = 0,
    allow_missing_classes: bool = False,
) -> ArrayData:
    """The validation images (all, or a deterministic subset of ``size``) used to score FP32 vs INT8."""
    dataset = open_split(data, split, allow_missing_classes)
    if len(dataset) == 0:
        raise QuantizationError(f"the {split!r} split is empty: nothing to measure the INT8 accuracy on")
    return load_arrays(dataset, select_subset(len(dataset), size, seed), pp, split)
