"""Timing loops: model-only and end-to-end latency after a warm-up.

* **model-only**: one preallocated input batch (real preprocessed images, not zeros, so
  data-dependent kernels behave as in production) passed to ``backend.infer`` repeatedly;
  host<->device copies included, decode and preprocessing excluded.
* **end-to-end**: decode (``dataset[i]`` reads and decodes the file) + :func:`preprocess_batch` +
  ``infer`` for a fresh batch of images each call — what a user of the model waits for.

Either a fixed number of iterations or a time budget (``seconds``); both after ``warmup`` calls.
Backends that time the device themselves (TensorRT's CUDA events) expose ``last_device_ms``; it is
collected generically, without asking which backend it is.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from edgefer.errors import EdgeferError

#: a time-budgeted run still takes at least this many samples (percentiles need them).
MIN_SAMPLES = 5


def time_calls(
    fn: Callable[[int], object],
    warmup: int = 10,
    iters: int | None = 50,
    seconds: float | None = None,
    device_ms: Callable[[], float | None] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Call ``fn(i)`` ``warmup`` times untimed, then ``iters`` times (or for ``seconds``) timed.

    Returns per-call wall times in seconds and, when ``device_ms`` reports numbers, the per-call
    device times in seconds.
    """
    if (iters is None) == (seconds is None):
        raise EdgeferError("give either iters or seconds for the latency measurement")
    if iters is not None and iters < 1:
        raise EdgeferError(f"iters must be >= 1, got {iters}")
    if seconds is not None and seconds <= 0:
        raise EdgeferError(f"seconds must be > 0, got {seconds}")
    for i in range(max(0, warmup)):
        fn(i)
    wall: list[float] = []
    dev: list[float] = []
    deadline = time.perf_counter() + seconds if seconds is not None else None
    i = 0
    while True:
        t0 = time.perf_counter()
        fn(warmup + i)
        t1 = time.perf_counter()
        wall.append(t1 - t0)
        if device_ms is not None and (d := device_ms()) is not None:
            dev.append(d / 1000.0)
        i += 1
        if iters is not None and i >= iters:
            break
        if deadline is not None and t1 >= deadline and i >= MIN_SAMPLES:
            break
    return np.asarray(wall), (np.asarray(dev) if dev else None)
