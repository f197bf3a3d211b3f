"""export/jetson/build_engine.sh on its trtexec path, run with a stand-in ``trtexec`` on PATH.

The stand-in answers ``--help`` with the banner real trtexec prints ("[TensorRT v8501]" on 8.5,
"[TensorRT v100300]" on 10.3) and records the argv of the build call; no real trtexec runs here.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from _identity_onnx import identity_onnx

SCRIPT = Path(__file__).resolve().parents[1] / "export" / "jetson" / "build_engine.sh"
BASH = shutil.which("bash")
pytestmark = pytest.mark.skipif(BASH is None, reason="build_engine.sh needs bash")

FAKE_TRTEXEC = """#!/usr/bin/env bash
if [[ "${1:-}" == "--help" ]]; then
  echo "&&&& RUNNING TensorRT.trtexec [TensorRT v${FAKE_TRT_CODE}] # trtexec --help"
  exit 0
fi
printf '%s\\n' "$@" > "$FAKE_ARGV"
# What real trtexec does with shapes for a model without dynamic inputs (FAKE_STATIC=1): refuse
# (TensorRT 10.x samples/common/sampleEngines.cpp, setupNetworkAndConfig).
if [[ "${FAKE_STATIC:-0}" == "1" ]] && printf '%s\\n' "$@" | grep -q -- '^--\\(min\\|opt\\|max\\)\\?[sS]hapes='; then
  echo "Static model does not take explicit shapes since the shape of inference tensors will be" \\
       "determined by the model itself" >&2
  exit 1
fi
for a in "$@"; do [[ "$a" == --saveEngine=* ]] && printf 'engine' > "${a#--saveEngine=}"; done
exit 0
"""
#: trtexec's version code per TensorRT release (8.x: M*1000+m*100+p, 10.x+: M*10000+m*100+p).
CODES = {"8.5": "8501", "10.3": "100300", "11.2": "110200", "11.4.0": "110400", "11.4.1": "110401"}


def _profile(tmp_path: Path, precision: str, dla_core: str = "null", dynamic: bool = True) -> Path:
    p = tmp_path / f"{precision}_{dla_core}.yaml"
    shape = "dynamic: true\nmax_batch: 8\nopt_batch: 2\n" if dynamic else "dynamic: false\nbatch: 2\n"
    p.write_text(f"precision: {precision}\n{shape}workspace_mib: 512\ndla_core: {dla_core}\n")
    return p


def run_script(
    tmp_path: Path,
    trt: str,
    profile: Path,
    onnx_name: str,
    calib: Path | None = None,
    onnx_bytes: bytes = b"stand-in onnx",
    env_extra: dict[str, str] | None = None,
) -> tuple[int, str, list[str] | None]:
    """Run the script's trtexec path; returns (exit code, stderr, the recorded trtexec argv or None)."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    fake = bindir / "trtexec"
    fake.write_text(FAKE_TRTEXEC)
    fake.chmod(0o755)
    onnx = tmp_path / onnx_name
    onnx.write_bytes(onnx_bytes)
    argv_file = tmp_path / "argv.txt"
    argv_file.unlink(missing_ok=True)
    drop = ("TRTEXEC", "TRT_VERSION", "CALIB_CACHE", "IMG_SIZE", "ONNX_DYNAMIC")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(
        PATH=f"{bindir}{os.pathsep}{env.get('PATH', '')}",
        USE_TRTEXEC="1",  # never the `edgefer export` path, even where edgefer + tensorrt are installed
        FAKE_TRT_CODE=CODES[trt],
        FAKE_ARGV=str(argv_file),
    )
    if calib is not None:
        env["CALIB_CACHE"] = str(calib)
    env.update(env_extra or {})
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
    onnx_sha = hashlib.sha256(b"stand-in onnx").hexdigest()  # what run_script writes as m.onnx
    Path(f"{cache}.json").write_text(json.dumps({"schema": 1, "onnx_sha256": onnx_sha}, indent=2))
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


# --- static vs dynamic ONNX, stale sidecar ---------------------------------------------------------


def _edgefer_onnx(dynamic: bool, batch: int = 2) -> bytes:
    """A real (tiny) ONNX file carrying edgefer metadata, as `edgefer export` writes it."""
    import onnx

    extra = {"dynamic_batch": dynamic, "batch": None if dynamic else batch, "max_batch": None if dynamic else batch}
    model = identity_onnx(112, None if dynamic else batch, extra)
    return onnx._serialize(model) if hasattr(onnx, "_serialize") else model.SerializeToString()


