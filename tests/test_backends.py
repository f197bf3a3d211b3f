"""Backends: the same artifact on ONNX Runtime, OpenVINO and PyTorch gives the same logits; device
and provider selection; the TensorRT/CUDA logic that does not need a GPU."""

from __future__ import annotations

import numpy as np
import pytest
from _bench_artifacts import exported_artifacts
from conftest import HAS_TRT

from edgefer.backends import available_backends, open_model
from edgefer.backends.cuda_mem import choose_allocator
from edgefer.backends.devices import Device, parse_device
from edgefer.backends.onnxruntime import select_providers
from edgefer.backends.openvino import openvino_device_name
from edgefer.backends.tensorrt import IOTensor, batch_limits, concrete_shape, uses_named_tensors
from edgefer.errors import BackendError, EdgeferError, MissingDependencyError


@pytest.fixture(scope="module")
def arts(tiny_checkpoint, tmp_path_factory):
    return exported_artifacts(tiny_checkpoint, tmp_path_factory.mktemp("bench_artifacts"))


def test_parse_device():
    assert parse_device(None) == Device("cpu")
    assert parse_device("CUDA:1") == Device("gpu", 1)
    assert parse_device("GPU.2") == Device("gpu", 2)
    assert parse_device("trt") == Device("tensorrt")
    assert str(parse_device("cuda")) == "gpu"
    for bad in ("tpu", "cpu:1", "cuda:x", ""):
        if bad == "":
            assert parse_device(bad) == Device("cpu")
            continue
        with pytest.raises(BackendError):
            parse_device(bad)


