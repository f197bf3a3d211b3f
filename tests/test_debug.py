"""``edgefer debug``: layer-by-layer FP32 vs INT8 comparison, its ranking, its ignore list and its errors.

Runs on the session's tiny model (conftest ``tiny_checkpoint``), exported once to FP32 ONNX
(tests/_bench_artifacts.py) and quantized here with a small calibration set to a TensorRT-style
Q/DQ ONNX and to an OpenVINO INT8 IR.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("nncf", reason="nncf not installed")
pytest.importorskip("openvino", reason="openvino not installed")
onnx = pytest.importorskip("onnx", reason="onnx not installed")

from _bench_artifacts import exported_artifacts  # noqa: E402

from edgefer.errors import QuantizationError  # noqa: E402
from edgefer.quantize.debug import (  # noqa: E402
    balanced_indices,
    debug_int8,
    ignore_pattern,
    keep_layer_fp,
    read_ignore_file,
)

CALIB = 40
SAMPLES = 21  # 3 per class of the 7


@pytest.fixture(scope="module")
def fp32_onnx(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return exported_artifacts(tiny_checkpoint, tmp_path_factory.mktemp("debug_art"))["onnx"]


def _quantize(fp32_onnx: Path, data: Path, out: Path, target: str, ignore: tuple[str, ...] = ()) -> Path:
    from edgefer.quantize import quantize

    res = quantize(
        None,
        data,
        target=target,
        method="ptq",  # plain PTQ: every layer INT8, what debug ranks (ptq-acc would keep some in FP)
        calib_size=CALIB,
        onnx_path=fp32_onnx,
        out_dir=out,
        progress=False,
        val_size=30,
        ignore=ignore,
    )
    return res.artifact


@pytest.fixture(scope="module")
def qdq_onnx(fp32_onnx: Path, synth_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _quantize(fp32_onnx, synth_data, tmp_path_factory.mktemp("debug_trt"), "trt")


@pytest.fixture(scope="module")
def ov_int8(fp32_onnx: Path, synth_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _quantize(fp32_onnx, synth_data, tmp_path_factory.mktemp("debug_ov"), "openvino")


@pytest.fixture(scope="module")
def qdq_debug(fp32_onnx: Path, qdq_onnx: Path, synth_data: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("debug_out")
    return out, debug_int8(fp32_onnx, qdq_onnx, synth_data, out_dir=out, samples=SAMPLES, top=3)


# ------------------------------------------------------------------------------------------------ units


def test_balanced_indices_are_deterministic_balanced_and_bounded() -> None:
    labels = np.array([0] * 50 + [1] * 30 + [2] * 2)
    a = balanced_indices(labels, 12, seed=0)
    assert np.array_equal(a, balanced_indices(labels, 12, seed=0))
    assert not np.array_equal(a, balanced_indices(labels, 12, seed=1))
    assert np.all(np.diff(a) > 0)  # sorted, no repeats
    counts = np.bincount(labels[a], minlength=3)
    assert counts.tolist() == [5, 5, 2]  # the rare class is used up, the others share the rest evenly
    assert len(balanced_indices(labels, 1000)) == len(labels)
    with pytest.raises(QuantizationError):
        balanced_indices(labels, 0)


def test_ignore_file_reader(tmp_path: Path) -> None:
    good = tmp_path / "ignore.json"
    good.write_text(json.dumps({"patterns": [ignore_pattern("/layer1/Conv")]}))
    assert read_ignore_file(good) == [r"^/layer1/Conv(/WithoutBiases)?$"]
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(["^a$", "b.*"]))
    assert read_ignore_file(plain) == ["^a$", "b.*"]
    for text, match in (
        ("{not json", "not readable JSON"),
        ('{"patterns": [1]}', "list of regex"),
        ('["("]', "regular"),
    ):
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        with pytest.raises(QuantizationError, match=match):
            read_ignore_file(bad)
    with pytest.raises(QuantizationError, match="does not exist"):
        read_ignore_file(tmp_path / "missing.json")


def test_ignore_pattern_matches_onnx_and_openvino_names_only() -> None:
    import re

    p = re.compile(ignore_pattern("/layer1/layer1.0/conv1/Conv"))
    assert p.search("/layer1/layer1.0/conv1/Conv")  # ONNX node (trt/onnx targets)
    assert p.search("/layer1/layer1.0/conv1/Conv/WithoutBiases")  # OpenVINO Convolution of that Conv
    assert not p.search("/layer1/layer1x0/conv1/Conv")  # dots are literal
    assert not p.search("/layer1/layer1.0/conv1/Conv_1")


# ----------------------------------------------------------------------------------------- Q/DQ ONNX


def test_qdq_debug_outputs_are_complete_and_consistent(qdq_debug, fp32_onnx: Path) -> None:
    out, res = qdq_debug
    for name in ("debug.json", "debug.md", "debug.png", "ignore.json"):
        assert (out / name).is_file(), name
    doc = json.loads((out / "debug.json").read_text())
    layers, summary = doc["layers"], doc["summary"]
    assert layers == json.loads(json.dumps(res.layers))
    # graph order: the rows follow the FP32 ONNX node order
    order = {n.name: k for k, n in enumerate(onnx.load(str(fp32_onnx)).graph.node)}
    positions = [order[r["name"]] for r in layers]
    assert positions == sorted(positions) and len(layers) > 20
    # ranks: 1..Q over the quantized layers, by the error each adds, worst first
    ranked = sorted((r for r in layers if r["rank"] is not None), key=lambda r: r["rank"])
    assert [r["rank"] for r in ranked] == list(range(1, len(ranked) + 1))
    assert all(r["quantized"] for r in ranked) and all(r["rank"] is None for r in layers if not r["quantized"])
    added = [r["added_rel_l2"] for r in ranked]
    assert added == sorted(added, reverse=True)
    for r in layers:
        assert r["rel_l2"] >= 0 and -1.0 - 1e-9 <= r["cosine"] <= 1.0 + 1e-9
    assert any(r["qdq_sqnr_db"] is not None for r in ranked)  # ONNX Runtime's quantizer SQNR was matched
    # the sample: SAMPLES images, 3 of each class
    assert summary["samples"] == SAMPLES and set(summary["class_counts"].values()) == {3}
    assert 0.0 <= summary["agreement"] <= 1.0 and summary["quantized_layers"] == len(ranked)
    # ignore.json: the top 3, in rank order, readable by --ignore-from
    ig = json.loads((out / "ignore.json").read_text())
    assert ig["layers"] == [r["name"] for r in ranked[:3]]
    assert read_ignore_file(out / "ignore.json") == [ignore_pattern(r["name"]) for r in ranked[:3]]
    md = (out / "debug.md").read_text()
    assert ranked[0]["name"] in md and "--ignore-from" in md


def _corrupt_one_scale(qdq: Path, out: Path, factor: float = 8.0, where: str = "middle") -> tuple[Path, str]:
    """Copy the Q/DQ ONNX with one activation DequantizeLinear's scale multiplied by ``factor`` (a gain
    error on that tensor); returns the copy and the name of the one Conv that reads it: a Conv in the
    middle of the network, or (``where="first"``) the first one, which reads the image."""
    from onnx import numpy_helper

    model = onnx.load(str(qdq))
    inits = {t.name: t for t in model.graph.initializer}
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    producers = {o: n for n in model.graph.node for o in n.output}
    convs = []
    for n in model.graph.node:
        if n.op_type != "DequantizeLinear" or n.input[0] in inits:
            continue  # weights are stored int8 (folded): the activation DQs read a QuantizeLinear
        users = consumers.get(n.output[0], [])
        q = producers.get(n.input[0])
        if len(users) == 1 and users[0].op_type == "Conv" and q is not None and q.input[0] not in inits:
            convs.append((n, users[0]))
    dq, conv = convs[len(convs) // 2 if where == "middle" else 0]
    scale = numpy_helper.to_array(inits[dq.input[1]]) * np.float32(factor)
    model.graph.initializer.append(numpy_helper.from_array(scale.astype(np.float32), "broken_scale"))
    dq.input[1] = "broken_scale"
    path = out / "broken_int8_qdq.onnx"
    onnx.save(model, str(path))  # metadata_props (precision int8, ...) travel with the copy
    return path, conv.name


def test_a_broken_layer_ranks_first(fp32_onnx: Path, qdq_onnx: Path, synth_data: Path, tmp_path: Path) -> None:
    broken, conv = _corrupt_one_scale(qdq_onnx, tmp_path)
    res = debug_int8(fp32_onnx, broken, synth_data, out_dir=tmp_path / "dbg", samples=SAMPLES, top=2)
    assert res.worst[0]["name"] == conv, [(r["name"], r["added_rel_l2"]) for r in res.worst[:3]]
    assert res.ignore_patterns[0] == ignore_pattern(conv)
    assert json.loads((tmp_path / "dbg" / "ignore.json").read_text())["layers"][0] == conv


def test_keep_fp_finds_the_layer_whose_fp_copy_repairs_the_model(
    fp32_onnx: Path, qdq_onnx: Path, synth_data: Path, tmp_path: Path
) -> None:
    """The first Conv's input read 30x too large saturates the network: kept in FP, it agrees again."""
    from edgefer.data.calibration import validation_arrays
    from edgefer.metadata import read_metadata
    from edgefer.quantize.evaluate import predict

    broken, conv = _corrupt_one_scale(qdq_onnx, tmp_path, factor=30.0, where="first")
    x = validation_arrays(synth_data, read_metadata(fp32_onnx).preprocessing, 16).x
    ref = predict(fp32_onnx, x)
    bad = predict(broken, x) - ref
    fixed = predict(keep_layer_fp(onnx.load(str(broken)), conv), x) - ref
    assert np.linalg.norm(fixed) < 0.5 * np.linalg.norm(bad)  # keep_layer_fp really removes that layer's Q/DQ
    res = debug_int8(
        fp32_onnx, broken, synth_data, out_dir=tmp_path / "dbg", samples=7, top=1, keep_fp=True, keep_fp_max=3
    )
    rows = [r for r in res.layers if "agreement_kept_fp" in r]
    assert sorted(r["rank"] for r in rows) == [1, 2, 3] and res.summary["keep_fp_layers"] == 3
    best = max(rows, key=lambda r: (r["agreement_gain"], r["name"] == conv))
    assert best["name"] == conv and best["agreement_gain"] > 0, [(r["name"], r["agreement_gain"]) for r in rows]
    assert "agreement kept FP" in res.markdown


