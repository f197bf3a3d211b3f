"""Inference backends behind one interface (see :mod:`edgefer.backends.base`).

``open_model(path, device="cpu")`` picks the backend that can load an artifact; the benchmark
and the runtime never branch on a backend's name. Backend modules import their engine lazily,
so ``import edgefer.backends`` works with only the core installed.
"""

from edgefer.backends.base import Backend, available_backends, open_model, register_backend

__all__ = ["Backend", "available_backends", "open_model", "register_backend"]
