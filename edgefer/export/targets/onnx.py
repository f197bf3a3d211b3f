"""The ONNX target: the FP32 hub itself, its FP16 conversion, or an explicit Q/DQ INT8 ONNX
(TensorRT-compatible, scored on ONNX Runtime), run by ONNX Runtime."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edgefer.export.job import onnx_at
from edgefer.export.targets.base import QDQ_ONNX, Built, Target

if TYPE_CHECKING:
    from edgefer.export.job import Job
    from edgefer.metadata import ModelMetadata


class OnnxTarget(Target):
    """``--target onnx``."""

    name = "onnx"
    int8 = QDQ_ONNX
    methods = ("ptq", "ptq-acc", "qat")
    pipeline_stages = ("onnx-fp16", "onnx-int8")

    def build(self, job: Job, fp32_onnx: Path | None, stem: str, meta: ModelMetadata) -> Built:
        return Built(onnx_at(job, fp32_onnx, str(job.opts.precision), stem, meta))


TARGET = OnnxTarget()
