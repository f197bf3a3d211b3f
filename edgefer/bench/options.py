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

from edgefer.backends.base import MODES
from edgefer.bench.gate import Gate
from edgefer.errors import EdgeferError
from edgefer.utils.limits import MAX_BATCH, MAX_THREADS, check_at_most

#: timed calls per measurement on a workstation when neither ``iters`` nor ``seconds`` is given.
DEFAULT_ITERS = 50
#: time budget per measurement (s) on a device -- a bundle is benchmarked, or this is a Jetson --
#: when neither is given: clocks ramp up and heat builds over seconds, not over 50 calls.
DEVICE_SECONDS = 5.0


@dataclass(frozen=True)
class BenchOptions:
    """How to benchmark (see :func:`edgefer.bench.run_benchmark`).

    Attributes:
        split: the dataset split every model is scored on.
        batches: batch sizes timed (sorted, duplicates dropped).
        warmup / iters / seconds: untimed calls, then ``iters`` timed calls -- or, with ``seconds``,
            as many as fit that time budget per measurement (``iters`` is then unset). Neither given:
            :meth:`timing` picks -- :data:`DEVICE_SECONDS` on a device, :data:`DEFAULT_ITERS` calls
            on a workstation.
        mode: ``"latency"`` -- one request at a time, what a camera's frame waits for -- or
            ``"throughput"``: requests in flight (OpenVINO's THROUGHPUT hint and async requests, ONNX
            Runtime's parallel requests, TensorRT's execution contexts on their own CUDA streams), frames
            per second measured over the calls or the time budget.
        cache_dir: OpenVINO model cache folder (compiled models are kept there and read back on the
            next open, so a restart is not a compile); None: no cache.
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
    iters: int | None = None
    seconds: float | None = None
    mode: str = "latency"
    cache_dir: Path | None = None
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
        check_at_most("--batch", batches[-1], MAX_BATCH, EdgeferError, "each batch is one input array in memory")
        check_at_most("--threads", self.threads, MAX_THREADS, EdgeferError)
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
        if self.mode not in MODES:
            raise EdgeferError(f"--mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        object.__setattr__(self, "gate", Gate.from_value(self.gate))
        for name in ("out_dir", "cache_dir"):
            value = getattr(self, name)
            if isinstance(value, (str, os.PathLike)):
                object.__setattr__(self, name, Path(value))

    def timing(self, on_device: bool) -> tuple[int | None, float | None, str]:
        """``(iters, seconds, why)`` of each measurement: what was given, else the default for where it runs.

        On a device (``on_device``: a bundle is benchmarked, or this is a Jetson) the default is a
        time budget of :data:`DEVICE_SECONDS`: a fixed 50 calls of a 2 ms model is 0.1 s, before
        the clocks have ramped up or the heat has built up, and says nothing of the latency
        a camera will see after a minute. On a workstation it is :data:`DEFAULT_ITERS` calls:
        comparable from run to run, and quick when many artifacts are compared.
        """
        if self.seconds is not None:
            return None, float(self.seconds), "given"
        if self.iters is not None:
            return int(self.iters), None, "given"
        if on_device:
            return None, DEVICE_SECONDS, "device default (a bundle or a Jetson): time budget"
        return DEFAULT_ITERS, None, "workstation default"
