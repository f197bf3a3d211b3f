"""Small helpers on in-memory model graphs, shared by PTQ, accuracy control, QAT and the debugger.

They sit below every quantization module (this one imports none of them), so the orchestrator
(:mod:`edgefer.quantize.api`) and its peers (:mod:`~edgefer.quantize.accuracy_control`,
:mod:`~edgefer.quantize.qat`, :mod:`~edgefer.quantize.debug`) import them from one place
instead of from each other.
"""

from __future__ import annotations

from typing import Any


def input_name(onnx_model: Any) -> str:
    """The name of an ``onnx.ModelProto``'s image input: its first graph input that is not an initializer."""
    inits = {t.name for t in onnx_model.graph.initializer}
    return next(i.name for i in onnx_model.graph.input if i.name not in inits)


def onnx_to_openvino(model: Any) -> Any:
    """An in-memory ONNX model as OpenVINO reads it from a file (``ov.convert_model``: Q/DQ pairs
    become FakeQuantize, int8 weights stay int8)."""
    import io

    import openvino as ov

    return ov.convert_model(io.BytesIO(model.SerializeToString()))
