"""Artifacts shared by the benchmark/backends/bundle tests: the session's tiny checkpoint exported
once to ONNX (edgefer.export.onnx.export_onnx) and OpenVINO IR (edgefer.export.openvino.export_openvino).

Cached per process so several test modules pay for the export once.
"""

from __future__ import annotations

from pathlib import Path

_CACHE: dict[str, dict[str, Path]] = {}


def exported_artifacts(checkpoint: Path, out: Path) -> dict[str, Path]:
    """{"pt": checkpoint, "onnx": FP32 ONNX, "xml": OpenVINO FP32 IR, "xml16": OpenVINO FP16 IR}."""
    key = str(checkpoint)
    if key not in _CACHE:
        from edgefer.export.onnx import export_onnx
        from edgefer.export.openvino import export_openvino

        onnx_path = export_onnx(checkpoint, out, check_parity=False).artifact
        xml, _ = export_openvino(onnx_path, out, precision="fp32", smoke_test=False)
        xml16, _ = export_openvino(onnx_path, out, precision="fp16", smoke_test=False)
        _CACHE[key] = {"pt": Path(checkpoint), "onnx": Path(onnx_path), "xml": Path(xml), "xml16": Path(xml16)}
    return _CACHE[key]
