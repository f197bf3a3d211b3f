"""What an export produced: artifact paths, metadata and the numbers that prove it is right."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgefer.formats import PRECISIONS, TARGETS  # one list for export, quantize and the pipeline
from edgefer.metadata import ModelMetadata

__all__ = ["PRECISIONS", "TARGETS", "ExportResult"]


@dataclass
class ExportResult:
    """The outcome of one export.

    Attributes:
        target: "onnx", "openvino" or "trt".
        precision: "fp32", "fp16" or "int8".
        artifact: the main artifact (``.onnx``, OpenVINO ``.xml``, TensorRT ``.engine``); for a
            TensorRT export on a machine without TensorRT it is the ONNX the device builds from.
        onnx: the FP32 ONNX every other target starts from.
        metadata: the :class:`ModelMetadata` written into ``artifact``.
        parity: max abs differences measured at export time, e.g.
            ``{"onnx_fp32_vs_torch": 3e-7, "openvino_fp16_vs_onnx": 2e-3}``.
        files: every file written (artifact, sidecars, ONNX intermediates, reference).
        reference: ``reference.npz`` when ``reference_data`` was given.
        engine_built: False when a TensorRT export only prepared the ONNX (no TensorRT here).
        commands: commands to run on the device (``trtexec`` / ``edgefer export``), as strings.
        notes: human-readable remarks (what was skipped and why).
    """

    target: str
    precision: str
    artifact: Path
    onnx: Path | None
    metadata: ModelMetadata
    parity: dict[str, float] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    reference: Path | None = None
    engine_built: bool = False
    commands: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "precision": self.precision,
            "artifact": str(self.artifact),
            "onnx": str(self.onnx) if self.onnx else None,
            "metadata": self.metadata.to_dict(),
            "parity": dict(self.parity),
            "files": [str(f) for f in self.files],
            "reference": str(self.reference) if self.reference else None,
            "engine_built": self.engine_built,
            "commands": list(self.commands),
            "notes": list(self.notes),
        }
