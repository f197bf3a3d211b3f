"""What a deployment target is: :class:`Target`, the one face export, quantize and the pipeline ask,
and :class:`Int8Form`, what its INT8 artifact is.

A target owns what is specific to it, so no caller branches on its name:

* how it builds FP32/FP16 (and where INT8 comes from) -- :meth:`Target.build`;
* what its INT8 artifact is (format row, files, file-stem tag, metadata label, how NNCF loads the
  FP32 model for it and whether it is an explicit Q/DQ ONNX held to TensorRT's rules) --
  :attr:`Target.int8`;
* which ``quantize`` methods and NNCF presets it takes, which ``export --int8-mode`` values;
* whether it builds on this machine or prints the device's commands, whether it builds from an
  FP16 / Q-DQ ONNX, and how the pipeline names its stages.

Torch-free and NNCF-free: heavy packages are imported inside the methods that need them, so a
device (a Jetson building its engine from an ONNX) imports this with numpy and its backend only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgefer.errors import QuantizationError
from edgefer.formats import format_named

if TYPE_CHECKING:
    from edgefer.export.job import Job
    from edgefer.export.options import ExportOptions
    from edgefer.metadata import ModelMetadata


@dataclass(frozen=True)
class Int8Form:
    """What an INT8 artifact of a target is.

    Attributes:
        format: the :data:`~edgefer.formats.FORMATS` row it is written in ("openvino", "onnx").
        tag: the file-stem tag, ``<model>_<tag>.xml``: "int8" (IR) or "int8_qdq" (Q/DQ ONNX).
        label: ``metadata.quantization["format"]``: "openvino-fq" or "onnx-qdq".
        companions: the other files written beside the main one, as templates over ``{stem}``.
        qdq: an explicit Q/DQ ONNX for TensorRT: symmetric, signed int8 activations
            (:func:`edgefer.quantize.ptq.to_signed_int8`), checked by :func:`~edgefer.quantize.ptq.check_qdq`;
            False: an OpenVINO model NNCF quantizes with FakeQuantize ops.
        presets: the NNCF presets that give what it runs.
        preset_refusal: the one-line reason another preset is refused ("" when every preset is allowed).
    """

    format: str
    tag: str
    label: str
    companions: tuple[str, ...]
    qdq: bool
    presets: tuple[str, ...]
    preset_refusal: str = ""

    def files(self, stem: str) -> list[str]:
        """The file names an INT8 artifact called ``stem`` is written as, the main file first."""
        return [f"{stem}{format_named(self.format).suffixes[0]}", *(c.format(stem=stem) for c in self.companions)]

    def load_for_nncf(self, fp32_onnx: Path) -> Any:
        """The FP32 ONNX as the model NNCF quantizes for this form: an ``openvino.Model`` (read by
        OpenVINO's ONNX frontend) or the ``onnx.ModelProto`` itself."""
        if self.qdq:
            import onnx

            return onnx.load(str(fp32_onnx))
        import openvino as ov

        return ov.convert_model(str(fp32_onnx))


#: OpenVINO IR with FakeQuantize ops (NNCF on the ``openvino.Model``); any preset.
FQ_IR = Int8Form(
    format="openvino",
    tag="int8",
    label="openvino-fq",
    companions=("{stem}.bin",),
    qdq=False,
    presets=("performance", "mixed"),
)
#: Explicit, TensorRT-compatible Q/DQ ONNX (NNCF on the ``onnx.ModelProto``); symmetric only.
QDQ_ONNX = Int8Form(
    format="onnx",
    tag="int8_qdq",
    label="onnx-qdq",
    companions=(),
    qdq=True,
    presets=("performance",),
    preset_refusal="gives asymmetric activations, which TensorRT cannot run; "
    "the trt/onnx targets use the symmetric 'performance' preset",
)


@dataclass
class Built:
    """What :meth:`Target.build` made: the artifact, whether an engine was built here, the device commands."""

    artifact: Path
    engine_built: bool = False
    commands: list[str] = field(default_factory=list)


class Target(ABC):
    """One deployment target (a row of :data:`~edgefer.formats.FORMATS` with a ``target_module``).

    Subclasses set the class attributes and implement :meth:`build`; everything else has the
    common behaviour. ``tests/test_targets.py`` checks every registered target is complete.
    """

    #: the ``--target`` name, also its formats row's name
    name: str
    #: what its INT8 artifact is
    int8: Int8Form
    #: the ``edgefer quantize --int8-method`` values it takes
    methods: tuple[str, ...]
    #: the ``edgefer export --int8-mode`` values it takes ("qdq": the INT8 quantizer's Q/DQ or IR)
    int8_modes: tuple[str, ...] = ("qdq",)
    #: ``edgefer export`` prints the commands that build the artifact on the device
    device_commands: bool = False
    #: builds from an FP16 or Q/DQ ONNX as well as from the FP32 one
    builds_from_lower_precision: bool = False
    #: the pipeline's artifact stages this target needs (names from
    #: :data:`edgefer.pipeline.flow.ARTIFACT_STAGES`), e.g. TensorRT's engines need the FP16 and Q/DQ ONNX
    pipeline_stages: tuple[str, ...] = ()
    #: the pipeline's note when this target's own package is not installed here ("" when none is due)
    missing_note: str = ""

    @property
    def presets(self) -> tuple[str, ...]:
        """The NNCF presets its INT8 form allows."""
        return self.int8.presets

    def check_preset(self, preset: str) -> None:
        """A :class:`QuantizationError` when ``preset`` does not give what this target runs."""
        if preset not in self.presets:
            raise QuantizationError(f"preset {preset!r} {self.int8.preset_refusal}")

    def needs_quantizer(self, opts: ExportOptions) -> bool:
        """Whether an INT8 export for these options needs the caller's quantizer."""
        return True

    def build_here(self, opts: ExportOptions) -> bool:
        """Whether the artifact is built on this machine (False: the device builds it from the ONNX
        written here); raises before any work when it should be and cannot."""
        return False

    def stage_name(self, precision: str) -> str:
        """The pipeline's name for this target's stage at ``precision``, e.g. ``trt-fp16``."""
        return f"{self.name}-{precision}"

    @abstractmethod
    def build(self, job: Job, fp32_onnx: Path | None, stem: str, meta: ModelMetadata) -> Built:
        """Build the artifact of ``job`` at its precision into ``job.stage``, from the FP32 ONNX
        (None when the job was given an FP16/Q-DQ ONNX), named after ``stem``; record files,
        parity and notes on ``job``."""
