"""Device strings shared by every backend: ``cpu``, ``gpu``, ``cuda``, ``cuda:1``, ``npu``, ``GPU.1``.

Users type one device string on the command line; each backend maps it to its own vocabulary
(ONNX Runtime execution providers, OpenVINO device names, a CUDA ordinal for TensorRT). Parsing
lives here once so ``--device cuda:0`` means the same GPU on every backend.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgefer.errors import BackendError

_KINDS = ("cpu", "gpu", "npu", "auto", "tensorrt")
_ALIASES = {"cuda": "gpu", "trt": "tensorrt"}
_PATTERN = re.compile(r"^(?P<kind>[a-z]+)(?:[:.](?P<index>\d+))?$")


@dataclass(frozen=True)
class Device:
    """A parsed device: ``kind`` in cpu/gpu/npu/auto/tensorrt and an optional ordinal."""

    kind: str
    index: int | None = None

    @property
    def ordinal(self) -> int:
        """The device ordinal, 0 when none was given."""
        return self.index or 0

    def __str__(self) -> str:
        return self.kind if self.index is None else f"{self.kind}:{self.index}"


def parse_device(device: str | None) -> Device:
    """Parse a device string, case-insensitively; ``None`` and ``""`` mean ``cpu``.

    ``cuda``/``cuda:N`` are synonyms of ``gpu``/``gpu:N``; ``GPU.1`` (OpenVINO's spelling) is
    accepted too. ``tensorrt``/``trt`` asks ONNX Runtime for its TensorRT execution provider.
    """
    text = (device or "cpu").strip().lower()
    m = _PATTERN.match(text)
    if not m:
        raise BackendError(f"invalid device {device!r}: expected cpu, gpu, gpu:N, cuda, cuda:N, npu or auto")
    kind = _ALIASES.get(m["kind"], m["kind"])
    if kind not in _KINDS:
        raise BackendError(f"unknown device {device!r}: expected cpu, gpu, gpu:N, cuda, cuda:N, npu or auto")
    index = int(m["index"]) if m["index"] is not None else None
    if kind in ("cpu", "auto") and index:
        raise BackendError(f"device {device!r}: {kind} takes no index")
    return Device(kind, index)
