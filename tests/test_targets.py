"""Every deployment target is complete, registered where the formats table says, and the only place
that knows its name (issue 24: "a module per target").

Cheap: no model is trained; the one export builds a two-node ONNX in the test.
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

import pytest

from edgefer.errors import ExportError, QuantizationError
from edgefer.export.options import INT8_MODES
from edgefer.export.targets import all_targets, check_method, target_named
from edgefer.export.targets.base import Int8Form, Target
from edgefer.formats import FORMATS, PRECISIONS, TARGETS, format_named
from edgefer.quantize.options import METHODS, PRESETS

PACKAGE = Path(__file__).resolve().parents[1] / "edgefer"
TARGET_DIR = PACKAGE / "export" / "targets"


def test_registry_matches_the_formats_table() -> None:
    """One target per target row, found through the row's ``target_module``, named like the row."""
    assert [t.name for t in all_targets()] == list(TARGETS) == ["onnx", "openvino", "trt"]
    for row in FORMATS:
        if row.target:
            module = sys.modules[str(row.target_module)]
            assert module.TARGET is target_named(row.name)
            assert Path(str(module.__file__)).parent == TARGET_DIR, f"{row.name}'s target lives outside {TARGET_DIR}"
        else:
            with pytest.raises(ExportError, match=f"unknown target {row.name!r}"):
                target_named(row.name)


@pytest.mark.parametrize("name", TARGETS)
def test_every_target_is_complete(name: str) -> None:
    """Every abstract method implemented (the class instantiates), every attribute set and valid
    against the vocabularies it is drawn from."""
    target = target_named(name)
    assert isinstance(target, Target) and not inspect.isabstract(type(target))
    for attr in ("name", "int8", "methods", "int8_modes", "device_commands", "builds_from_lower_precision"):
        assert hasattr(target, attr), f"{name} target has no {attr}"
    assert isinstance(target.int8, Int8Form)
    assert format_named(target.int8.format).precisions == PRECISIONS, "the INT8 artifact's format must hold int8"
    files = target.int8.files("m")
    assert files[0] == "m" + format_named(target.int8.format).suffixes[0]
    assert target.methods and set(target.methods) <= set(METHODS)
    assert target.presets and set(target.presets) <= set(PRESETS)
    assert (set(target.presets) == set(PRESETS)) == (target.int8.preset_refusal == ""), "a refused preset says why"
    assert "qdq" in target.int8_modes and set(target.int8_modes) <= set(INT8_MODES)
    assert target.stage_name("fp16") == f"{name}-fp16"
    from edgefer.pipeline.flow import ARTIFACT_STAGES

    assert target.pipeline_stages and set(target.pipeline_stages) <= set(ARTIFACT_STAGES)
    assert f"{name}-int8" in target.pipeline_stages, "the pipeline makes every target's INT8 artifact"
    built = type(target).build
    assert built is not Target.build and not getattr(built, "__isabstractmethod__", False)


def test_every_method_preset_and_int8_mode_has_a_target() -> None:
    """Nothing in the vocabularies is unreachable: each method, preset and INT8 mode some target takes."""
    targets = all_targets()
    assert set(METHODS) == {m for t in targets for m in t.methods}
    assert set(PRESETS) == {p for t in targets for p in t.presets}
    assert set(INT8_MODES) == {m for t in targets for m in t.int8_modes}


def test_behaviour_the_targets_own_is_unchanged() -> None:
    """The facts the branches used to spell out, now asked of the targets (file names, labels, rules)."""
    onnx, ov, trt = (target_named(n) for n in ("onnx", "openvino", "trt"))
    assert (ov.int8.tag, ov.int8.label, ov.int8.files("m")) == ("int8", "openvino-fq", ["m.xml", "m.bin"])
    for t in (onnx, trt):
        assert (t.int8.tag, t.int8.label, t.int8.files("m"), t.int8.qdq) == ("int8_qdq", "onnx-qdq", ["m.onnx"], True)
        with pytest.raises(QuantizationError, match="the trt/onnx targets use the symmetric 'performance' preset"):
            t.check_preset("mixed")
        with pytest.raises(QuantizationError, match=r"^weights-only compression \(method 'wc'\) is for the openvino"):
            check_method(t.name, "wc")
    ov.check_preset("mixed")
    check_method("openvino", "wc")
    assert [t.device_commands for t in (onnx, ov, trt)] == [False, False, True]
    assert [t.builds_from_lower_precision for t in (onnx, ov, trt)] == [False, False, True]
    assert trt.int8_modes == ("qdq", "entropy") and onnx.int8_modes == ov.int8_modes == ("qdq",)


