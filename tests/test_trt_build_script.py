"""export/jetson/build_engine.sh on its trtexec path, run with a stand-in ``trtexec`` on PATH.

The stand-in answers ``--help`` with the banner real trtexec prints ("[TensorRT v8501]" on 8.5,
"[TensorRT v100300]" on 10.3) and records the argv of the build call; no real trtexec runs here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "export" / "jetson" / "build_engine.sh"
BASH = shutil.which("bash")
pytestmark = pytest.mark.skipif(BASH is None, reason="build_engine.sh needs bash")

FAKE_TRTEXEC = """#!/usr/bin/env bash
if [[ "${1:-}" == "--help" ]]; then
  echo "&&&& RUNNING TensorRT.trtexec [TensorRT v${FAKE_TRT_CODE}] # trtexec --help"
  exit 0
fi
printf '%s\\n' "$@" > "$FAKE_ARGV"
"""
#: trtexec's version code per TensorRT release (8.x: M*1000+m*100+p, 10.x+: M*10000+m*100+p).
CODES = {"8.5": "8501", "10.3": "100300", "11.2": "110200", "11.4.0": "110400", "11.4.1": "110401"}


def _profile(tmp_path: Path, precision: str, dla_core: str = "null", dynamic: bool = True) -> Path:
    p = tmp_path / f"{precision}_{dla_core}.yaml"
    shape = "dynamic: true\nmax_batch: 8\nopt_batch: 2\n" if dynamic else "dynamic: false\nbatch: 2\n"
    p.write_text(f"precision: {precision}\n{shape}workspace_mib: 512\ndla_core: {dla_core}\n")
    return p


def run_script(
    tmp_path: Path, trt: str, profile: Path, onnx_name: str, calib: Path | None = None
) -> tuple[int, str, list[str] | None]:
    """Run the script's trtexec path; returns (exit code, stderr, the recorded trtexec argv or None)."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    fake = bindir / "trtexec"
    fake.write_text(FAKE_TRTEXEC)
    fake.chmod(0o755)
    onnx = tmp_path / onnx_name
    onnx.write_bytes(b"stand-in onnx")
    argv_file = tmp_path / "argv.txt"
    argv_file.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("TRTEXEC", "TRT_VERSION", "CALIB_CACHE", "IMG_SIZE")}
    env.update(
        PATH=f"{bindir}{os.pathsep}{env.get('PATH', '')}",
        USE_TRTEXEC="1",  # never the `edgefer export` path, even where edgefer + tensorrt are installed
        FAKE_TRT_CODE=CODES[trt],
        FAKE_ARGV=str(argv_file),
    )
    if calib is not None:
        env["CALIB_CACHE"] = str(calib)
    proc = subprocess.run(
        [BASH, str(SCRIPT), str(profile), str(onnx), str(tmp_path / "out")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    argv = argv_file.read_text().splitlines() if argv_file.exists() else None
    return proc.returncode, proc.stderr, argv


PRECISION_FLAGS = ("--int8", "--fp16", "--stronglyTyped")


def _flags(argv: list[str]) -> set[str]:
    return {a for a in argv if a in PRECISION_FLAGS or a.startswith("--calib")}


@pytest.mark.parametrize("trt", ["8.5", "10.3"])
def test_int8_from_plain_onnx_is_refused(tmp_path: Path, trt: str) -> None:
    """The bug: a bare --int8 on the FP32 (or FP16) ONNX; now a refusal before trtexec builds anything."""
    prof = _profile(tmp_path, "int8")
    for name in ("m.onnx", "m_fp16.onnx"):
        rc, err, argv = run_script(tmp_path, trt, prof, name)
        assert rc == 2 and argv is None, (name, err)
        assert "Q/DQ ONNX" in err


@pytest.mark.parametrize(("trt", "flags"), [("8.5", {"--int8"}), ("10.3", {"--stronglyTyped"})])
def test_int8_from_qdq_onnx(tmp_path: Path, trt: str, flags: set[str]) -> None:
    rc, err, argv = run_script(tmp_path, trt, _profile(tmp_path, "int8"), "m_int8_qdq.onnx")
    assert rc == 0, err
    assert _flags(argv) == flags
    assert f"--saveEngine={tmp_path / 'out' / 'm_int8.engine'}" in argv
    assert "--maxShapes=input:8x3x112x112" in argv and "--optShapes=input:2x3x112x112" in argv


@pytest.mark.parametrize("trt", ["8.5", "10.3"])
def test_int8_from_fp32_onnx_with_calibration_cache(tmp_path: Path, trt: str) -> None:
    cache = tmp_path / "m.calib.cache"
    cache.write_bytes(b"TRT-8501-EntropyCalibration2\n")
    rc, err, argv = run_script(tmp_path, trt, _profile(tmp_path, "int8"), "m.onnx", calib=cache)
    assert rc == 0, err
    assert _flags(argv) == {"--int8", f"--calib={cache}"}
    rc, err, argv = run_script(tmp_path, trt, _profile(tmp_path, "int8"), "m.onnx", calib=tmp_path / "missing")
    assert rc == 2 and argv is None and "not found" in err


@pytest.mark.parametrize(
    ("trt", "onnx", "flags"),
    [
        ("8.5", "m.onnx", {"--fp16"}),
        ("8.5", "m_fp16.onnx", {"--fp16"}),
        ("10.3", "m_fp16.onnx", {"--stronglyTyped"}),
        ("10.3", "m.onnx", {"--fp16"}),
        ("11.2", "m_fp16.onnx", set()),
    ],
)
def test_fp16_flags(tmp_path: Path, trt: str, onnx: str, flags: set[str]) -> None:
    rc, err, argv = run_script(tmp_path, trt, _profile(tmp_path, "fp16"), onnx)
    assert rc == 0, err
    assert _flags(argv) == flags


@pytest.mark.parametrize(
    ("trt", "precision", "onnx", "message"),
    [
        ("10.3", "fp16", "m_int8_qdq.onnx", "cannot be built from"),
        ("10.3", "fp32", "m_fp16.onnx", "cannot be built from"),
        ("8.5", "fp32", "m_int8_qdq.onnx", "cannot be built from"),
        ("11.2", "fp16", "m.onnx", "takes FP16 from the network"),
    ],
)
def test_precision_that_does_not_match_the_onnx_is_refused(
    tmp_path: Path, trt: str, precision: str, onnx: str, message: str
) -> None:
    rc, err, argv = run_script(tmp_path, trt, _profile(tmp_path, precision), onnx)
    assert rc == 2 and argv is None and message in err


def test_calibration_is_refused_on_tensorrt_11(tmp_path: Path) -> None:
    cache = tmp_path / "c.cache"
    cache.write_bytes(b"x")
    rc, err, argv = run_script(tmp_path, "11.2", _profile(tmp_path, "int8"), "m.onnx", calib=cache)
    assert rc == 2 and argv is None and "removed implicit INT8 calibration" in err


@pytest.mark.parametrize(
    ("trt", "ok", "flags"),
    [("10.3", True, {"--int8", "--fp16"}), ("11.2", False, None), ("11.4.0", False, None), ("11.4.1", True, set())],
)
def test_dla_per_version(tmp_path: Path, trt: str, ok: bool, flags: set[str] | None) -> None:
    prof = _profile(tmp_path, "int8", dla_core="0", dynamic=False)
    rc, err, argv = run_script(tmp_path, trt, prof, "m_int8_qdq.onnx")
    if not ok:
        assert rc == 2 and argv is None and "no DLA support" in err
        return
    assert rc == 0, err
    assert _flags(argv) == flags and "--useDLACore=0" in argv and "--allowGPUFallback" in argv
