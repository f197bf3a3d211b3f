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


def calibration_batch_size(input_shape: tuple[int, ...], calib_batch: int) -> int:
    """The images per calibration batch for a network input of ``input_shape`` (N, C, H, W).

    TensorRT fills the input from the calibrator's device buffer with the input's own shape: a
    static batch N reads N images whatever ``get_batch_size()`` says (a buffer of fewer images is
    read out of bounds, a larger one is partly ignored), so a static batch wins; a dynamic batch
    (-1) takes the calibration profile's batch, which :func:`edgefer.export.tensorrt.build_engine`
    sets to ``calib_batch``. (TensorRT Python API, IInt8Calibrator.get_batch: "The batch size of
    the input must match the batch size returned by get_batch_size()",
    https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Int8/Calibrator.html.)
    """
    if len(input_shape) != 4:
        raise ExportError(f"the INT8 calibrator needs an (N, C, H, W) image input, not shape {tuple(input_shape)}")
    if any(int(d) < 0 for d in input_shape[1:]):
        raise ExportError(f"input shape {tuple(input_shape)} has dynamic non-batch dimensions; edgefer ONNX have none")
    if int(input_shape[0]) > 0:
        return int(input_shape[0])
    if calib_batch < 1:
        raise ExportError(f"calibration batch must be >= 1, got {calib_batch}")
    return int(calib_batch)


def make_entropy_calibrator(
    trt: Any,
    meta: ModelMetadata,
    data: Any,
    cache: Path,
    calib_size: int,
    batch: int,
    input_shape: tuple[int, ...],
    device: int = 0,
) -> Any:
    """An ``IInt8EntropyCalibrator2`` over ``data`` (dataset path) with a reusable ``cache``.

    ``input_shape`` is the network input's shape: its static batch (or ``batch`` for a dynamic
    one, :func:`calibration_batch_size`) sizes both the batches and the one device buffer, which
    holds exactly what TensorRT reads per ``get_batch``.
    """
    cache = Path(cache)
    shape = tuple(int(d) for d in input_shape)
    n = calibration_batch_size(shape, batch)
    image_shape = shape[1:]
    batches: list[np.ndarray] = []
    if not cache.exists():
        if data is None:
            raise ExportError("INT8 calibration needs --calib-data (or an existing calibration cache)")
        from edgefer.data.calibration import calibration_arrays

        arrays = calibration_arrays(data, meta.preprocessing, calib_size=calib_size)
        if tuple(arrays.x.shape[1:]) != image_shape:
            raise ExportError(
                f"calibration images have shape {tuple(arrays.x.shape[1:])} but the network input takes {image_shape}"
            )
        batches = calibration_batches(arrays.x, n)
    nbytes = n * int(np.prod(image_shape)) * np.dtype(np.float32).itemsize

    from edgefer.backends.cuda_mem import open_allocator

    class _EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.batch = n
            self.nbytes = nbytes
            self._batches = batches
            self._next = 0
            self._alloc = open_allocator(device) if batches else None
            self._ptr = self._alloc.malloc(nbytes) if self._alloc is not None else None

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
