"""The DeepStream nvinfer config: values derived from the artifact metadata, and numerically right.

DeepStream itself cannot run here (no NVIDIA GPU); what nvinfer does to pixels is documented
(``y = net-scale-factor * (x - offsets[c])``), so we apply exactly that in numpy to the raw pixels
and feed the DeepStream-ready ONNX through ONNX Runtime: the probabilities must equal the
runtime's, which uses the training preprocessing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgefer.metadata import ModelMetadata, read_metadata
from edgefer.preprocess import Preprocessing, preprocess_batch
from edgefer.runtime.deepstream import deepstream_config, normalization, parse_config


@pytest.fixture(scope="module")
def onnx_model(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgefer.export.onnx import export_onnx

    return Path(export_onnx(tiny_checkpoint, tmp_path_factory.mktemp("ds_onnx"), check_parity=False).artifact)


def _ort(path: Path):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _nvinfer_input(pixels: np.ndarray, props: dict[str, str]) -> np.ndarray:
    """What nvinfer feeds the network: per channel y = net-scale-factor * (x - offsets[c]), NCHW."""
    scale = float(props["net-scale-factor"])
    offsets = np.array([float(v) for v in props["offsets"].split(";")], np.float32)
    x = pixels if props["model-color-format"] == "0" else pixels[..., ::-1]  # RGB=0, BGR=1
    return np.ascontiguousarray((scale * (x.astype(np.float32) - offsets)).transpose(0, 3, 1, 2))


def test_config_values_match_the_metadata(onnx_model: Path, tmp_path: Path) -> None:
    meta = read_metadata(onnx_model)
    pp = meta.preprocessing
    res = deepstream_config(meta, onnx_model, tmp_path, gie_unique_id=3, operate_on_gie_id=1, batch_size=8)
    props = parse_config(res.config)
    assert float(props["net-scale-factor"]) == pytest.approx(1.0 / (255.0 * np.mean(pp.std)), rel=1e-12)
    assert [float(v) for v in props["offsets"].split(";")] == pytest.approx([255.0 * m for m in pp.mean])
    assert props["model-color-format"] == ("0" if pp.color_order == "RGB" else "1")
    assert props["infer-dims"] == f"3;{pp.input_size};{pp.input_size}"
    assert props["network-type"] == "1" and props["process-mode"] == "2"
    assert props["gie-unique-id"] == "3" and props["operate-on-gie-id"] == "1"
    assert props["batch-size"] == "8"
    assert props["network-mode"] == "2"  # an fp32 ONNX runs as FP16 on the device by default
    assert props["output-blob-names"] == "probs"
    assert (tmp_path / props["onnx-file"]).exists() and props["labelfile-path"] == "labels.txt"
    labels = (tmp_path / "labels.txt").read_text().splitlines()
    assert labels == [";".join(meta.class_names)]  # classifiers: one line, ';'-separated
    assert res.exact_normalization and res.max_norm_error == 0.0
    assert ModelMetadata.from_dict(json.loads(res.metadata.read_text())["metadata"]).to_dict() == meta.to_dict()
    assert read_metadata(res.model).preprocessing == pp  # the DeepStream ONNX keeps the metadata props


def test_nvinfer_normalisation_reproduces_the_runtime_probabilities(onnx_model: Path, tmp_path: Path) -> None:
    meta = read_metadata(onnx_model)
    pp = meta.preprocessing
    rng = np.random.default_rng(0)
    pixels_rgb = rng.integers(0, 256, (3, pp.input_size, pp.input_size, 3), dtype=np.uint8)
    logits = _ort(onnx_model).run(None, {"input": preprocess_batch(list(pixels_rgb), pp, "RGB")})[0]
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)

    exact = deepstream_config(meta, onnx_model, tmp_path / "exact")
    props = parse_config(exact.config)
    sess = _ort(exact.model)
    probs = sess.run(None, {sess.get_inputs()[0].name: _nvinfer_input(pixels_rgb, props)})[0]
    np.testing.assert_allclose(probs, expected, atol=1e-4)

    approx = deepstream_config(meta, onnx_model, tmp_path / "approx", exact_normalization=False)
    props = parse_config(approx.config)
    assert not approx.exact_normalization
    _, _, _, bound = normalization(pp.mean, pp.std)
    assert approx.max_norm_error == pytest.approx(bound) and 0.0 < bound < 0.05  # ImageNet std: ~0.03
    x_nv = _nvinfer_input(pixels_rgb, props)
    x_true = preprocess_batch(list(pixels_rgb), pp, "RGB")
    assert np.abs(x_nv - x_true).max() <= bound + 1e-5
    sess = _ort(approx.model)
    assert sess.run(None, {sess.get_inputs()[0].name: x_nv})[0].shape == expected.shape


def test_bgr_models_and_engines(onnx_model: Path, tmp_path: Path) -> None:
    meta = read_metadata(onnx_model)
    bgr = meta.replace(
        preprocessing=Preprocessing(
            input_size=meta.preprocessing.input_size, color_order="BGR", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)
        )
    )
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"serialized engine")  # never run here: only the config is checked
    res = deepstream_config(bgr.replace(precision="int8"), engine, tmp_path / "ds", batch_size=4)
    props = parse_config(res.config)
    assert props["model-color-format"] == "1"
    assert props["network-mode"] == "1"
    assert float(props["net-scale-factor"]) == pytest.approx(1 / 127.5)
    assert props["offsets"].split(";") == ["127.5"] * 3
    assert props["model-engine-file"] == str(engine.resolve()) and "onnx-file" not in props
    assert res.exact_normalization  # equal std: one scale factor is exact


def test_deepstream_cli(onnx_model: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from edgefer.cli import app

    res = CliRunner().invoke(
        app,
        [
            "deepstream",
            "--model",
            str(onnx_model),
            "--out",
            str(tmp_path),
            "--precision",
            "fp32",
            "--operate-on-class-ids",
            "0;2",
        ],
    )
    assert res.exit_code == 0, res.output
    props = parse_config(tmp_path / "config_infer_secondary_edgefer.txt")
    assert props["network-mode"] == "0" and props["operate-on-class-ids"] == "0;2"
    res = CliRunner().invoke(
        app, ["deepstream", "--model", str(onnx_model), "--out", str(tmp_path), "--precision", "int4"]
    )
    assert res.exit_code != 0
