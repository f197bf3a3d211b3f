"""The backend interface: ``load(path)``, ``infer(batch) -> logits``, ``info()``.

A backend is a small class; adding one means adding one module that subclasses
:class:`Backend` and decorates it with :func:`register_backend`, plus one row of
:data:`edgefer.formats.FORMATS` naming that module, the backend and its suffixes. Torch-free (the
torch backend imports torch itself, lazily).

Contract for subclasses:

* ``can_load(path) -> bool`` (classmethod): cheap check; by default a file with a suffix of the
  backend's row in the formats table (override to look at file contents too).
* ``_load(path)``: open the artifact (called by ``__init__``); set ``self.metadata``.
* ``infer(batch)``: float32 numpy batch in the metadata's layout (NCHW, or NHWC for an imported
  Keras-style model) -> float32 (N, num_classes) numpy array of the model's raw outputs (logits,
  or probabilities where ``metadata.outputs`` says so), in the metadata's class order.
  Must accept any batch size in ``[1, max_batch]`` (``None`` = unlimited).
* ``info()``: dict with at least backend, version, device, precision, path.
* ``precision``: "fp32" | "fp16" | "int8" (from metadata or the artifact itself).
"""

from __future__ import annotations

import importlib
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgefer.errors import BackendError, MissingDependencyError
from edgefer.formats import FORMATS, format_for_backend, known_suffixes
from edgefer.metadata import ModelMetadata


class Backend(ABC):
    """One loaded artifact on one device."""

    #: short name used in reports ("onnxruntime", "openvino", "tensorrt", "torch")
    name: ClassVar[str] = ""
    #: the extra to install when the engine package is missing
    extra: ClassVar[str] = ""

    def __init__(
        self,
        path: str | os.PathLike,
        device: str = "cpu",
        threads: int | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        self.path = Path(path)
        self.device = device
        self.threads = threads
        #: where a backend that compiles on load keeps compiled models (OpenVINO); others ignore it
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.metadata: ModelMetadata | None = None
        self.max_batch: int | None = None
        self._load(self.path)
        if self.metadata is None:
            raise BackendError(f"{type(self).__name__} did not read metadata from {path}")

    @classmethod
    def can_load(cls, path: Path) -> bool:
        """True for a file whose suffix the backend's row of the formats table claims."""
        fmt = format_for_backend(cls.name)
        return fmt is not None and path.is_file() and fmt.claims(path)

    @abstractmethod
    def _load(self, path: Path) -> None: ...

    @abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def info(self) -> dict[str, Any]: ...

    @property
    def precision(self) -> str:
        return self.metadata.precision if self.metadata else "fp32"

    @property
    def input_size(self) -> int:
        return self.metadata.preprocessing.input_size

    def check_batch(self, batch: np.ndarray) -> np.ndarray:
        """Validate shape/dtype against the metadata; return a contiguous float32 array."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        shape = self.metadata.preprocessing.input_shape if self.metadata else (3, self.input_size, self.input_size)
        if batch.ndim != 4 or batch.shape[1:] != shape:
            want = ", ".join(str(v) for v in ("N", *shape))
            raise BackendError(f"{self.name}: input must be ({want}), got {tuple(batch.shape)}")
        if self.max_batch is not None and batch.shape[0] > self.max_batch:
            raise BackendError(f"{self.name}: batch {batch.shape[0]} exceeds the artifact's max batch {self.max_batch}")
        return batch

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release device resources (optional)."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, device={self.device!r}, precision={self.precision!r})"


_BACKENDS: list[type[Backend]] = []
#: modules that define backends, in the order they are tried by :func:`open_model` (the table's).
_BACKEND_MODULES = tuple(f.backend_module for f in FORMATS)


def register_backend(cls: type[Backend]) -> type[Backend]:
    if cls not in _BACKENDS:
        _BACKENDS.append(cls)
    return cls


def _load_backend_modules() -> None:
    for mod in _BACKEND_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:  # a backend module exists but its own import failed: surface it
                raise


def available_backends() -> dict[str, type[Backend]]:
    _load_backend_modules()
    return {b.name: b for b in _BACKENDS}


def open_model(
    path: str | os.PathLike,
    device: str = "cpu",
    threads: int | None = None,
    backend: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Backend:
    """Load an artifact with the backend that understands it (or the one named by ``backend``).

    ``.onnx`` runs on ONNX Runtime, ``.xml`` on OpenVINO, ``.engine``/``.plan`` on TensorRT and
    ``.pt`` checkpoints on PyTorch by default: the backend of the row of
    :data:`edgefer.formats.FORMATS` that claims the suffix.

    ``cache_dir``: a folder where a backend that compiles on load (OpenVINO) keeps the compiled
    model, so that the next open on the same device reads it instead of compiling again.
    """
    p = Path(path)
    if not p.exists():
        raise BackendError(f"artifact {p} does not exist")
    backends = available_backends()
    if backend is not None:
        if backend not in backends:
            raise BackendError(f"unknown backend {backend!r}; available: {', '.join(backends)}")
        candidates = [backends[backend]]
    else:
        candidates = [b for b in backends.values() if b.can_load(p)]
    if not candidates:
        raise BackendError(f"no backend can load {p.name} (known: {known_suffixes()})")
    cls = candidates[0]
    try:
        return cls(p, device=device, threads=threads, cache_dir=cache_dir)
    except ImportError as exc:
        raise MissingDependencyError(exc.name or cls.name, cls.extra, f"the {cls.name} backend") from exc
