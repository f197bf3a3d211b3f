"""PyTorch backend: an edgefer ``.pt`` checkpoint in eager mode — the FP32 reference.

Rebuilt with :func:`edgefer.training.checkpoint.build_model` (EMA weights when present), run under
``torch.inference_mode`` on the CPU or a CUDA device. ``threads`` sets ``torch.set_num_threads``,
which is process-wide in PyTorch: it is recorded in :meth:`info` so the report shows it, and
:meth:`close` puts the previous count back, so opening a model does not change the speed (or the
float summation order) of every later torch computation in the process.
This is the only backend that imports torch, and it does so only when a checkpoint is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgefer.backends.base import Backend, register_backend
from edgefer.backends.devices import parse_device
from edgefer.errors import BackendError


@register_backend
class TorchBackend(Backend):
    """An edgefer checkpoint run eagerly by PyTorch (FP32)."""

    name: ClassVar[str] = "torch"
    extra: ClassVar[str] = "train"  # torch is not on a device: exported artifacts run there

    def _load(self, path: Path) -> None:
        import torch

        from edgefer.training.checkpoint import build_model, checkpoint_metadata, load_checkpoint

        dev = parse_device(self.device)
        if dev.kind == "cpu":
            self._torch_device = torch.device("cpu")
        elif dev.kind == "gpu":
            if not torch.cuda.is_available():
                raise BackendError("torch: CUDA was requested but torch.cuda.is_available() is False")
            self._torch_device = torch.device("cuda", dev.ordinal)
        else:
            raise BackendError(f"torch cannot run on device {self.device!r} (use cpu or cuda[:N])")
        ckpt = load_checkpoint(path)
        self.metadata = checkpoint_metadata(ckpt, path)
        self._model = build_model(ckpt).to(self._torch_device).eval()
        self._torch = torch
        self._prev_threads: int | None = None
        if self.threads:  # last: a checkpoint that fails to load leaves the thread count alone
            self._prev_threads = torch.get_num_threads()
            torch.set_num_threads(int(self.threads))

    def infer(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        x = torch.from_numpy(self.check_batch(batch)).to(self._torch_device, non_blocking=False)
        with torch.inference_mode():
            out = self._model(x)
        return out.float().cpu().numpy()

    def close(self) -> None:
        """Put back the process-wide torch thread count this backend changed (idempotent)."""
        if getattr(self, "_prev_threads", None) is not None:
            self._torch.set_num_threads(self._prev_threads)
            self._prev_threads = None

    def info(self) -> dict[str, Any]:
        torch = self._torch
        gpu = torch.cuda.get_device_name(self._torch_device) if self._torch_device.type == "cuda" else None
        return {
            "backend": self.name,
            "version": torch.__version__,
            "device": self.device,
            "gpu": gpu,
            "precision": self.precision,
            "threads": torch.get_num_threads() if self._torch_device.type == "cpu" else None,
            "path": str(self.path),
            "max_batch": self.max_batch,
        }
