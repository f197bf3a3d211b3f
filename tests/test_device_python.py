"""The device side on the device's own Python: a fresh venv per interpreter a Jetson ships.

On a Jetson, TensorRT's Python bindings exist only for the system interpreter: Python 3.8 on JetPack 5,
3.10 on JetPack 6. So for each of those found on this machine (``EDGEFER_DEVICE_PYTHONS``, default
``3.8,3.10``; pyenv's or on PATH) this test makes a fresh venv, installs ``edgefer[runtime]`` from this
checkout, and runs what a device runs, as a user types it:

* nothing heavy came along (no torch, torchvision, matplotlib, nncf); without OpenCV, ``predict`` and
  ``benchmark`` say in one line how to get it (the extra, or JetPack's through ``--system-site-packages``);
* a training command says in one line which Python it needs (or which extra, on a Python that has one);
* with ``edgefer[opencv]``: ``predict`` on an ONNX and an OpenVINO IR, ``run`` on a short video,
  ``benchmark`` of a bundle against its reference, ``doctor --json`` reporting that interpreter;
* the TensorRT stand-in tests (builder, calibrator, backend, sidecar, ``build_engine.sh``) under it.

The artifacts are exported once by this checkout's training side (CI's Python), as a user's workstation
would, and carried to the "device" venv. Needs a package index: skipped with the reason when pip cannot
reach one, and per interpreter when that interpreter is not installed. ``tests/test_lean_install.py``
checks the extras' contents statically everywhere.

Also here: ``make lint``'s device-Python check fails on each kind of 3.9+ construct planted in a copy of
the device side (tests/lint_device_python.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _bench_artifacts import exported_artifacts

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import lint_device_python  # noqa: E402

#: what a device must not get from `pip install edgefer[runtime]`
HEAVY = ("torch", "torchvision", "matplotlib", "nncf", "torchao")
#: the test files that run in the device venv too: they need no torch (tests/conftest.py copes without it)
DEVICE_TEST_FILES = ("test_trt_standins.py", "test_tensorrt.py", "test_trt_build_script.py")


def _wanted() -> list[str]:
    return [v.strip() for v in os.environ.get("EDGEFER_DEVICE_PYTHONS", "3.8,3.10").split(",") if v.strip()]


def find_python(version: str) -> str | None:
    """An interpreter ``python<version>``: pyenv's newest patch release of it, else one on PATH; None if absent."""
    roots = [os.environ.get("PYENV_ROOT", ""), str(Path.home() / ".pyenv")]
    for root in filter(None, roots):
        found = sorted(
            Path(root, "versions").glob(f"{version}.*/bin/python"),
            key=lambda p: [int(x) for x in p.parts[-3].split(".") if x.isdigit()],
        )
        if found:
            return str(found[-1])
    which = shutil.which(f"python{version}")
    if which is None:
        return None
    probe = subprocess.run([which, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True)
    return which if probe.returncode == 0 else None  # a pyenv shim of a version that is not installed fails


def _index_reachable(python: str) -> str | None:
    """None when pip finds ``openvino`` on an index (it is not on every local mirror), else why not."""
    try:
        res = subprocess.run(
            [python, "-m", "pip", "index", "versions", "openvino", "--timeout", "5", "--retries", "0"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "pip could not reach a package index within 60 s"
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["no output"])[-1]
        return f"pip cannot reach a package index with openvino ({last})"
    return None


def _device_env() -> dict[str, str]:
    """The environment without this checkout on the path: the venv must use its own installed edgefer."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env["OMP_NUM_THREADS"] = "1"
    return env


def _run(cmd: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, cwd=cwd, env=_device_env(), capture_output=True, text=True, timeout=timeout)
    return res


def _write_video(path: Path, n: int) -> None:
    import cv2

    from edgefer.data.synth import compose_frame

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (160, 120))
    assert writer.isOpened()
    rng = np.random.default_rng(0)
    for i in range(n):
        frame, _ = compose_frame([i % 7], frame_hw=(120, 160), rng=rng, face_size_range=(48, 56))
        writer.write(frame)
    writer.release()


@pytest.fixture(scope="module")
def device_inputs(tiny_checkpoint: Path, synth_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """What a workstation hands a device: ONNX, OpenVINO IR, a bundle with its reference, an image, a video;
    and the source tree the device installs from (copied, so pip's build leaves nothing in the checkout)."""
    from edgefer.bundle import make_bundle
    from edgefer.export.reference import make_reference

    work = tmp_path_factory.mktemp("device_inputs")
    arts = exported_artifacts(tiny_checkpoint, tmp_path_factory.mktemp("bench_artifacts"))
    reference = work / "reference.npz"
    make_reference(arts["onnx"], synth_data, "test", out=reference, progress=False)
    bundle = make_bundle([arts["onnx"], arts["xml16"]], work / "bundle", reference=reference)
    video = work / "clip.mp4"
    _write_video(video, 6)
    src = work / "src"
    shutil.copytree(ROOT / "edgefer", src / "edgefer", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    tests = work / "device_tests"
    (tests / "tests").mkdir(parents=True)
    for name in ("conftest.py", "_identity_onnx.py", *DEVICE_TEST_FILES):
        shutil.copy2(ROOT / "tests" / name, tests / "tests" / name)
    shutil.copy2(ROOT / "pyproject.toml", tests / "pyproject.toml")  # pytest's markers
    shutil.copytree(ROOT / "export", tests / "export")  # build_engine.sh and the device profiles
    return {
        "onnx": arts["onnx"],
        "xml": arts["xml"],
        "bundle": bundle,
        "image": sorted(synth_data.rglob("*.jpg"))[0],
        "video": video,
        "data": synth_data,
        "checkpoint": tiny_checkpoint,
        "src": src,
        "tests": tests,
    }


@pytest.mark.slow
@pytest.mark.needs_index
@pytest.mark.parametrize("version", _wanted())
def test_device_side_in_a_fresh_venv_on_the_devices_python(version: str, device_inputs: dict, tmp_path: Path):
    # Wall time per interpreter, pip's cache warm, on the 2-core machine: ~60-90 s (venv + two installs ~30 s,
    # then a dozen CLI runs that each import OpenVINO). The first run on a machine downloads ~150 MB of wheels.
    python = find_python(version)
    if python is None:
        pytest.skip(f"Python {version} is not installed here (pyenv install {version}, or set EDGEFER_DEVICE_PYTHONS)")
    reason = _index_reachable(python)
    if reason:
        pytest.skip(reason)
    d = device_inputs
    venv = tmp_path / "venv"
    res = _run([python, "-m", "venv", str(venv)], tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    py, edgefer = str(venv / "bin" / "python"), str(venv / "bin" / "edgefer")
    res = _run([py, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], tmp_path)
    assert res.stdout.strip() == version
    res = _run([py, "-m", "pip", "install", "--quiet", f"{d['src']}[runtime]"], tmp_path, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]

    # nothing heavy came along, and this edgefer is the venv's own
    modules = [*HEAVY, "cv2"]
    probe = (
        "import importlib.util, json, edgefer; print(edgefer.__file__); "
        f"print(json.dumps({{m: importlib.util.find_spec(m) is not None for m in {modules!r}}}))"
    )
    res = _run([py, "-c", probe], tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    where, found = res.stdout.strip().splitlines()
    assert json.loads(found) == dict.fromkeys(modules, False)
    assert where.strip().startswith(str(venv))

    # without OpenCV (a JetPack venv that cannot see the system's): one line that says what to do
    res = _run([edgefer, "predict", str(d["image"]), "--model", str(d["onnx"]), "--aligned"], tmp_path)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "edgefer[opencv]" in res.stderr and "--system-site-packages" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    res = _run([edgefer, "benchmark", str(d["bundle"]), "--data", str(d["data"]), "--max-images", "8", "-q"], tmp_path)
    assert res.returncode == 2 and "edgefer[opencv]" in res.stderr.strip().splitlines()[-1], res.stderr[-2000:]
    # a training command: the Python it needs on an old interpreter, else the extra that brings torch
    res = _run([edgefer, "evaluate", "--checkpoint", str(d["checkpoint"]), "--data", str(d["data"])], tmp_path)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr[-2000:]
    from edgefer.extras import TRAIN_PYTHON

    if tuple(map(int, version.split("."))) < TRAIN_PYTHON:
        assert "needs Python >= 3.10" in res.stderr and f"this is Python {version}." in res.stderr, res.stderr
    else:
        assert "edgefer[train]" in res.stderr, res.stderr

    opencv = _project_extra("opencv")
    res = _run([py, "-m", "pip", "install", "--quiet", *opencv, "pytest"], tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]

    classes = json.loads(Path(d["bundle"], "bundle.json").read_text())["metadata"]["class_names"]
    for model in (d["onnx"], d["xml"]):
        res = _run([edgefer, "predict", str(d["image"]), "--model", str(model), "--aligned", "--json"], tmp_path)
        assert res.returncode == 0, res.stderr[-3000:]
        (record,) = json.loads(res.stdout)
        assert [f["label"] in classes for f in record["faces"]] == [True], record

    summary = tmp_path / "run.json"
    res = _run(
        [edgefer, "run", "--model", str(d["onnx"]), "--source", str(d["video"]), "--max-frames", "4",
         "--summary-json", str(summary), "--quiet"],
        tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(summary.read_text())["frames_processed"] == 4

    out = tmp_path / "device_report"
    res = _run(
        [edgefer, "benchmark", str(d["bundle"]), "--data", str(d["data"]), "--batch", "1", "--warmup", "1",
         "--iters", "2", "--max-images", "24", "--threads", "1", "--out", str(out), "-q"],
        tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert [r["status"] for r in report["rows"]] == ["ok", "ok"]
    assert report["reference"]["source"] == "bundle"
    assert report["machine"]["python"].startswith(version + ".")
    assert not list(out.glob("*.png"))  # no matplotlib on the device: the plots are skipped, and said so
    assert "matplotlib is not installed" in (out / "report.md").read_text()

    res = _run([edgefer, "doctor", "--json"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    found = json.loads(res.stdout)
    assert found["python"]["version"].startswith(version + ".") and found["python"]["executable"] == py
    rows = {r["name"]: r["ok"] for r in found["backends"] + found["libraries"]}
    assert rows["onnxruntime"] and rows["openvino"] and rows["opencv"] and not rows["torch"]

    # the TensorRT stand-ins: builder, calibrator, backend, sidecar and build_engine.sh on this interpreter
    files = [f"tests/{name}" for name in DEVICE_TEST_FILES]
    res = _run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files], d["tests"], timeout=600)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert " passed" in res.stdout.strip().splitlines()[-1], res.stdout[-2000:]


def _project_extra(name: str) -> list[str]:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"][name]


# -- make lint's check ----------------------------------------------------------------------------------

PLANTS = {
    # (file under edgefer/, code appended to it, what the finding says)
    "stdlib": ("runtime/predictor.py", "import datetime\n_NOW = datetime.UTC\n", "datetime.UTC"),
    "zip": ("bench/metrics.py", "_PAIRS = list(zip([1], [2], strict=True))\n", "zip(strict)"),
    "alias": ("backends/base.py", "_MaybePath = str | None\n", "`X | Y` evaluated at run time"),
    "generic": ("bundle.py", "_Names = list[str]\n", "`list[...]` evaluated at run time"),
    "abc": ("data/readers.py", "from collections.abc import Callable\n_F = Callable[[int], int]\n", "`Callable[...]`"),
    "method": ("bundle.py", "_IN = Path('a/b').is_relative_to(Path('a'))\n", "`.is_relative_to` needs Python 3.9"),
    "cli": ("cli/doctor.py", "\ndef _typed(x: list[str] | None = None) -> None: ...\n", "`X | Y` evaluated"),
}


@pytest.fixture(scope="module")
def device_side_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lint")
    shutil.copytree(ROOT / "edgefer", root / "edgefer", ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_lint_passes_on_the_device_side_as_it_is(device_side_copy: Path) -> None:
    assert lint_device_python.check(device_side_copy) == []


@pytest.mark.parametrize("kind", sorted(PLANTS))
def test_lint_fails_on_a_newer_python_construct_in_a_device_module(
    kind: str, device_side_copy: Path, tmp_path: Path
) -> None:
    rel, code, says = PLANTS[kind]
    root = tmp_path / "tree"
    shutil.copytree(device_side_copy, root)
    target = root / "edgefer" / rel
    target.write_text(target.read_text() + code)
    problems = lint_device_python.check(root, only=[target])
    assert problems and any(says in p for p in problems), problems
    # the same construct on the training side (PyTorch's Python) is not the device's business
    training = root / "edgefer" / "training" / "trainer.py"
    training.write_text(training.read_text() + code)
    assert lint_device_python.check(root, only=[training]) == []