# -------------------------------------------------------------------------------------------- OpenVINO


def test_openvino_ir_is_matched_by_tensor_name(fp32_onnx: Path, ov_int8: Path, synth_data: Path, tmp_path: Path):
    res = debug_int8(fp32_onnx, ov_int8, synth_data, out_dir=tmp_path, samples=SAMPLES, top=3)
    fp_nodes = [n.name for n in onnx.load(str(fp32_onnx)).graph.node]
    assert res.summary["numerics"].startswith("openvino")
    assert len(res.layers) > 0.8 * len(fp_nodes)  # OpenVINO keeps the ONNX tensor names
    assert res.summary["quantized_layers"] > 10 and len(res.ignore_patterns) == 3
    assert (tmp_path / "debug.png").is_file()
    with pytest.raises(QuantizationError, match="Q/DQ ONNX"):
        debug_int8(fp32_onnx, ov_int8, synth_data, out_dir=tmp_path / "k", samples=7, keep_fp=True)


def _dq_inputs(model, node_name: str) -> int:
    """How many inputs of ONNX node ``node_name`` come out of a DequantizeLinear (activations and weights)."""
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    node = next(n for n in model.graph.node if n.name == node_name)
    return sum(producers.get(i) == "DequantizeLinear" for i in node.input)


def _fq_inputs(model, node_name: str) -> int:
    """How many inputs of the OpenVINO op(s) of ONNX node ``node_name`` come out of a FakeQuantize."""
    names = (node_name, node_name + "/WithoutBiases")
    return sum(
        v.get_node().get_type_name() == "FakeQuantize"
        for op in model.get_ordered_ops()
        if op.get_friendly_name() in names
        for v in op.input_values()
    )


