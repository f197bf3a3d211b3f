"""A real, tiny ONNX carrying edgefer metadata, built without torch: an Identity from the image input to
``logits``. The TensorRT build-script and stand-in tests use it where only the file's shapes and
metadata matter (they also run in the torch-free device venv of tests/test_device_python.py)."""

from __future__ import annotations

from typing import Any

import pytest


def identity_onnx(size: int, batch: int | None = None, extra: dict[str, Any] | None = None) -> Any:
    """The ``onnx.ModelProto``: input ``(batch or "batch", 3, size, size)``; metadata for a ``size`` px model."""
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from edgefer.metadata import ModelMetadata
    from edgefer.preprocess import Preprocessing

    dims: list = ["batch" if batch is None else batch, 3, size, size]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["logits"])],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, dims)],
    )
    model = helper.make_model(graph)
    meta = ModelMetadata("m", preprocessing=Preprocessing(input_size=size), extra=dict(extra or {}))
    for key, value in meta.to_props().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model
