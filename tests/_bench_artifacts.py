"""Artifacts shared by the benchmark/backends/bundle tests: the session's tiny checkpoint exported
once to ONNX and OpenVINO FP32/FP16 IR by :func:`edgefer.pipeline.artifacts.build_artifacts`.

Cached per process so several test modules pay for the export once.
"""

from __future__ import annotations

from pathlib import Path

_CACHE: dict[str, dict[str, Path]] = {}


def exported_artifacts(checkpoint: Path, out: Path) -> dict[str, Path]:
    """{"pt": checkpoint, "onnx": FP32 ONNX, "xml": OpenVINO FP32 IR, "xml16": OpenVINO FP16 IR}."""
    key = str(checkpoint)
    if key not in _CACHE:
        from edgefer.pipeline.artifacts import build_artifacts

        arts = build_artifacts(checkpoint, out, openvino=("fp32", "fp16"), checks=False)
        _CACHE[key] = {
            "pt": Path(checkpoint),
            "onnx": arts.onnx,
            "xml": arts.openvino["fp32"],
            "xml16": arts.openvino["fp16"],
        }
    return _CACHE[key]