def test_ignore_list_round_trips_through_quantize(
    fp32_onnx: Path, qdq_onnx: Path, ov_int8: Path, qdq_debug, synth_data: Path, tmp_path: Path
) -> None:
    """``edgefer quantize --ignore-from ignore.json`` takes the listed layers out of INT8, for both targets.

    Each listed layer reads fewer quantized inputs than before (none, unless a weight is shared with a
    layer still quantized: NNCF keeps that weight's quantizer).
    """
    import openvino as ov
    from typer.testing import CliRunner

    from edgefer.cli import app

    out, _ = qdq_debug
    layers = json.loads((out / "ignore.json").read_text())["layers"]
    base_qdq = onnx.load(str(qdq_onnx))
    before_qdq = {n: _dq_inputs(base_qdq, n) for n in layers}
    assert all(before_qdq.values()), before_qdq
    ov_dir = tmp_path / "ovdbg"
    ov_layers = [r["name"] for r in debug_int8(fp32_onnx, ov_int8, synth_data, out_dir=ov_dir, samples=7).worst[:5]]
    base_ov = ov.Core().read_model(str(ov_int8))
    before_ov = {n: _fq_inputs(base_ov, n) for n in ov_layers}
    assert all(before_ov.values()), before_ov

    runner = CliRunner()
    for target, ignore_file in (("trt", out / "ignore.json"), ("openvino", ov_dir / "ignore.json")):
        args = ["quantize", "--onnx", str(fp32_onnx), "--data", str(synth_data)]
        args += ["--target", target, "--int8-method", "ptq"]
        args += ["--calib-size", str(CALIB), "--val-size", "30", "--ignore-from", str(ignore_file)]
        r = runner.invoke(app, [*args, "--out", str(tmp_path / target), "--quiet"])
        assert r.exit_code == 0, r.output
        report = json.loads(next((tmp_path / target).glob("*.report.json")).read_text())
        assert report["quantization"]["ignored"] == read_ignore_file(ignore_file)
    new_qdq = onnx.load(str(next((tmp_path / "trt").glob("*.onnx"))))
    after_qdq = {n: _dq_inputs(new_qdq, n) for n in layers}
    assert all(after_qdq[n] < before_qdq[n] for n in layers), (before_qdq, after_qdq)
    new_ov = ov.Core().read_model(str(next((tmp_path / "openvino").glob("*.xml"))))
    after_ov = {n: _fq_inputs(new_ov, n) for n in ov_layers}
    assert all(after_ov[n] < before_ov[n] for n in ov_layers), (before_ov, after_ov)