def _shape_args(argv: list[str]) -> list[str]:
    return [a for a in argv if a.split("=")[0] in ("--minShapes", "--optShapes", "--maxShapes", "--shapes")]


@pytest.mark.parametrize("trt", ["8.5", "10.3"])
def test_static_onnx_gets_no_shapes(tmp_path: Path, trt: str) -> None:
    """The bug: `edgefer export --profile` with `dynamic: false` writes a static-batch ONNX and the script
    passed --minShapes/--optShapes/--maxShapes anyway, which trtexec refuses for a static model."""
    prof = _profile(tmp_path, "fp16", dynamic=False)
    rc, err, argv = run_script(
        tmp_path, trt, prof, "m_fp16.onnx", onnx_bytes=_edgefer_onnx(False), env_extra={"FAKE_STATIC": "1"}
    )
    assert rc == 0, err
    assert _shape_args(argv) == []


def test_dynamic_onnx_with_static_profile_keeps_its_shapes(tmp_path: Path) -> None:
    prof = _profile(tmp_path, "fp16", dynamic=False)
    rc, err, argv = run_script(tmp_path, "10.3", prof, "m_fp16.onnx", onnx_bytes=_edgefer_onnx(True))
    assert rc == 0, err
    assert _shape_args(argv) == [f"--{k}Shapes=input:2x3x112x112" for k in ("min", "opt", "max")]


def test_static_onnx_against_a_dynamic_profile_or_other_batch_is_refused(tmp_path: Path) -> None:
    dyn = _profile(tmp_path, "fp16")
    rc, err, argv = run_script(tmp_path, "10.3", dyn, "m_fp16.onnx", onnx_bytes=_edgefer_onnx(False))
    assert rc == 2 and argv is None and "static batch of 2" in err and "--dynamic" in err
    prof = _profile(tmp_path, "fp16", dynamic=False)
    rc, err, argv = run_script(tmp_path, "10.3", prof, "m_fp16.onnx", onnx_bytes=_edgefer_onnx(False, batch=4))
    assert rc == 2 and argv is None and "static batch of 4" in err


def test_onnx_without_metadata_follows_onnx_dynamic(tmp_path: Path) -> None:
    prof = _profile(tmp_path, "fp16", dynamic=False)
    rc, err, argv = run_script(tmp_path, "10.3", prof, "m_fp16.onnx")  # no edgefer metadata: taken as dynamic
    assert rc == 0, err
    assert len(_shape_args(argv)) == 3
    rc, err, argv = run_script(tmp_path, "10.3", prof, "m_fp16.onnx", env_extra={"ONNX_DYNAMIC": "0"})
    assert rc == 0, err
    assert _shape_args(argv) == []


def test_rebuilt_engine_loses_its_old_sidecar(tmp_path: Path) -> None:
    """A sidecar beside an engine that trtexec rebuilds describes the old engine: it is removed."""
    old = tmp_path / "out" / "m_fp16.engine.json"
    old.parent.mkdir(parents=True)
    old.write_text('{"tensorrt_version": "10.3.0.26"}')
    (tmp_path / "out" / "m_fp16.engine").write_bytes(b"old engine")
    rc, err, _ = run_script(tmp_path, "10.3", _profile(tmp_path, "fp16"), "m_fp16.onnx")
    assert rc == 0, err
    assert not old.exists()
    assert (tmp_path / "out" / "m_fp16.engine").read_bytes() == b"engine"


def test_calibration_cache_of_another_onnx_is_refused(tmp_path: Path) -> None:
    """TensorRT matches a cache by tensor names only: one made before retraining is refused, as is one
    without edgefer's key (nothing ties it to this ONNX)."""
    cache = tmp_path / "m.calib.cache"
    cache.write_bytes(b"TRT-8501-EntropyCalibration2\n")
    prof = _profile(tmp_path, "int8")
    rc, err, argv = run_script(tmp_path, "8.5", prof, "m.onnx", calib=cache)
    assert rc == 2 and argv is None and "has no key m.calib.cache.json" in err
    Path(f"{cache}.json").write_text(json.dumps({"onnx_sha256": hashlib.sha256(b"before retraining").hexdigest()}))
    rc, err, argv = run_script(tmp_path, "8.5", prof, "m.onnx", calib=cache)
    assert rc == 2 and argv is None and "made for another ONNX" in err and "--int8-mode entropy" in err
