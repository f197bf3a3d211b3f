"""Datasets, samplers and class weights of the training loop, all reproducible from (seed, epoch).

* :class:`AugmentedSubset` reads samples from an ``edgefer.data`` reader and draws the augmentation
  of sample ``i`` in epoch ``e`` from ``numpy.random.default_rng([seed, e, i])``: the same pixels
  whatever the worker count, the DDP world size, or where a run was resumed.
* :class:`EpochSampler` orders (or, class-balanced, draws) the training indices from
  ``(seed, epoch)`` and splits the order across DDP ranks by interleaving, so the k-th per-rank
  batches of all ranks together are exactly the k-th batch of a single-process run with the same
  global batch size (the "global batch" semantics).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from edgefer.errors import DatasetError

#: Salt that separates the sampler's random stream from the augmentation streams.
_ORDER_STREAM = 0x5EED


class AugmentedSubset(Dataset):
    """``reader[indices[j]]`` -> (CxHxW float tensor, label), transformed with a per-sample RNG."""

    def __init__(
        self,
        reader,
        indices: Sequence[int],
        transform: Callable[[np.ndarray, np.random.Generator], np.ndarray],
        seed: int = 0,
    ) -> None:
        self.reader = reader
        self.indices = np.asarray(indices, dtype=np.int64)
        self.labels = np.asarray(reader.labels, dtype=np.int64)[self.indices]
        self.transform = transform
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream (call before the epoch's DataLoader iterator is created)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, j: int) -> tuple[torch.Tensor, int]:
        idx = int(self.indices[j])
        sample = self.reader[idx]
        rng = np.random.default_rng([self.seed, self.epoch, idx])
        x = self.transform(sample.image, rng)
        return torch.from_numpy(np.ascontiguousarray(x)), int(sample.label)


class EpochSampler(Sampler[int]):
    """Deterministic per-epoch order, optionally class-balanced, sharded over DDP ranks.

    ``weights`` (one per sample) switch from a permutation to drawing ``len(weights)`` samples
    with replacement, like :class:`torch.utils.data.WeightedRandomSampler`. With ``world > 1`` the
    order is padded (by wrapping) to a multiple of ``world`` and rank ``r`` takes ``order[r::world]``.
    """

    def __init__(
        self,
        n: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        weights: np.ndarray | None = None,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        if n <= 0:
            raise DatasetError("the training split is empty")
        self.n = int(n)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.weights = None if weights is None else np.asarray(weights, dtype=np.float64)
        self.rank, self.world = int(rank), int(world)
        self.epoch = 0
        self.per_rank = -(-self.n // self.world)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def global_order(self) -> np.ndarray:
        """The order of a single-process run in this epoch (before sharding)."""
        rng = np.random.default_rng([self.seed, self.epoch, _ORDER_STREAM])
        if self.weights is not None:
            p = self.weights / self.weights.sum()
            return rng.choice(self.n, size=self.n, replace=True, p=p)
        if self.shuffle:
            return rng.permutation(self.n)
        return np.arange(self.n)

    def __iter__(self) -> Iterator[int]:
        order = self.global_order()
        total = self.per_rank * self.world
        if total > len(order):
            order = np.concatenate([order, order[: total - len(order)]])
        return iter(order[self.rank : total : self.world].tolist())

    def __len__(self) -> int:
        return self.per_rank


def class_counts(labels: np.ndarray, num_classes: int) -> np.ndarray:
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)


def class_weights(counts: np.ndarray, method: str = "inverse", beta: float = 0.999) -> np.ndarray:
    """Per-class loss weights for an imbalanced set, normalised so that they average to 1.

    ``inverse``: w_c proportional to 1 / n_c. ``effective``: the class-balanced weights of Cui et al.
    (CVPR 2019), w_c proportional to (1 - beta) / (1 - beta^n_c), which temper inverse frequency for
    large classes. Classes without samples get weight 0.
    """
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    w = np.zeros_like(counts)
    if method == "inverse":
        w[present] = 1.0 / counts[present]
    elif method == "effective":
        w[present] = (1.0 - beta) / (1.0 - np.power(beta, counts[present]))
    else:
        raise ValueError(f"unknown class-weight method {method!r}")
    return w * (present.sum() / w.sum())


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, val_idx): ``fraction`` of every class held out, chosen from ``seed`` (sorted)."""
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng([seed, 0xBA1])
    val: list[np.ndarray] = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = round(len(idx) * fraction)
        if k >= len(idx):
            k = len(idx) - 1
        val.append(rng.permutation(idx)[:k])
    val_idx = np.sort(np.concatenate(val)) if val else np.zeros(0, dtype=np.int64)
    train_idx = np.setdiff1d(np.arange(len(labels)), val_idx)
    if len(val_idx) == 0:
        raise DatasetError(f"val_split={fraction} leaves no validation sample; use a larger fraction")
    return train_idx, val_idx