# ---------------------------------------------------------------------------------------------- errors


def _with_metadata(src: Path, dst: Path, **changes) -> Path:
    from edgefer.metadata import read_metadata, set_onnx_metadata

    model = onnx.load(str(src))
    set_onnx_metadata(model, read_metadata(src).replace(**changes))
    onnx.save(model, str(dst))
    return dst


def test_bad_inputs_are_one_line_errors(fp32_onnx: Path, qdq_onnx: Path, synth_data: Path, tmp_path: Path) -> None:
    from edgefer.metadata import read_metadata

    out = tmp_path / "out"
    cases = [
        ((tmp_path / "missing.onnx", qdq_onnx), "does not exist"),
        ((fp32_onnx, tmp_path / "missing.onnx"), "does not exist"),
        ((fp32_onnx, fp32_onnx), "not an INT8 artifact"),
        ((fp32_onnx, tmp_path / "m.engine"), "Polygraphy"),
    ]
    (tmp_path / "m.engine").write_bytes(b"\0")
    meta = read_metadata(qdq_onnx)
    fewer = _with_metadata(qdq_onnx, tmp_path / "fewer.onnx", class_names=tuple(meta.class_names[:6]))
    cases.append(((fp32_onnx, fewer), "classes"))
    bigger = _with_metadata(
        qdq_onnx, tmp_path / "bigger.onnx", preprocessing=dataclasses.replace(meta.preprocessing, input_size=112)
    )
    cases.append(((fp32_onnx, bigger), "px"))
    for (a, b), match in cases:
        with pytest.raises(QuantizationError, match=match) as info:
            debug_int8(a, b, synth_data, out_dir=out, samples=7)
        assert "\n" not in str(info.value)
    with pytest.raises(QuantizationError, match="does not exist"):
        debug_int8(fp32_onnx, qdq_onnx, tmp_path / "nodata", out_dir=out, samples=7)
    assert not out.exists()  # nothing written by a refused run


def test_cli_debug(fp32_onnx: Path, qdq_onnx: Path, synth_data: Path, tmp_path: Path) -> None:
    from edgefer.cli import main

    out = tmp_path / "dbg"
    argv = ["debug", str(fp32_onnx), str(qdq_onnx), "--data", str(synth_data), "--out", str(out), "--samples", "7"]
    main([*argv, "--top", "2"])  # success returns (exit status 0)
    assert len(read_ignore_file(out / "ignore.json")) == 2
    with pytest.raises(SystemExit) as again:  # an earlier result is kept unless --overwrite
        main(argv)
    assert again.value.code == 2
    with pytest.raises(SystemExit) as bad:
        main(["debug", str(fp32_onnx), str(fp32_onnx), "--data", str(synth_data), "--out", str(tmp_path / "b")])
    assert bad.value.code == 2


def test_plot_is_skipped_with_a_note_without_matplotlib(
    fp32_onnx: Path, qdq_onnx: Path, synth_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    res = debug_int8(fp32_onnx, qdq_onnx, synth_data, out_dir=tmp_path, samples=7)
    assert not (tmp_path / "debug.png").exists() and res.summary["plot"] is None
    assert "matplotlib is not installed" in (tmp_path / "debug.md").read_text()
