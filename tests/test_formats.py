"""The formats table (edgefer.formats) is the one place formats are known: every reader agrees with it."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from edgefer.errors import BackendError, EdgeferError
from edgefer.formats import (
    DEPLOYABLE_SUFFIXES,
    FORMATS,
    TARGETS,
    Format,
    UnknownFormatError,
    format_for_backend,
    format_named,
    format_of,
    known_suffixes,
)

ROWS = pytest.mark.parametrize("fmt", FORMATS, ids=[f.name for f in FORMATS])


def _touch(path: Path) -> Path:
    path.write_bytes(b"x")
    return path


def test_rows_are_distinct() -> None:
    suffixes = [s for f in FORMATS for s in f.suffixes]
    assert len(suffixes) == len(set(suffixes)), "two rows claim the same suffix"
    for attr in ("name", "backend", "backend_module"):
        values = [getattr(f, attr) for f in FORMATS]
        assert len(values) == len(set(values)), attr
    assert all(s.startswith(".") and s == s.lower() for s in suffixes)


@ROWS
def test_every_suffix_maps_back_to_its_row(fmt: Format) -> None:
    for suffix in fmt.suffixes:
        assert format_of(Path(f"dir/model{suffix}")) is fmt
        assert format_of(f"MODEL{suffix.upper()}") is fmt  # suffixes are matched in any case
    assert format_named(fmt.name) is fmt
    assert format_for_backend(fmt.backend) is fmt


@ROWS
def test_every_backend_in_the_table_imports_and_claims_its_suffixes(fmt: Format, tmp_path: Path) -> None:
    """The backend module imports without its engine package (it imports that lazily) and registers a
    backend of the row's name whose default ``can_load`` accepts exactly the row's suffixes."""
    from edgefer.backends import available_backends

    importlib.import_module(fmt.backend_module)
    cls = available_backends()[fmt.backend]
    assert cls.__module__ == fmt.backend_module
    assert cls.extra == fmt.extra
    for suffix in fmt.suffixes:
        assert cls.can_load(_touch(tmp_path / f"m{suffix}"))
        assert not cls.can_load(tmp_path / f"missing{suffix}")  # a file, not a name
    for other in FORMATS:
        if other is not fmt:
            assert not cls.can_load(_touch(tmp_path / f"m{other.suffixes[0]}"))


@ROWS
def test_every_backend_runtime_imports_where_installed(fmt: Format) -> None:
    if not fmt.installed():
        pytest.skip(f"{fmt.runtime} is not installed (pip install edgefer[{fmt.extra}])")
    importlib.import_module(fmt.runtime)


def test_files_lists_the_artifact_and_its_companions(tmp_path: Path) -> None:
    from edgefer.bundle import artifact_files
    from edgefer.metadata import sidecar_path

    xml = _touch(tmp_path / "m_int8.xml")
    assert format_of(xml).files(xml) == [xml]
    _touch(tmp_path / "m_int8.bin")
    assert artifact_files(xml) == [xml, tmp_path / "m_int8.bin"]
    engine = _touch(tmp_path / "m.plan")
    _touch(sidecar_path(engine))  # the table's sidecar template is metadata.sidecar_path's
    assert artifact_files(engine) == [engine, sidecar_path(engine)]
    onnx = _touch(tmp_path / "m.onnx")
    _touch(tmp_path / "m.onnx.data")
    assert artifact_files(onnx) == [onnx, tmp_path / "m.onnx.data"]
    pt = _touch(tmp_path / "best.pt")
    _touch(sidecar_path(pt))  # a checkpoint has no companions
    assert artifact_files(pt) == [pt]


def _check_unknown(exc: BaseException, name: str) -> None:
    msg = str(exc)
    assert "\n" not in msg and name in msg and known_suffixes() in msg, msg


def test_unknown_suffix_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UnknownFormatError) as info:
        format_of(tmp_path / "model.tflite")
    assert isinstance(info.value, BackendError) and isinstance(info.value, EdgeferError)
    _check_unknown(info.value, "model.tflite")
    with pytest.raises(UnknownFormatError, match="no suffix"):
        format_of(tmp_path / "model")
    with pytest.raises(UnknownFormatError, match="unknown format 'coreml'"):
        format_named("coreml")
    assert format_for_backend("tflite") is None


def test_bundle_refuses_an_unknown_suffix_instead_of_calling_it_tensorrt(tmp_path: Path) -> None:
    """The old bundle labelled every artifact that was neither .onnx nor .xml "tensorrt"."""
    from edgefer.bundle import BundleError, _backend_for, make_bundle

    other = _touch(tmp_path / "model.tflite")
    with pytest.raises(BundleError) as info:
        _backend_for(other)
    _check_unknown(info.value, "model.tflite")
    with pytest.raises(BundleError) as info:
        make_bundle([other], tmp_path / "bundle")
    _check_unknown(info.value, "model.tflite")
    with pytest.raises(BundleError, match="not a deployable artifact"):
        make_bundle([_touch(tmp_path / "best.pt")], tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()
    for fmt in FORMATS:
        if fmt.deployable:
            assert all(_backend_for(Path(f"m{s}")) == fmt.backend for s in fmt.suffixes)
    assert set(DEPLOYABLE_SUFFIXES) == {s for f in FORMATS if f.deployable for s in f.suffixes}


def test_metadata_and_predictor_refuse_an_unknown_suffix(tmp_path: Path) -> None:
    from edgefer.metadata import read_metadata
    from edgefer.runtime.predictor import Predictor

    other = _touch(tmp_path / "model.tflite")
    with pytest.raises(UnknownFormatError) as info:
        read_metadata(other)
    _check_unknown(info.value, "model.tflite")
    with pytest.raises(BackendError) as info:
        Predictor(other, detector="none")
    _check_unknown(info.value, "model.tflite")
    with pytest.raises(BackendError, match="training checkpoint"):
        read_metadata(_touch(tmp_path / "best.pt"))


def test_former_targets_lists_agree_with_the_table(tmp_path: Path) -> None:
    """export, quantize and the pipeline each had their own TARGETS, in three orders."""
    from edgefer.export import TARGETS as export_targets
    from edgefer.export import export
    from edgefer.pipeline.flow import TARGETS as pipeline_targets
    from edgefer.pipeline.flow import PipelineConfig
    from edgefer.quantize import TARGETS as quantize_targets
    from edgefer.quantize import quantize

    assert TARGETS == tuple(f.name for f in FORMATS if f.target) == ("onnx", "openvino", "trt")
    assert export_targets == quantize_targets == pipeline_targets == TARGETS
    listed = ", ".join(TARGETS)
    with pytest.raises(EdgeferError, match=f"unknown target 'coreml'; choose one of {listed}$"):
        export(checkpoint=tmp_path / "missing.pt", target="coreml")
    with pytest.raises(EdgeferError, match=f"choose from {listed}$"):
        PipelineConfig(targets=("coreml",))
    with pytest.raises(EdgeferError, match=f"target must be one of {listed}, not 'coreml'"):
        quantize(None, tmp_path / "missing", target="coreml", out_dir=tmp_path / "q")
    for target in TARGETS:  # every table target passes each validator (the missing file fails later)
        with pytest.raises(EdgeferError, match="does not exist"):
            export(checkpoint=tmp_path / "missing.pt", target=target)
        with pytest.raises(EdgeferError, match="does not exist"):
            quantize(None, tmp_path / "missing", target=target, out_dir=tmp_path / "q")
        assert PipelineConfig(targets=(target,), out=str(tmp_path / "run")).targets == (target,)
