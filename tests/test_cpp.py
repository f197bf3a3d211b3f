"""The C++ example (export/cpp): build it with CMake against the OpenVINO pip wheel's own C++ SDK
(headers, libopenvino.so, CMake config), run it on an aligned synthetic face and compare with the
Python runtime. Skips name what is missing (cmake, a C++ compiler, OpenVINO's CMake files)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgefer.labels import CLASS_NAMES
from edgefer.runtime import Predictor

SRC = Path(__file__).resolve().parents[1] / "export" / "cpp"


def _openvino_cmake_dir() -> Path:
    ov = pytest.importorskip("openvino", reason="openvino not installed")
    d = Path(ov.__file__).parent / "cmake"
    if not (d / "OpenVINOConfig.cmake").exists():
        pytest.skip("this openvino package ships no C++ SDK (OpenVINOConfig.cmake)")
    return d


@pytest.fixture(scope="module")
def classify_exe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")
    ov_dir = _openvino_cmake_dir()
    build = tmp_path_factory.mktemp("cpp_build")
    cfg = subprocess.run(
        ["cmake", "-S", str(SRC), "-B", str(build), f"-DOpenVINO_DIR={ov_dir}", "-DCMAKE_BUILD_TYPE=Release"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cfg.returncode == 0, cfg.stdout[-2000:] + cfg.stderr[-2000:]
    make = subprocess.run(["cmake", "--build", str(build), "-j", "2"], capture_output=True, text=True, timeout=600)
    assert make.returncode == 0, make.stdout[-3000:] + make.stderr[-3000:]
    exe = build / "edgefer_classify"
    assert exe.exists()
    return exe


@pytest.fixture(scope="module")
def models(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from edgefer.export.onnx import export_onnx
    from edgefer.export.openvino import export_openvino

    out = tmp_path_factory.mktemp("cpp_models")
    onnx_path = Path(export_onnx(tiny_checkpoint, out, check_parity=False).artifact)
    xml, _ = export_openvino(onnx_path, out, smoke_test=False)
    return {"onnx": onnx_path, "openvino": Path(xml)}


def _run(exe: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("size", [64, 100])  # 64 = the model input (no resize); 100 = RAF-DB aligned size
def test_cpp_classifies_like_python(classify_exe: Path, models: dict[str, Path], tmp_path: Path, size: int) -> None:
    from edgefer.data.synth import render_face

    for seed in range(2):
        face_rgb = render_face(seed + 2, size, np.random.default_rng(seed))
        image = tmp_path / f"face{seed}.ppm"
        assert cv2.imwrite(str(image), face_rgb[:, :, ::-1])
        for kind in ("openvino", "onnx"):
            res = _run(classify_exe, str(models[kind]), str(image))
            assert res.returncode == 0, res.stderr
            out = json.loads(res.stdout)
            face = Predictor(models["openvino"], aligned=True).predict(face_rgb[:, :, ::-1]).faces[0]
            assert out["label"] == face.label and out["class_index"] == face.class_index
            assert out["label"] in CLASS_NAMES
            # no resize: same arithmetic; resize: float bilinear vs OpenCV's fixed-point one
            np.testing.assert_allclose(out["probs"], face.probs, atol=1e-3 if size == 64 else 2e-2)


def test_cpp_reads_a_metadata_json_and_fails_clearly(
    classify_exe: Path, models: dict[str, Path], tmp_path: Path
) -> None:
    from edgefer.metadata import read_metadata
    from edgefer.utils.io import write_json

    face = np.full((64, 64, 3), 128, np.uint8)
    image = tmp_path / "grey.ppm"
    cv2.imwrite(str(image), face)
    meta_json = write_json(tmp_path / "metadata.json", {"metadata": read_metadata(models["onnx"]).to_dict()})
    a = json.loads(_run(classify_exe, str(models["onnx"]), str(image), "--metadata", str(meta_json)).stdout)
    b = json.loads(_run(classify_exe, str(models["onnx"]), str(image)).stdout)
    assert a == b
    res = _run(classify_exe, str(models["onnx"]), str(tmp_path / "missing.ppm"))
    assert res.returncode == 1 and "cannot open image" in res.stderr
    res = _run(classify_exe, str(models["onnx"]), str(image), "--metadata", str(tmp_path / "none.json"))
    assert res.returncode == 1 and "cannot read metadata" in res.stderr


def test_cpp_runs_an_imported_softmax_model_and_refuses_grey_nhwc(classify_exe: Path, tmp_path: Path) -> None:
    """An imported model (`edgefer import`): one-value mean/std broadcast, its own Softmax not applied
    twice; a grey NHWC model, which this example does not implement, is a clear error."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from _byom_models import FER2013_ORDER, fit_linear, foreign_model

    from edgefer.data.synth import generate_synthetic, render_face
    from edgefer.export.importer import import_model
    from edgefer.preprocess import Preprocessing

    data = generate_synthetic(tmp_path / "data", n_train=70, n_test=7, image_size=64, seed=0)
    rgb = Preprocessing(input_size=64, mean=(0.5,), std=(0.25,))
    src = foreign_model(fit_linear(data, rgb), FER2013_ORDER, rgb, True, tmp_path / "rgb_softmax.onnx")
    imported = import_model(src, tmp_path / "imp", classes=FER2013_ORDER, color="rgb", mean=0.5, std=0.25).artifact
    face_rgb = render_face(3, 64, np.random.default_rng(0))
    image = tmp_path / "face.ppm"
    assert cv2.imwrite(str(image), face_rgb[:, :, ::-1])
    res = _run(classify_exe, str(imported), str(image))
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    face = Predictor(imported, aligned=True).predict(face_rgb[:, :, ::-1]).faces[0]
    assert out["label"] == face.label
    np.testing.assert_allclose(out["probs"], face.probs, atol=1e-3)
    grey = Preprocessing(input_size=64, mean=(0.5,), std=(0.5,), color_order="GRAY", layout="NHWC")
    src = foreign_model(fit_linear(data, grey), FER2013_ORDER, grey, True, tmp_path / "grey.onnx")
    imported = import_model(src, tmp_path / "imp2", classes=FER2013_ORDER, color="gray", mean=0.5, std=0.5).artifact
    res = _run(classify_exe, str(imported), str(image))
    assert res.returncode == 1 and "NCHW RGB/BGR models only" in res.stderr
