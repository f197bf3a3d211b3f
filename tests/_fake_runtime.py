"""A predictor on a stand-in backend, for tests of the frame loop and sources that need no trained
model: its logits are a fixed function of the batch (the mean of each crop), so results are
deterministic and cost almost nothing; everything else (detection, carrying, alignment,
preprocessing, tracking) is the real runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgefer.backends.base import Backend
from edgefer.metadata import ModelMetadata
from edgefer.preprocess import Preprocessing
from edgefer.runtime import Predictor


class MeanBackend(Backend):
    """Logits ``[mean, 0, 0, ...]`` per crop; counts the faces it was given and records each call's batch size
    (``max_batch`` set: a static-batch artifact, which the predictor must chunk to)."""

    name = "mean"

    def __init__(self, max_batch: int | None = None) -> None:
        self.faces = 0
        self.batches: list[int] = []
        super().__init__("mean.fake")
        self.max_batch = max_batch

    @classmethod
    def can_load(cls, path: Path) -> bool:
        return False

    def _load(self, path: Path) -> None:
        self.metadata = ModelMetadata(model_name="fake", preprocessing=Preprocessing(input_size=32))

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.faces += batch.shape[0]
        self.batches.append(batch.shape[0])
        logits = np.zeros((batch.shape[0], len(self.metadata.class_names)), dtype=np.float32)
        logits[:, 0] = batch.reshape(batch.shape[0], -1).mean(axis=1)
        return logits

    def info(self) -> dict[str, Any]:
        return {"backend": self.name}


def fake_predictor(**kwargs: Any) -> Predictor:
    """A :class:`Predictor` on :class:`MeanBackend` (keyword arguments go to the predictor)."""
    return Predictor(MeanBackend(), **kwargs)


def run_cli(args: list[str], capsys: Any) -> tuple[int, str]:
    """``edgefer ARGS`` in this process through the console entry point (so its ``error: ...`` /
    exit 2 path is what is tested, and monkeypatches apply); returns the exit code and stderr."""
    import pytest

    from edgefer.cli import main

    with pytest.raises(SystemExit) as info:
        main(args)
    return int(info.value.code or 0), capsys.readouterr().err
