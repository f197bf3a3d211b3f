"""TensorRT export: the pure-Python parts everywhere, engine builds only where ``tensorrt`` imports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgefer.engine_sidecar import check_engine_compat, make_sidecar, parse_trt_version, trt_version_fields
from edgefer.errors import BackendError, EngineMismatchError, ExportError
from edgefer.export.profiles import load_profile
from edgefer.export.tensorrt import (
    BatchProfile,
    EngineBuildSpec,
    batch_profile,
    build_engine,
    plan_build,
    trtexec_command,
)
from edgefer.metadata import ModelMetadata, read_metadata, sidecar_path
from edgefer.preprocess import Preprocessing

JETSON = Path(__file__).resolve().parents[1] / "export" / "jetson"


# --- versions and build plans ------------------------------------------------------------------


def test_parse_trt_version() -> None:
    assert parse_trt_version("10.3.0.26") == (10, 3, 0)
    assert trt_version_fields("10.3.0.26") == (10, 3, 0, 26) and trt_version_fields("8.6") == (8, 6, 0, 0)
    assert parse_trt_version("8.6") == (8, 6, 0)
    with pytest.raises(ExportError):
        parse_trt_version("unknown")


@pytest.mark.parametrize(
    ("version", "precision", "kind", "net", "flags", "strong"),
    [
        ("8.5.2", "fp32", "fp32", ("EXPLICIT_BATCH",), (), False),
        ("8.5.2", "fp16", "fp32", ("EXPLICIT_BATCH",), ("FP16",), False),
        ("8.6.1", "int8", "qdq", ("EXPLICIT_BATCH",), ("INT8",), False),  # Q/DQ needs the flag on 8.x
        ("10.3.0", "fp16", "fp16", ("STRONGLY_TYPED",), (), True),
        ("10.3.0", "int8", "qdq", ("STRONGLY_TYPED",), (), True),
        ("10.3.0", "fp16", "fp32", (), ("FP16",), False),  # weak typing still exists on 10.x
        ("11.0.0", "fp16", "fp16", (), (), True),  # strongly typed always, no creation flag needed
        ("11.2.0", "int8", "qdq", (), (), True),
        ("11.2.0", "fp32", "fp32", (), (), True),
    ],
)
def test_plan_build_per_version(version, precision, kind, net, flags, strong) -> None:
    plan = plan_build(version, precision, kind)
    assert plan.network_flags == net
    assert plan.builder_flags == flags
    assert plan.strongly_typed is strong


def test_plan_build_refuses_what_a_version_cannot_do() -> None:
    with pytest.raises(ExportError, match="takes FP16 from the network"):
        plan_build("11.0", "fp16", "fp32")  # BuilderFlag.FP16 is gone in 11
    with pytest.raises(ExportError, match="removed implicit INT8 calibration"):
        plan_build("11.0", "int8", "fp32", calibrator=True)
    with pytest.raises(ExportError, match="Q/DQ ONNX"):
        plan_build("10.3", "int8", "fp32")  # int8 without Q/DQ and without calibrator
    with pytest.raises(ExportError, match="too old"):
        plan_build("8.4.1", "fp16", "fp32")
    with pytest.raises(ExportError, match="DLA runs FP16 or INT8"):
        plan_build("10.3", "fp32", "fp32", dla_core=0)
    with pytest.raises(ExportError, match="no strongly typed"):
        plan_build("8.6", "fp16", "fp16", fp16_mode="strongly-typed")


@pytest.mark.parametrize("version", ["11.0.0", "11.2.1", "11.3.0", "11.4.0"])
def test_plan_build_refuses_dla_on_tensorrt_11_before_11_4_1(version: str) -> None:
    # TensorRT 11.4.1 release notes: DLA was unavailable in 11.0-11.3, 11.4.0 had it on Windows on ARM only
    with pytest.raises(ExportError, match=r"no DLA support.*11\.4\.1"):
        plan_build(version, "fp16", "fp16", dla_core=0)


def test_plan_build_dla_on_tensorrt_11_4_1_is_strongly_typed() -> None:
    plan = plan_build("11.4.1", "int8", "qdq", dla_core=0)
    assert plan.strongly_typed and plan.builder_flags == ("GPU_FALLBACK",)


def test_plan_build_calibrator_and_dla() -> None:
    cal = plan_build("8.5.2", "int8", "fp32", calibrator=True)
    assert cal.calibrator and cal.builder_flags == ("INT8",) and cal.mode == "int8 entropy calibrator"
    dla = plan_build("10.3", "fp16", "fp16", dla_core=0)  # DLA on 10.x: weak typing + fallback
    assert dla.builder_flags == ("FP16", "GPU_FALLBACK") and not dla.strongly_typed
    dla8 = plan_build("10.3", "int8", "qdq", dla_core=1)
    assert dla8.builder_flags == ("INT8", "FP16", "GPU_FALLBACK")


# --- batch profiles ----------------------------------------------------------------------------


def test_batch_profile() -> None:
    assert batch_profile(4) == BatchProfile(4, 4, 4) and batch_profile(4).static
    assert batch_profile(dynamic=True, max_batch=16) == BatchProfile(1, 4, 16)
    assert batch_profile(dynamic=True, max_batch=2) == BatchProfile(1, 2, 2)
    assert batch_profile(dynamic=True, max_batch=16, opt_batch=8) == BatchProfile(1, 8, 16)
    assert batch_profile(dynamic=True).max == 32
    assert BatchProfile(1, 2, 8).shapes(112) == ((1, 3, 112, 112), (2, 3, 112, 112), (8, 3, 112, 112))
    with pytest.raises(ExportError, match="needs --dynamic"):
        batch_profile(1, dynamic=False, max_batch=8)
    with pytest.raises(ExportError):
        batch_profile(dynamic=True, max_batch=4, opt_batch=5)
    with pytest.raises(ExportError):
        batch_profile(0)


# --- trtexec -----------------------------------------------------------------------------------


def test_trtexec_command_per_version() -> None:
    prof = BatchProfile(1, 4, 16)
    spec = EngineBuildSpec("fp16", prof, 512, timing_cache="cache.bin")
    cmd = trtexec_command("m_fp16.onnx", "m.engine", spec, 112, "10.3")
    assert cmd[:3] == ["trtexec", "--onnx=m_fp16.onnx", "--saveEngine=m.engine"]
    assert "--minShapes=input:1x3x112x112" in cmd and "--optShapes=input:4x3x112x112" in cmd
    assert "--maxShapes=input:16x3x112x112" in cmd
    assert "--memPoolSize=workspace:512" in cmd and "--timingCacheFile=cache.bin" in cmd
    assert "--stronglyTyped" in cmd and "--fp16" not in cmd
    # JetPack 5 (TensorRT 8.5): FP32 ONNX + --fp16, no strong typing
    old = trtexec_command("m.onnx", "m.engine", EngineBuildSpec("fp16", prof), 112, "8.5.2", onnx_kind="fp32")
    assert "--fp16" in old and "--stronglyTyped" not in old
    # TensorRT 11: precision flags are gone, strong typing is implicit
    new = trtexec_command("m_qdq.onnx", "m.engine", EngineBuildSpec("int8"), 112, "11.1")
    assert not any(a in new for a in ("--int8", "--fp16", "--stronglyTyped")) and not any("Shapes" in a for a in new)
    q8 = trtexec_command("m_qdq.onnx", "m.engine", EngineBuildSpec("int8", prof), 112, "8.6.1")
    assert "--int8" in q8
    dla_spec = EngineBuildSpec("fp16", BatchProfile(2, 2, 2), dla_core=1)
    dla = trtexec_command("m.onnx", "m.engine", dla_spec, 112, "10.3", onnx_kind="fp32")
    assert "--useDLACore=1" in dla and "--allowGPUFallback" in dla and "--fp16" in dla
    cal = trtexec_command("m.onnx", "m.engine", EngineBuildSpec("int8", prof, calib_cache="c.cache"), 112, "8.5")
    assert "--int8" in cal and "--calib=c.cache" in cal
    with pytest.raises(ExportError, match="removed implicit INT8 calibration"):
        trtexec_command("m.onnx", "m.engine", EngineBuildSpec("int8", prof, calib_cache="c.cache"), 112, "11.0")


def test_engine_build_spec_is_checked_when_made() -> None:
    spec = EngineBuildSpec("int8", timing_cache="t.cache", calib_cache="c.cache")
    assert spec.timing_cache == Path("t.cache") and spec.calib_cache == Path("c.cache")
    with pytest.raises(AttributeError):
        spec.precision = "fp16"  # type: ignore[misc]  # frozen: one build's settings cannot drift
    bad = [
        ({"precision": "int4"}, "unknown precision"),
        ({"fp16_mode": "fast"}, "fp16_mode"),
        ({"workspace_mib": 0}, "workspace_mib"),
        ({"calib_batch": 0}, "calib_batch"),
        ({"calib_size": 2.5}, "calib_size"),
        ({"device": -1}, "device"),
        ({"dla_core": -1}, "dla_core"),
        ({"dla_core": 0, "profile": BatchProfile(1, 4, 8)}, "DLA needs static shapes"),
    ]
    for kwargs, message in bad:
        with pytest.raises(ExportError, match=message):
            EngineBuildSpec(**kwargs)


def test_build_functions_take_at_most_twelve_parameters() -> None:
    """Issue 14: the build settings travel as one EngineBuildSpec, not as 14 loose parameters."""
    import inspect

    for fn in (trtexec_command, build_engine):
        assert len(inspect.signature(fn).parameters) <= 12, fn.__name__


# --- sidecar and compatibility -----------------------------------------------------------------


def _sidecar(tmp_path: Path) -> dict:
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"not really onnx, only hashed")
    meta = ModelMetadata("msff_resnet18", preprocessing=Preprocessing(input_size=64))
    plan = plan_build("10.3.0.26", "fp16", "fp16")
    return make_sidecar(meta, "10.3.0.26", "Orin", "8.7", plan, BatchProfile(1, 4, 8), 64, onnx, 1024)


def test_sidecar_contents_and_read_metadata(tmp_path: Path) -> None:
    sc = _sidecar(tmp_path)
    assert sc["tensorrt_version"] == "10.3.0.26" and sc["gpu"] == {"name": "Orin", "compute_capability": "8.7"}
    assert sc["precision"] == "fp16" and sc["build"]["strongly_typed"] is True
    assert sc["shapes"]["input"]["max"] == [8, 3, 64, 64]
    assert len(sc["source_onnx"]["sha256"]) == 64 and sc["class_names"][0] == "Surprise"
    assert sc["preprocessing"]["input_size"] == 64
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\0")
    sidecar_path(engine).write_text(json.dumps(sc))
    meta = read_metadata(engine)
    assert meta.precision == "fp16" and meta.model_name == "msff_resnet18"


def test_check_engine_compat(tmp_path: Path) -> None:
    sc = _sidecar(tmp_path)
    check_engine_compat(sc, "10.3.0.26", "Orin", (8, 7))  # same system: fine
    # All four fields count: the plan records major.minor.patch.build (trtexec --getPlanVersionOnly
    # prints bytes 24-27 of the plan header) and the runtime refuses another build ("expecting
    # library version 8.5.1.7 got 8.5.3.1, please rebuild").
    with pytest.raises(EngineMismatchError, match=r"TensorRT 10\.3\.0\.26 .*TensorRT 10\.3\.0\.30"):
        check_engine_compat(sc, "10.3.0.30", "Orin", (8, 7))
    with pytest.raises(
        EngineMismatchError,
        match=r"TensorRT 10\.3\.0\.26 .*TensorRT 10\.7\.0.*rebuild with `edgefer export --target trt`",
    ):
        check_engine_compat(sc, "10.7.0", "Orin", "8.7")
    with pytest.raises(EngineMismatchError, match=r"sm 8\.6"):
        check_engine_compat(sc, "10.3.0.26", "NVIDIA GeForce RTX 3090", "8.6")
    with pytest.raises(EngineMismatchError):
        check_engine_compat(sc, "10.3.0.26", "Other Orin", "8.7")
    check_engine_compat(sc, "10.3.0.26", "Other Orin", "8.7", strict_gpu_name=False)
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\0")
    with pytest.raises(BackendError, match="no sidecar"):
        check_engine_compat(engine, "10.3.0.26", "Orin", "8.7")
    sidecar_path(engine).write_text(json.dumps(sc))
    check_engine_compat(engine, "10.3.0.26", "Orin", "8.7")


# --- device profiles ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["orin_nano", "orin_nx", "agx_orin"])
def test_jetson_profiles_load(name: str) -> None:
    prof = load_profile(JETSON / f"{name}.yaml")
    assert prof.name == name and prof.tensorrt.startswith("10.")
    bp = prof.batch_profile()
    if prof.dla_core is not None:
        assert bp.static  # DLA needs static shapes
    kind = {"fp32": "fp32", "fp16": "fp16", "int8": "qdq"}[prof.precision]
    spec = EngineBuildSpec(prof.precision, bp, prof.workspace_mib, prof.dla_core)
    cmd = trtexec_command("m.onnx", "m.engine", spec, 112, trt_version=prof.tensorrt, onnx_kind=kind)
    assert f"--memPoolSize=workspace:{prof.workspace_mib}" in cmd


def test_bad_profile(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("precision: fp16\nworkspace: 12\n")
    with pytest.raises(ExportError, match="unknown keys workspace"):
        load_profile(p)
    p.write_text("precision: fp16\ndla_core: 0\ndynamic: true\n")
    with pytest.raises(ExportError, match="static shapes"):
        load_profile(p)
    with pytest.raises(ExportError, match="does not exist"):
        load_profile(tmp_path / "missing.yaml")


def test_build_script_is_executable_shell() -> None:
    script = JETSON / "build_engine.sh"
    text = script.read_text()
    assert text.startswith("#!") and "edgefer export" in text and "trtexec" in text
    assert script.stat().st_mode & 0o111


# --- real builds (only where TensorRT is installed) ---------------------------------------------


@pytest.mark.trt
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_build_engine_and_load(tiny_checkpoint: Path, tmp_path: Path, precision: str) -> None:
    import numpy as np

    from edgefer.backends import open_model
    from edgefer.deploy import export

    res = export(tiny_checkpoint, target="trt", precision=precision, out_dir=tmp_path, max_batch=8, progress=False)
    assert res.engine_built and res.artifact.suffix == ".engine" and sidecar_path(res.artifact).exists()
    check_engine_compat(res.artifact)
    cache = tmp_path / "trt_timing.cache"
    assert cache.exists() and cache.stat().st_size > 0
    x = np.random.default_rng(0).standard_normal((3, 3, 64, 64), dtype=np.float32)
    with open_model(res.artifact, device="cuda") as trt_model, open_model(res.onnx) as ort_model:
        diff = np.abs(trt_model.infer(x) - ort_model.infer(x)).max()
    assert diff < (1e-2 if precision == "fp32" else 5e-2)
