"""The legacy TensorRT INT8 entropy calibrator (TensorRT <= 10, for JetPack 5 users who ask).

Implicit calibration is deprecated since TensorRT 10.1 and removed in 11; the portable INT8 path
is the Q/DQ ONNX. Where a user still wants it, :func:`make_entropy_calibrator` subclasses
``tensorrt.IInt8EntropyCalibrator2`` (the calibrator DLA requires): ``get_batch_size()``,
``get_batch(names) -> [device pointer] | None``, ``read_calibration_cache() -> bytes | None`` and
``write_calibration_cache(cache)``. Batches are the eval-preprocessed calibration subset
(:func:`edgefer.data.calibration.calibration_arrays`, the same images NNCF PTQ sees) copied
to the GPU with :mod:`edgefer.backends.cuda_mem` (pycuda, or cuda-python). The cache makes the
next build skip calibration: when it exists no data is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgefer.errors import ExportError
from edgefer.metadata import ModelMetadata
from edgefer.utils.io import atomic_path


def calibration_batches(x: np.ndarray, batch: int) -> list[np.ndarray]:
    """Split (N, C, H, W) into full batches of ``batch`` (the tail that does not fill one is
    dropped: the calibration profile has a fixed batch)."""
    n = (len(x) // batch) * batch
    if n == 0:
        raise ExportError(f"{len(x)} calibration images do not fill one calibration batch of {batch}")
    return [np.ascontiguousarray(x[i : i + batch], dtype=np.float32) for i in range(0, n, batch)]


def make_entropy_calibrator(
    trt: Any, meta: ModelMetadata, data: Any, cache: Path, calib_size: int, batch: int, device: int = 0
) -> Any:
    """An ``IInt8EntropyCalibrator2`` over ``data`` (dataset path) with a reusable ``cache``."""
    cache = Path(cache)
    batches: list[np.ndarray] = []
    if not cache.exists():
        if data is None:
            raise ExportError("INT8 calibration needs --calib-data (or an existing calibration cache)")
        from edgefer.data.calibration import calibration_arrays

        arrays = calibration_arrays(data, meta.preprocessing, calib_size=calib_size)
        batches = calibration_batches(arrays.x, batch)

    from edgefer.backends.cuda_mem import open_allocator

    class _EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.batch = batch
            self._batches = batches
            self._next = 0
            self._alloc = open_allocator(device) if batches else None
            self._ptr = self._alloc.malloc(batches[0].nbytes) if batches else None

        def get_batch_size(self) -> int:
            return self.batch

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self._next >= len(self._batches):
                return None
            self._alloc.htod_async(self._ptr, self._batches[self._next])
            self._alloc.synchronize()
            self._next += 1
            return [int(self._ptr)]

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache.exists() else None

        def write_calibration_cache(self, data: Any) -> None:
            with atomic_path(cache) as tmp:
                tmp.write_bytes(bytes(data))

        def close(self) -> None:
            if self._alloc is not None:
                self._alloc.free(self._ptr)
                self._alloc.close()
                self._alloc = None

    return _EntropyCalibrator()
