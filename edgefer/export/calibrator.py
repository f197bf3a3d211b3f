"""The legacy TensorRT INT8 entropy calibrator (TensorRT <= 10, for JetPack 5 users who ask).

Implicit calibration is deprecated since TensorRT 10.1 and removed in 11; the portable INT8 path
is the Q/DQ ONNX. Where a user still wants it, :func:`make_entropy_calibrator` subclasses
``tensorrt.IInt8EntropyCalibrator2`` (the calibrator DLA requires): ``get_batch_size()``,
``get_batch(names) -> [device pointer] | None``, ``read_calibration_cache() -> bytes | None`` and
``write_calibration_cache(cache)``. Batches are the eval-preprocessed calibration subset
(:func:`edgefer.data.calibration.calibration_arrays`, the same images NNCF PTQ sees) copied
to the GPU with :mod:`edgefer.backends.cuda_mem` (pycuda, or cuda-python).

The cache (``<out>/<stem>.calib.cache``) makes the next build skip calibration, but TensorRT
matches a cache to a network by tensor names only: a cache from before retraining, or from other
calibration images, would silently give the new engine the old scales. TensorRT leaves this to the
caller: "the network should also be recalibrated if its structure changes, or the input data set
changes, and it is the responsibility of the application to ensure this" (NVIDIA/TensorRT
python/docstrings/infer/pyInt8Doc.h, ``IInt8Calibrator.read_calibration_cache``; Polygraphy's
``Calibrator`` reuses any non-empty cache file by path alone). So each cache gets a key
beside it (``<cache>.json``: the source ONNX's sha256 and the calibration set's sha256, see
:func:`calibration_key`). With calibration data the cache is reused only when both match, and
recalibrated otherwise; without data it is reused only when the ONNX matches, and refused
otherwise (or when it has no key).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from edgefer.errors import ExportError
from edgefer.metadata import ModelMetadata
from edgefer.utils.io import atomic_path, write_json


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


#: Schema of the calibration cache key (``<cache>.json``).
CALIB_KEY_SCHEMA = 1


def calib_key_path(cache: Path) -> Path:
    """The key file beside a calibration cache: ``m.calib.cache`` -> ``m.calib.cache.json``."""
    return cache.with_name(cache.name + ".json")


def calibration_key(onnx_sha256: str, images: np.ndarray, trt_version: str = "") -> dict[str, Any]:
    """What a calibration cache was made from: the source ONNX, the exact calibration tensors and
    the TensorRT that wrote it.

    The images are hashed after preprocessing (shape, dtype and bytes), so another dataset,
    ``--calib-size`` or preprocessing gives another key. The TensorRT version counts too when data
    is at hand (recalibrating is then cheap and the cache's own header names its TensorRT).
    """
    x = np.ascontiguousarray(images, dtype=np.float32)
    digest = hashlib.sha256(f"{x.shape}|{x.dtype.str}|".encode())
    digest.update(x.reshape(-1).view(np.uint8))  # no copy of the (up to ~180 MB) calibration set
    return {
        "schema": CALIB_KEY_SCHEMA,
        "onnx_sha256": str(onnx_sha256),
        "calibration_sha256": digest.hexdigest(),
        "images": int(x.shape[0]),
        "tensorrt_version": str(trt_version),
    }


def read_calibration_key(cache: Path) -> dict[str, Any] | None:
    """The key of a calibration cache, or None where there is none (or it is unreadable)."""
    path = calib_key_path(cache)
    try:
        key = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return key if isinstance(key, dict) else None


def _same_key(a: dict[str, Any] | None, b: dict[str, Any]) -> bool:
    return a is not None and all(a.get(k) == b[k] for k in ("onnx_sha256", "calibration_sha256", "tensorrt_version"))


def cache_problem(cache: Path, onnx_sha256: str) -> str | None:
    """Why a calibration cache cannot be used without calibration data for the FP32 ONNX with sha256
    ``onnx_sha256`` -- missing, unkeyed, or keyed to another ONNX -- or None when it can.

    Asked by the builder when no data is given, and before printing a ``trtexec --calib`` command
    (:mod:`edgefer.export.api`), which trtexec would run on random data (a missing file) or with
    another model's scales.
    """
    if not cache.exists():
        return f"there is no calibration cache {cache}"
    key = read_calibration_key(cache)
    if key is None:
        return (
            f"{cache.name} has no key {calib_key_path(cache).name}, so edgefer cannot tell which ONNX and images it "
            "was made from"
        )
    if key.get("onnx_sha256") != onnx_sha256:
        return (
            f"{cache.name} was made for another ONNX (sha256 {str(key.get('onnx_sha256'))[:12]}..., this one is "
            f"{onnx_sha256[:12]}...), e.g. before retraining"
        )
    return None


def make_entropy_calibrator(
    trt: Any,
    meta: ModelMetadata,
    data: Any,
    cache: Path,
    calib_size: int,
    batch: int,
    input_shape: tuple[int, ...],
    onnx_sha256: str,
    device: int = 0,
) -> Any:
    """An ``IInt8EntropyCalibrator2`` over ``data`` (dataset path) with a ``cache`` keyed to the ONNX and data.

    ``input_shape`` is the network input's shape: its static batch (or ``batch`` for a dynamic
    one, :func:`calibration_batch_size`) sizes both the batches and the one device buffer, which
    holds exactly what TensorRT reads per ``get_batch``. ``onnx_sha256`` is the source ONNX's hash.
    The cache is handed to TensorRT only when its key matches (see the module docstring); the
    calibrator's ``reused`` says whether it was.
    """
    cache = Path(cache)
    shape = tuple(int(d) for d in input_shape)
    n = calibration_batch_size(shape, batch)
    image_shape = shape[1:]
    batches: list[np.ndarray] = []
    if data is None:
        problem = cache_problem(cache, onnx_sha256)
        if problem is not None:
            raise ExportError(f"INT8 calibration needs --data: {problem}; pass --data to recalibrate")
        key = read_calibration_key(cache)
        reuse = True
    else:
        from edgefer.data.calibration import calibration_arrays

        arrays = calibration_arrays(data, meta.preprocessing, calib_size=calib_size)
        if tuple(arrays.x.shape[1:]) != image_shape:
            raise ExportError(
                f"calibration images have shape {tuple(arrays.x.shape[1:])} but the network input takes {image_shape}"
            )
        key = calibration_key(onnx_sha256, arrays.x, getattr(trt, "__version__", ""))
        reuse = cache.exists() and _same_key(read_calibration_key(cache), key)
        if not reuse:
            batches = calibration_batches(arrays.x, n)
    nbytes = n * int(np.prod(image_shape)) * np.dtype(np.float32).itemsize

    from edgefer.backends.cuda_mem import open_allocator

    class _EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.batch = n
            self.nbytes = nbytes
            self.reused = reuse
            self._batches = batches
            self._next = 0
            self._alloc = open_allocator(device) if batches else None
            self._ptr = None
            if self._alloc is not None:
                with self._alloc.activate():
                    self._ptr = self._alloc.malloc(nbytes)

        def get_batch_size(self) -> int:
            return self.batch

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self._next >= len(self._batches):
                return None
            with self._alloc.activate():
                self._alloc.htod_async(self._ptr, self._batches[self._next])
                self._alloc.synchronize()
            self._next += 1
            return [int(self._ptr)]

        def read_calibration_cache(self) -> bytes | None:
            # only a cache keyed to this ONNX (and these images): otherwise TensorRT calibrates
            return cache.read_bytes() if reuse and cache.exists() else None

        def write_calibration_cache(self, data: Any) -> None:
            with atomic_path(cache) as tmp:
                tmp.write_bytes(bytes(data))
            if key is not None:  # the key last: a cache is never keyed before it is complete
                write_json(calib_key_path(cache), key)

        def close(self) -> None:
            if self._alloc is not None:
                with self._alloc.activate():
                    self._alloc.free(self._ptr)
                self._alloc.close()
                self._alloc = None

    return _EntropyCalibrator()