def test_onnxruntime_provider_selection():
    assert select_providers("cpu", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    with pytest.raises(BackendError, match="CUDAExecutionProvider"):
        select_providers("cuda", ["CPUExecutionProvider"])
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert select_providers("cuda:1", gpu) == [("CUDAExecutionProvider", {"device_id": "1"}), "CPUExecutionProvider"]
    trt = select_providers("tensorrt", gpu)
    assert [p if isinstance(p, str) else p[0] for p in trt] == gpu
    with pytest.raises(BackendError):
        select_providers("npu", gpu)


def test_openvino_device_names():
    assert openvino_device_name("cpu", ["CPU"]) == "CPU"
    assert openvino_device_name("gpu", ["CPU", "GPU"]) == "GPU"
    assert openvino_device_name("gpu:0", ["CPU", "GPU"]) == "GPU"
    assert openvino_device_name("gpu:1", ["CPU", "GPU.0", "GPU.1"]) == "GPU.1"
    assert openvino_device_name("npu", ["CPU", "NPU"]) == "NPU"
    with pytest.raises(BackendError, match="available: CPU"):
        openvino_device_name("npu", ["CPU"])


def test_all_backends_agree(arts):
    rng = np.random.default_rng(0)
    size = open_model(arts["onnx"]).input_size
    x = rng.standard_normal((5, 3, size, size)).astype(np.float32)
    out = {}
    for key in ("pt", "onnx", "xml", "xml16"):
        with open_model(arts[key], threads=1) as b:
            info = b.info()
            assert {"backend", "version", "device", "precision", "path"} <= set(info)
            assert b.metadata.model_name == "msff_resnet18"
            assert b.max_batch is None  # dynamic batch everywhere
            out[key] = b.infer(x)
            assert out[key].dtype == np.float32 and out[key].shape == (5, 7)
            np.testing.assert_allclose(b.infer(x[:1]), out[key][:1], atol=1e-3, rtol=1e-3)
    backends = [open_model(arts[k]).info()["backend"] for k in ("pt", "onnx", "xml")]
    assert backends == ["torch", "onnxruntime", "openvino"]
    np.testing.assert_allclose(out["onnx"], out["pt"], atol=1e-4)
    np.testing.assert_allclose(out["xml"], out["onnx"], atol=1e-3)
    assert (out["xml16"].argmax(1) == out["onnx"].argmax(1)).mean() >= 0.8
    assert open_model(arts["xml16"]).precision == "fp16"


def test_wrong_input_and_bad_files(arts, tmp_path):
    b = open_model(arts["onnx"])
    with pytest.raises(BackendError, match="input must be"):
        b.infer(np.zeros((1, 3, 10, 10), np.float32))
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(BackendError, match="cannot load"):
        open_model(bad)
    other = tmp_path / "model.tflite"
    other.write_bytes(b"x")
    with pytest.raises(BackendError, match="no backend can load"):
        open_model(other)
    with pytest.raises(BackendError, match="unknown backend"):
        open_model(arts["onnx"], backend="tflite")
    with pytest.raises(BackendError, match="CUDA"):
        open_model(arts["onnx"], device="cuda")


def test_torch_backend_puts_the_thread_count_back(tmp_path):
    """``threads`` is process-wide in torch: closing the backend restores the count it found, or every
    later torch computation in the process (a test run, a pipeline) runs on the benchmark's count."""
    import torch

    from edgefer.labels import CLASS_NAMES
    from edgefer.models import create_model
    from edgefer.preprocess import Preprocessing
    from edgefer.training.checkpoint import save_checkpoint

    ckpt = save_checkpoint(
        tmp_path / "m.pt",
        model=create_model("resnet18", num_classes=7),
        model_name="resnet18",
        model_args={},
        class_names=CLASS_NAMES,
        preprocessing=Preprocessing(input_size=32),
    )
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    with open_model(ckpt, threads=other) as b:
        assert torch.get_num_threads() == other and b.info()["threads"] == other
    assert torch.get_num_threads() == before
    b.close()  # a second close changes nothing
    assert torch.get_num_threads() == before


def test_openvino_runs_an_onnx_file_when_asked(arts):
    with open_model(arts["onnx"], backend="openvino") as b:
        assert b.info()["backend"] == "openvino" and b.metadata.model_name == "msff_resnet18"


def test_tensorrt_pure_logic():
    assert not uses_named_tensors("8.4.3") and uses_named_tensors("8.5.2") and uses_named_tensors("11.0.0")
    dyn = IOTensor("input", True, (-1, 3, 64, 64), np.float32, 0, ((1, 3, 64, 64), (8, 3, 64, 64), (32, 3, 64, 64)))
    assert batch_limits(dyn) == (1, 32)
    assert batch_limits(IOTensor("input", True, (4, 3, 64, 64), np.float32, 0)) == (4, 4)
    with pytest.raises(BackendError, match="no optimisation profile"):
        batch_limits(IOTensor("input", True, (-1, 3, 64, 64), np.float32, 0))
    assert concrete_shape((-1, 7), 8) == (8, 7)
    with pytest.raises(BackendError):
        concrete_shape((-1, 3, -1, 64), 2)


def test_cuda_allocator_choice(monkeypatch):
    monkeypatch.delenv("EDGEFER_CUDA_ALLOCATOR", raising=False)
    assert choose_allocator({"pycuda": True, "cuda-python": True}) == "pycuda"
    assert choose_allocator({"pycuda": False, "cuda-python": True}) == "cuda-python"
    assert choose_allocator({"pycuda": True, "cuda-python": True}, prefer="cuda-python") == "cuda-python"
    with pytest.raises(MissingDependencyError, match="trt"):
        choose_allocator({"pycuda": False, "cuda-python": False})
    with pytest.raises(BackendError):
        choose_allocator({"pycuda": False, "cuda-python": True}, prefer="pycuda")
    monkeypatch.setenv("EDGEFER_CUDA_ALLOCATOR", "cuda-python")
    assert choose_allocator({"pycuda": True, "cuda-python": True}) == "cuda-python"


@pytest.mark.skipif(HAS_TRT, reason="checks the message when tensorrt is missing")
def test_engine_without_tensorrt_names_the_extra(tmp_path):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"\x00" * 16)
    assert "tensorrt" in available_backends()
    with pytest.raises(MissingDependencyError, match=r"edgefer\[trt\]"):
        open_model(engine, device="cuda")


@pytest.mark.trt
def test_tensorrt_engine_matches_onnx(arts, tmp_path):  # pragma: no cover - needs a GPU with TensorRT
    from edgefer.export.tensorrt import EngineBuildSpec, build_engine

    engine = tmp_path / "model.engine"
    build_engine(arts["onnx"], engine, EngineBuildSpec(precision="fp32"))
    x = np.random.default_rng(0).standard_normal((4, 3, 64, 64)).astype(np.float32)
    with open_model(engine, device="cuda") as b:
        np.testing.assert_allclose(b.infer(x), open_model(arts["onnx"]).infer(x), atol=1e-2)
        assert b.last_device_ms is not None and b.last_device_ms > 0
    with pytest.raises(EdgeferError):
        open_model(engine, device="npu")