def test_only_target_modules_branch_on_a_target_name() -> None:
    """``grep 'target =='`` outside edgefer/export/targets/ finds nothing (issue 24's done-when)."""
    pattern = re.compile(r"""\btarget\s*(==|!=)|\btarget\s+(not\s+)?in\s*\(|\btargets?\s*(==|!=)\s*["']""")
    hits = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if TARGET_DIR in path.parents:
            continue
        for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line) and not line.lstrip().startswith("#"):
                hits.append(f"{path.relative_to(PACKAGE.parent)}:{no}: {line.strip()}")
    assert not hits, "ask the target (edgefer.export.targets.target_named) instead:\n" + "\n".join(hits)


def test_target_modules_import_no_torch_or_nncf() -> None:
    """The targets run on the device (a Jetson builds its engine through them): importing every one
    pulls in no torch, NNCF or OpenVINO (checked in a fresh interpreter)."""
    import subprocess

    code = (
        "import sys; from edgefer.export.targets import all_targets; all_targets(); "
        "print(sorted(m for m in ('torch', 'nncf', 'openvino', 'tensorrt') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_non_fp32_onnx_is_refused_in_one_wording(tmp_path: Path) -> None:
    """The given-ONNX checks live in edgefer.export.source: export (a target that needs FP32) and
    quantize refuse an FP16 ONNX in the same words, before any work."""
    onnx = pytest.importorskip("onnx")
    from _identity_onnx import identity_onnx

    from edgefer.export import export
    from edgefer.export.source import check_img_size, require_fp32
    from edgefer.metadata import ModelMetadata, read_metadata, set_onnx_metadata

    model = identity_onnx(16)
    set_onnx_metadata(model, ModelMetadata(model_name="tiny", precision="fp16"))
    src = tmp_path / "tiny_fp16.onnx"
    onnx.save(model, str(src))
    with pytest.raises(ExportError, match=r"^tiny_fp16\.onnx is fp16; openvino export starts from the FP32 ONNX$"):
        export(onnx=src, target="openvino", out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    meta = read_metadata(src)
    with pytest.raises(QuantizationError, match=r"^tiny_fp16\.onnx is fp16; quantization starts from the FP32 ONNX$"):
        require_fp32(src, meta, "quantization", QuantizationError)
    size = meta.preprocessing.input_size
    check_img_size(src, meta, None, ExportError)
    check_img_size(src, meta, size, ExportError)
    with pytest.raises(ExportError, match=rf"exported at {size} px, not {size + 1}; re-export it or drop --img-size"):
        check_img_size(src, meta, size + 1, ExportError)


def test_the_pipeline_runs_the_stages_its_targets_name() -> None:
    """Each target names its stages; the pipeline runs their union once each, in one fixed order (the
    order it always had: OpenVINO, then the ONNX the TensorRT engines are built from, then the engines)."""
    from edgefer.pipeline.flow import planned_stages

    ov = ["openvino-fp32", "openvino-fp16", "openvino-int8"]
    assert planned_stages(["openvino"]) == ov
    assert planned_stages(["onnx"]) == ["onnx-fp16", "onnx-int8"]
    assert planned_stages(["trt"]) == ["onnx-fp16", "onnx-int8", "trt-fp16", "trt-int8"]
    both = planned_stages(["trt", "onnx", "openvino"])
    assert both == [*ov, "onnx-fp16", "onnx-int8", "trt-fp16", "trt-int8"]
