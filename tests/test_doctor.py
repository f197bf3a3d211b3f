"""``edgefer doctor``: it reports this machine as the packages themselves see it, says what a missing piece
would enable and how to get it, and exits 0 only when a backend can run artifacts here."""

from __future__ import annotations

import importlib.util
import json
import platform
import sys

import pytest
from conftest import HAS_TRT
from typer.testing import CliRunner

import edgefer.doctor as doctor
import edgefer.extras as extras
from edgefer.cli import app
from edgefer.errors import UnsupportedPythonError


def _rows(found: doctor.Diagnosis) -> dict[str, doctor.Check]:
    return {c.name: c for c in [*found.backends, *found.libraries]}


def test_doctor_reports_this_machine_as_the_packages_see_it() -> None:
    import cv2
    import onnxruntime
    import openvino

    res = CliRunner().invoke(app, ["doctor", "--json"])
    assert res.exit_code == 0, res.output
    found = json.loads(res.output)
    assert found["python"]["version"] == platform.python_version()
    assert found["python"]["executable"] == sys.executable
    assert found["python"]["training_side"] is (sys.version_info[:2] >= extras.TRAIN_PYTHON)
    rows = {r["name"]: r for r in found["backends"] + found["libraries"]}
    assert rows["onnxruntime"]["ok"] and rows["onnxruntime"]["version"] == onnxruntime.__version__
    assert rows["onnxruntime"]["detail"]["providers"] == onnxruntime.get_available_providers()
    assert rows["openvino"]["ok"] and rows["openvino"]["detail"]["devices"] == openvino.Core().available_devices
    assert rows["tensorrt"]["ok"] is HAS_TRT
    if not HAS_TRT:  # the missing piece says what it would enable and how a Jetson gets it
        assert "edgefer[trt]" in rows["tensorrt"]["fix"] and "--system-site-packages" in rows["tensorrt"]["fix"]
    assert rows["torch"]["ok"] is (importlib.util.find_spec("torch") is not None)
    assert rows["opencv"]["version"] == cv2.__version__
    build = cv2.getBuildInformation()
    gstreamer_line = next(line for line in build.splitlines() if line.strip().startswith("GStreamer:"))
    assert rows["opencv"]["detail"]["gstreamer"] is ("YES" in gstreamer_line)
    assert found["usable"] is True


def test_doctor_text_names_every_backend_and_the_verdict() -> None:
    res = CliRunner().invoke(app, ["doctor"])
    assert res.exit_code == 0, res.output
    for name in ("onnxruntime", "openvino", "tensorrt", "torch", "opencv", "pycuda", "cuda-python"):
        assert f"  {name}" in res.output
    assert f"Python {platform.python_version()}" in res.output
    assert res.output.strip().endswith("At least one backend runs artifacts here.")


def test_no_backend_means_exit_1_and_advice_for_each(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in ("onnxruntime", "openvino", "tensorrt"):
        monkeypatch.setitem(sys.modules, module, None)  # `import module` raises ModuleNotFoundError
    found = doctor.diagnose(jetson=lambda: None)
    assert not found.usable
    rows = _rows(found)
    assert not rows["onnxruntime"].ok
    assert rows["onnxruntime"].fix.startswith("pip install 'edgefer[runtime]'")
    assert rows["openvino"].detail == {"error": "not installed"}
    res = CliRunner().invoke(app, ["doctor"])
    assert res.exit_code == 1
    assert "No backend runs artifacts here" in res.output


def test_a_backend_that_imports_but_cannot_answer_is_not_ok(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(mod: object) -> dict:
        raise RuntimeError("plugin libopenvino_intel_cpu_plugin.so: cannot open shared object file")

    monkeypatch.setitem(doctor.PROBES, "openvino", broken)
    row = _rows(doctor.diagnose(jetson=lambda: None))["openvino"]
    assert not row.ok and "cannot open shared object file" in row.detail["error"]


def test_an_old_interpreter_gets_one_line_about_python_not_an_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a Jetson's 3.8 the training side is refused with the Python it needs (no extra would help)."""
    monkeypatch.setattr(extras, "TRAIN_PYTHON", (99, 0))
    monkeypatch.setattr(doctor, "TRAIN_PYTHON", (99, 0))
    with pytest.raises(UnsupportedPythonError, match=r"needs Python >= 99\.0 .* runs the device side: predict"):
        extras.require_train_python("edgefer.training")
    missing = extras.missing_extra(ModuleNotFoundError("No module named 'torch'", name="torch"), "`edgefer train`")
    assert isinstance(missing, UnsupportedPythonError) and "`edgefer train` needs Python >= 99.0" in str(missing)
    # a device-side module is still advice about its extra, whatever the interpreter
    cv2_missing = extras.missing_extra(ModuleNotFoundError("No module named 'cv2'", name="cv2"))
    assert cv2_missing is not None and not isinstance(cv2_missing, UnsupportedPythonError)
    torch_row = _rows(doctor.diagnose(jetson=lambda: None))["torch"]
    assert not torch_row.ok and "needs Python >= 99.0" in torch_row.fix


def test_on_a_jetson_doctor_names_jetpack_and_the_python_its_tensorrt_needs(tmp_path) -> None:
    from test_bench_device import NVPMODEL_Q, _fake_jetson, _runner

    from edgefer.bench.jetson import jetson_info

    root = _fake_jetson(tmp_path)  # L4T R36.4.0: JetPack 6, Python 3.10, TensorRT 10.3
    probe = _runner({"nvpmodel": (0, NVPMODEL_Q), "jetson_clocks": (127, "not found")})
    found = doctor.diagnose(jetson=lambda: jetson_info(root, probe, jtop=None))
    assert found.jetson is not None
    assert found.jetson["l4t"] == "R36.4.0" and found.jetson["jetpack"] == "6.x"
    assert found.jetson["system_python"] == "3.10" and found.jetson["jetpack_tensorrt"] == "10.3"
    here = "{}.{}".format(*sys.version_info[:2])
    text = doctor.render_text(found)
    assert "Jetson: model: NVIDIA Jetson AGX Orin Developer Kit; l4t: R36.4.0" in text
    if here != "3.10":
        assert f"for its Python 3.10 only; this is Python {here}" in text and "--system-site-packages" in text
    assert "python_note" not in doctor.jetpack_facts("R35.4.1", python="3.8")
    assert doctor.jetpack_facts("R35.4.1", python="3.11")["jetpack"] == "5.1"
    assert doctor.jetpack_facts("R99.1") == {}
