"""``BenchOptions``: how to benchmark, as one object validated on construction and passed whole.

What is benchmarked (models, the dataset, the FP32 reference) are arguments of
:func:`edgefer.bench.run_benchmark`; everything about *how* is here, checked when the options are
made -- by ``edgefer benchmark``, a suite file, the pipeline or Python alike -- so that a bad value
is one clear line before any model is loaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from edgefer.bench.gate import Gate
from edgefer.errors import EdgeferError


@dataclass(frozen=True)
class BenchOptions:
    """How to benchmark (see :func:`edgefer.bench.run_benchmark`).

    Attributes:
        split: the dataset split every model is scored on.
        batches: batch sizes timed (sorted, duplicates dropped).
        warmup / iters / seconds: untimed calls, then ``iters`` timed calls -- or, with ``seconds``,
            as many as fit that time budget per measurement (``iters`` is then unset).
        threads / device: CPU threads per backend (None: the backend's default); the device.
        gate: accuracy gate (a :class:`Gate`, its CLI string or a suite-file mapping); its
            verdict is in the report.
        out_dir: where ``report.json``, ``report.md`` and the plots go (None: nothing written).
        e2e: also time decode + preprocess + inference per image.
        max_images: score on the first N images of the split (None: all).
        plots: write PNG plots (skipped with a note when matplotlib is missing).
        progress: progress bars.
        allow_partial: let a gate pass on a reference partly missing from the data.
        allow_missing_classes: accept a split that lacks some class.
    """

    split: str = "test"
    batches: tuple[int, ...] = (1, 8)
    warmup: int = 10
    iters: int | None = 50
    seconds: float | None = None
    threads: int | None = None
    device: str = "cpu"
    gate: Gate | None = None
    out_dir: Path | None = None
    e2e: bool = True
    max_images: int | None = None
    plots: bool = True
    progress: bool = True
    allow_partial: bool = False
    allow_missing_classes: bool = False

    def __post_init__(self) -> None:
        try:
            batches = sorted({int(b) for b in self.batches})
        except (TypeError, ValueError):
            raise EdgeferError(f"batch sizes must be whole numbers, got {self.batches!r}") from None
        if not batches or batches[0] < 1:
            raise EdgeferError(f"batch sizes must be >= 1, got {list(self.batches)}")
        object.__setattr__(self, "batches", tuple(batches))
        for what, value, least in (
            ("--warmup", self.warmup, 0),
            ("--iters", self.iters, 1),
            ("--threads", self.threads, 1),
            ("--max-images", self.max_images, 1),
        ):
            if value is not None and int(value) < least:
                raise EdgeferError(f"{what} must be {'>= 0' if least == 0 else 'positive'}, got {value}")
        if self.seconds is not None:
            if float(self.seconds) <= 0:
                raise EdgeferError(f"--seconds must be positive, got {self.seconds}")
            object.__setattr__(self, "iters", None)  # a time budget replaces the call count
        elif self.iters is None:
            raise EdgeferError("give a number of timed calls (--iters) or a time budget (--seconds)")
        object.__setattr__(self, "gate", Gate.from_value(self.gate))
        if isinstance(self.out_dir, (str, os.PathLike)):
            object.__setattr__(self, "out_dir", Path(self.out_dir))
