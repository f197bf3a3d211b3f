"""Checks on an FP32 ONNX a build was given rather than exported itself: the one place export,
its FP16 and OpenVINO conversions and quantization check it, so they refuse it in the same words."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgefer.errors import EdgeferError
    from edgefer.metadata import ModelMetadata


def require_fp32(path: Path, meta: ModelMetadata, task: str, error: type[EdgeferError]) -> None:
    """``error`` unless the ONNX at ``path`` (whose metadata is ``meta``) is FP32: ``task`` (e.g.
    "FP16 conversion") starts from the FP32 ONNX, not an FP16 or Q/DQ one."""
    if meta.precision != "fp32":
        raise error(f"{path.name} is {meta.precision}; {task} starts from the FP32 ONNX")


def check_img_size(path: Path, meta: ModelMetadata, img_size: int | None, error: type[EdgeferError]) -> None:
    """``error`` when an image size was asked for (``--img-size``) that the given ONNX was not exported at."""
    if img_size is not None and img_size != meta.preprocessing.input_size:
        raise error(
            f"{path.name} was exported at {meta.preprocessing.input_size} px, not {img_size}; "
            "re-export it or drop --img-size"
        )
