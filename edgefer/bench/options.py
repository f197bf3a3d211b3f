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
from typing import Sequence

from edgefer.backends.base import MODES, check_streams
from edgefer.bench.gate import Gate
from edgefer.errors import EdgeferError
from edgefer.utils.limits import MAX_BATCH, MAX_THREADS, check_at_most
from edgefer.utils.options import flag, to_argv

#: untimed calls before each measurement (benchmark and pipeline alike).
DEFAULT_WARMUP = 10
#: timed calls per measurement on a workstation when neither ``iters`` nor ``seconds`` is given.
DEFAULT_ITERS = 50
#: time budget per measurement (s) on a device -- a bundle is benchmarked, or this is a Jetson --
#: when neither is given: clocks ramp up and heat builds over seconds, not over 50 calls.
DEVICE_SECONDS = 5.0


@dataclass(frozen=True)
class BenchOptions:
    """How to benchmark (see :func:`edgefer.bench.run_benchmark`); each field's CLI flag is in its metadata.

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
        streams: in throughput mode, how many requests are in flight: OpenVINO's ``NUM_STREAMS`` (one
            request each), TensorRT's execution contexts, ONNX Runtime's parallel requests --
            ``benchmark_app -nstreams`` and ``trtexec --streams``. None: the engine's choice (OpenVINO's
            hint, 2 TensorRT contexts, one ONNX Runtime request per core).
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

    split: str = flag("test", "--split", help="Split every model is scored on.")
    batches: tuple[int, ...] = flag((1, 8), "--batch", sep=",", help="Batch sizes measured, comma-separated.")
    warmup: int = flag(DEFAULT_WARMUP, "--warmup", help="Untimed warm-up calls.")
    iters: int | None = flag(
        None,
        "--iters",
        type=int,
        help=f"Timed calls per measurement (default {DEFAULT_ITERS}; bundle or Jetson: --seconds {DEVICE_SECONDS:g}).",
    )
    seconds: float | None = flag(None, "--seconds", type=float, help="Time budget per measurement instead of --iters.")
    mode: str = flag(
        "latency", "--mode", help="latency (one request at a time) or throughput (requests in flight; FPS)."
    )
    streams: int | None = flag(
        None,
        "--streams",
        type=int,
        help="Throughput mode: requests in flight (OpenVINO streams, TensorRT contexts); default: the engine's choice.",
    )
    cache_dir: Path | None = flag(
        None,
        "--cache-dir",
        type=Path,
        help="OpenVINO model cache: compile once, reopen from it (a camera that restarts).",
    )
    threads: int | None = flag(None, "--threads", type=int, help="Inference threads (the backend's default if unset).")
    device: str = flag("cpu", "--device", help="cpu | gpu | cuda:N | npu | tensorrt.")
    gate: Gate | None = flag(
        None, "--gate", type=str, help="e.g. max-drop=0.5,max-class-drop=1.0,min-agreement=0.98 (exit 3 when broken)."
    )
    out_dir: Path | None = flag(None, "--out", type=Path, help="Report directory (report.json, report.md, PNGs).")
    e2e: bool = flag(True, None, false="--no-e2e", help="Skip end-to-end (decode + preprocess) latency.")
    max_images: int | None = flag(None, "--max-images", type=int, help="Use only the first N images (quick runs).")
    plots: bool = flag(True, None, false="--no-plots", help="Do not draw PNG plots.")
    progress: bool = flag(True, None, false="--quiet", help="No progress bars.")
    allow_partial: bool = flag(
        False, "--allow-partial", help="Let a gate pass although some reference images are not in the data."
    )
    allow_missing_classes: bool = flag(
        False, "--allow-missing-classes", help="Benchmark on a split that lacks some class."
    )

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
        check_streams(self.streams, self.mode, EdgeferError)
        object.__setattr__(self, "gate", Gate.from_value(self.gate))
        for name in ("out_dir", "cache_dir"):
            value = getattr(self, name)
            if isinstance(value, (str, os.PathLike)):
                object.__setattr__(self, name, Path(value))

    def to_argv(
        self,
        models: Sequence[str | os.PathLike],
        data: str | os.PathLike,
        *,
        reference: str | os.PathLike | None = None,
    ) -> list[str]:
        """The ``edgefer benchmark`` command line that runs these options on ``models`` and ``data``."""
        ref = ["--reference", os.fspath(reference)] if reference is not None else []
        models = [os.fspath(m) for m in models]
        return ["edgefer", "benchmark", *models, "--data", os.fspath(data), *ref, *to_argv(self)]

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
