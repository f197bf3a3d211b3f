"""Both torch -> ONNX exporters behind the one ``torch.onnx.export`` call of edgefer.export.onnx:
same input/output names, a dynamic batch, PyTorch's numbers, and the opset each one promises."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from edgefer.errors import ExportError
from edgefer.export.onnx import BATCH_DIM, INPUT_NAME, OUTPUT_NAME, torch_to_onnx


def _tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 7)
    )


@pytest.mark.parametrize(("exporter", "opset"), [("torchscript", 17), ("dynamo", 18)])
def test_each_exporter_writes_the_same_interface(tmp_path, exporter, opset):
    ort = pytest.importorskip("onnxruntime")
    model = _tiny().eval()
    path = torch_to_onnx(model, tmp_path / "m.onnx", img_size=16, opset=17, exporter=exporter)
    proto = onnx.load(str(path))
    assert [i.name for i in proto.graph.input] == [INPUT_NAME]
    assert [o.name for o in proto.graph.output] == [OUTPUT_NAME]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == BATCH_DIM
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == opset
    x = np.random.default_rng(0).standard_normal((3, 3, 16, 16)).astype(np.float32)
    (got,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {INPUT_NAME: x})
    with torch.no_grad():
        np.testing.assert_allclose(got, model(torch.from_numpy(x)).numpy(), atol=1e-5)
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # nothing left behind


def test_unknown_exporter_is_refused(tmp_path):
    with pytest.raises(ExportError, match="exporter must be one of"):
        torch_to_onnx(_tiny(), tmp_path / "m.onnx", img_size=16, exporter="tracing")
