"""The torch ``Dataset`` on top of a torch-free :class:`~edgefer.data.base.FERDataset`.

This is the only module of :mod:`edgefer.data` that imports torch. It applies a transform to
the decoded HxWx3 uint8 RGB image and returns ``(tensor, label)``; the unreadable-image policy
of the reader (skip and replace, or raise) applies unchanged. Note that with DataLoader
workers each worker keeps its own ``skipped`` count.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from edgefer.data.base import FERDataset

Transform = Callable[[np.ndarray], "torch.Tensor | np.ndarray"]


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> 3xHxW float32 in [0, 1] (the default when no transform is given)."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0)


class FERTorchDataset(Dataset):
    """``(transform(image), label)`` pairs from a reader; ``labels`` exposes the label array."""

    def __init__(self, reader: FERDataset, transform: Transform | None = None) -> None:
        self.reader = reader
        self.transform = transform if transform is not None else to_tensor

    def __len__(self) -> int:
        return len(self.reader)

    @property
    def labels(self) -> np.ndarray:
        return self.reader.labels

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        sample = self.reader[index]
        x = self.transform(sample.image)
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(np.ascontiguousarray(x))
        return x, sample.label
