"""The OpenVINO target: an IR (``.xml`` + ``.bin``) converted from the FP32 ONNX at FP32/FP16, or
NNCF's INT8 IR with FakeQuantize ops (or INT8 weights only, ``wc``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edgefer.export.job import quantize
from edgefer.export.targets.base import FQ_IR, Built, Target
from edgefer.formats import format_of

if TYPE_CHECKING:
    from edgefer.export.job import Job
    from edgefer.metadata import ModelMetadata


class OpenVINOTarget(Target):
    """``--target openvino``."""

    name = "openvino"
    int8 = FQ_IR
    methods = ("ptq", "ptq-acc", "qat", "wc")
    pipeline_stages = ("openvino-fp32", "openvino-fp16", "openvino-int8")

    def build(self, job: Job, fp32_onnx: Path | None, stem: str, meta: ModelMetadata) -> Built:
        precision = str(job.opts.precision)
        if precision == "int8":
            return Built(quantize(job, fp32_onnx, self.name))
        from edgefer.export.openvino import export_openvino

        assert fp32_onnx is not None
        xml, diff = export_openvino(fp32_onnx, job.stage, precision, name=stem)
        job.parity[f"openvino_{precision}_vs_onnx"] = float(diff or 0.0)
        job.files.extend(format_of(xml).files(xml))
        return Built(xml)


TARGET = OpenVINOTarget()
