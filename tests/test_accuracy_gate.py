"""The number accuracy-controlled quantization optimises is the benchmark gate, not accuracy alone.

:func:`edgefer.quantize.accuracy_control.gate_metric` turns FP32 and INT8 predictions into NNCF's
metric ``1 - u * s`` (``s``: :meth:`Gate.severity`, the largest normalised violation), and NNCF keeps
a candidate when ``metric(FP32) - metric(INT8) <= u``. These tests build predictions by hand (no
model, no NNCF): a candidate with the FP32 accuracy but 10 % of its predictions flipped must be over
budget, one within every rule must be within it, and ``drop <= u`` must agree with
:meth:`Gate.check` on every case, boundaries included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgefer.bench.gate import Gate
from edgefer.bench.metrics import compare_to_reference
from edgefer.quantize.accuracy_control import gate_metric, metric_unit, nncf_max_drop
from edgefer.quantize.options import DEFAULT_GATE_TERMS
from edgefer.reference import Reference

NAMES = ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral")
PRODUCTION = Gate.parse(f"max-drop=0.5,{DEFAULT_GATE_TERMS}")


def _logits(preds: np.ndarray) -> np.ndarray:
    out = np.zeros((len(preds), len(NAMES)), np.float32)
    out[np.arange(len(preds)), preds] = 5.0
    return out


def _fp32(n: int = 1000, correct: float = 0.8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels and FP32 predictions: ``correct`` of them right, the rest one class off."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(NAMES), n)
    preds = labels.copy()
    wrong = rng.permutation(n)[: round(n * (1 - correct))]
    preds[wrong] = (labels[wrong] + 1) % len(NAMES)
    return labels, preds


def _drop(gate: Gate, labels: np.ndarray, fp32: np.ndarray, int8: np.ndarray) -> float:
    """NNCF's drop: metric(FP32) - metric(INT8), both against the FP32 predictions."""
    ref_metric, _ = gate_metric(gate, _logits(fp32), labels, _logits(fp32), NAMES)
    metric, _ = gate_metric(gate, _logits(int8), labels, _logits(fp32), NAMES)
    assert ref_metric == 1.0  # FP32 scores itself with no violation at all
    return ref_metric - metric


def _passes(gate: Gate, labels: np.ndarray, fp32: np.ndarray, int8: np.ndarray) -> bool:
    ref = Reference(ids=np.arange(len(labels)).astype(str), labels=labels, logits=_logits(fp32), class_names=NAMES)
    acc = compare_to_reference(_logits(int8), labels, ref, NAMES)
    return not gate.check({"label": "int8", "status": "ok", "accuracy": acc})


def _swap(labels: np.ndarray, fp32: np.ndarray, n_lost: int, n_gained: int, seed: int = 1) -> np.ndarray:
    """INT8 predictions: ``n_lost`` FP32-right images made wrong, ``n_gained`` FP32-wrong ones made right."""
    rng = np.random.default_rng(seed)
    int8 = fp32.copy()
    right, wrong = np.flatnonzero(fp32 == labels), np.flatnonzero(fp32 != labels)
    lost, gained = rng.permutation(right)[:n_lost], rng.permutation(wrong)[:n_gained]
    int8[lost] = (labels[lost] + 2) % len(NAMES)
    int8[gained] = labels[gained]
    return int8


def test_equal_accuracy_with_ten_percent_flips_is_over_budget() -> None:
    labels, fp32 = _fp32()
    int8 = _swap(labels, fp32, 50, 50)  # accuracy unchanged, 100 of 1000 predictions changed
    assert (int8 == labels).mean() == (fp32 == labels).mean() and (int8 != fp32).mean() == 0.1
    unit = metric_unit(PRODUCTION)
    assert unit == 0.005
    assert _drop(PRODUCTION, labels, fp32, int8) > nncf_max_drop(PRODUCTION)
    assert not _passes(PRODUCTION, labels, fp32, int8)
    # overall accuracy alone (NNCF's usual metric, the old behaviour) sees no drop at all
    assert _drop(Gate(max_drop=0.5), labels, fp32, int8) <= nncf_max_drop(Gate(max_drop=0.5))


def test_within_every_rule_is_within_budget() -> None:
    labels, fp32 = _fp32()
    int8 = _swap(labels, fp32, 6, 4)  # -0.2 pt, 99.0 % agreement, no class significantly worse
    assert _passes(PRODUCTION, labels, fp32, int8)
    assert 0 < _drop(PRODUCTION, labels, fp32, int8) <= nncf_max_drop(PRODUCTION)


def test_a_significant_class_loss_alone_is_over_budget() -> None:
    labels, fp32 = _fp32()
    fear = np.flatnonzero((labels == 1) & (fp32 == labels))[:6]
    int8 = fp32.copy()
    int8[fear] = 0  # Fear loses 6 images, nothing gained (McNemar p = 1/64)
    others = np.flatnonzero((labels != 1) & (fp32 != labels))[:4]
    int8[others] = labels[others]  # overall: -0.2 pt; agreement 99 %
    assert Gate(max_drop=0.5, min_agreement=0.98).severity(_acc(labels, fp32, int8)) <= 1.0
    assert _drop(PRODUCTION, labels, fp32, int8) > nncf_max_drop(PRODUCTION)
    assert not _passes(PRODUCTION, labels, fp32, int8)


def _acc(labels: np.ndarray, fp32: np.ndarray, int8: np.ndarray) -> dict:
    ref = Reference(ids=np.arange(len(labels)).astype(str), labels=labels, logits=_logits(fp32), class_names=NAMES)
    return compare_to_reference(_logits(int8), labels, ref, NAMES)


@pytest.mark.parametrize(
    "gate",
    [
        PRODUCTION,
        Gate.parse("max-drop=0,min-agreement=1"),  # zero tolerances
        Gate.parse("max-drop=1.0,max-class-drop=5.0,min-agreement=0.95"),  # the pipeline's benchmark gate
        Gate.parse("max-mean-class-drop=0.5,max-kl=0.01,max-class-drop=2,class-alpha=1"),
    ],
    ids=str,
)
def test_metric_within_budget_exactly_when_the_gate_passes(gate: Gate) -> None:
    labels, fp32 = _fp32(n=500)
    budget = nncf_max_drop(gate)
    cases = [(lost, gained) for lost in range(0, 16, 3) for gained in range(0, 16, 5)]
    cases += [(5, 5), (10, 0)]  # 98.0 % agreement exactly on 500 images; a pure 2-point drop
    verdicts = set()
    for seed, (lost, gained) in enumerate(cases):
        int8 = _swap(labels, fp32, lost, gained, seed=seed)
        passes = _passes(gate, labels, fp32, int8)
        assert (_drop(gate, labels, fp32, int8) <= budget) == passes, (lost, gained)
        verdicts.add(passes)
    assert verdicts == {True, False}  # the cases straddle the budget


def test_per_item_values_rank_lost_images_first() -> None:
    labels = np.array([0, 1, 2, 3])
    fp32 = np.array([0, 1, 5, 3])  # right, right, wrong, right
    int8 = np.array([6, 1, 4, 3])  # lost, same, wrong -> other wrong, same
    _, ref_values = gate_metric(PRODUCTION, _logits(fp32), labels, _logits(fp32), NAMES)
    _, values = gate_metric(PRODUCTION, _logits(int8), labels, _logits(fp32), NAMES)
    # NNCF ranks items by value(FP32) - value(INT8): lost images first, then other flips
    assert [r - v for r, v in zip(ref_values, values, strict=True)] == [1.0, 0.0, 0.5, 0.0]


def test_pipeline_holds_every_int8_stage_to_its_benchmark_gate(tmp_path: Path) -> None:
    """``edgefer pipeline --max-drop X`` reaches every INT8 target through the benchmark gate's rules."""
    from edgefer.pipeline.flow import PipelineConfig, _Flow

    def stage_options(**cfg_fields: Any) -> tuple[list[dict[str, Any]], _Flow]:
        cfg = PipelineConfig(out=str(tmp_path / "run"), targets=("openvino", "onnx"), progress=False, **cfg_fields)
        flow = _Flow(cfg, on_event=lambda _msg: None)
        return [flow.int8_stage(t).params for t in ("openvino", "onnx")], flow

    params, flow = stage_options(int8_method="ptq-acc", max_drop=0.5, gate="max-drop=1.0,min-agreement=0.95")
    assert [p["gate"] for p in params] == ["max-drop=0.5,min-agreement=0.95"] * 2  # the tighter max-drop
    params, flow = stage_options(int8_method="ptq-acc", max_drop=2.0, gate="max-drop=1.0,max-p99-ms=5")
    assert params[0]["gate"] == "max-drop=1"  # the benchmark's own budget wins; latency is not for quantize
    assert "--gate" in flow.int8_stage("onnx").command
    params, _ = stage_options(int8_method="ptq-acc", max_drop=0.3, gate="max-p99-ms=5")
    assert params[0]["gate"] == "max-drop=0.3"
    # plain PTQ does not search: its artifact does not depend on the gate (the benchmark checks it),
    # so a changed gate must not rerun it
    params, _ = stage_options(int8_method="ptq", max_drop=0.3, gate="max-drop=1.0,min-agreement=0.95")
    assert params[0]["gate"] is None and params[0]["max_drop"] == 0.3
    # by default (issue 26) every INT8 stage searches for the model that passes the pipeline's gate
    params, flow = stage_options()
    assert [p["method"] for p in params] == ["ptq-acc"] * 2
    assert params[0]["gate"] == "max-drop=1,max-class-drop=5,class-alpha=0.05,min-agreement=0.95"
    command = flow.int8_stage("openvino").command
    assert command[command.index("--gate") + 1] == params[0]["gate"] and "--int8-method" not in command


def test_pipeline_says_what_an_int8_stage_kept() -> None:
    from edgefer.pipeline.flow import int8_summary

    held = {
        "gate": "max-drop=1",
        "accuracy_control": {"kept_fp": ["/stem/Conv", "/head/Gemm"]},
        "delta_pts": -0.27,
        "agreement": 0.9867,
    }
    assert int8_summary(held) == (
        "held to max-drop=1, kept 2 layer(s) in FP (/stem/Conv, /head/Gemm), delta -0.27 pt, agreement 98.7 %"
    )
    plain = {"quantization": {"method": "ptq"}, "delta_pts": -1.5, "agreement": 0.95}
    assert int8_summary(plain).startswith("ptq: every quantizable layer INT8, not held to a gate")


def test_benchmark_markdown_lists_the_layers_kept_in_higher_precision() -> None:
    from edgefer.bench.report import kept_fp_lines

    rows = [
        {"label": "m_int8_acc.xml", "kept_fp": ["/stem/Conv", "/head/Gemm"]},
        {"label": "m_int8_qdq_acc.onnx", "kept_fp": []},
        {"label": "m.onnx", "kept_fp": None},  # not a mixed-precision model: no line
    ]
    assert kept_fp_lines({"rows": rows}) == [
        "- **m_int8_acc.xml**: 2 layer(s): `/stem/Conv`, `/head/Gemm`",
        "- **m_int8_qdq_acc.onnx**: 0 layer(s): none (fully INT8)",
    ]


def _linear_classifier() -> Any:
    """A small runnable classifier ONNX (conv, pooling, linear head) for NNCF to quantize."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal((7, 8)).astype(np.float32), "fc"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc"], ["logits"], name="head", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 7])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize(("gate", "searched"), [("max-drop=100,min-agreement=0.01", False), ("max-kl=1e-12", True)])
def test_accuracy_control_searches_only_when_plain_ptq_breaks_the_gate(
    monkeypatch: pytest.MonkeyPatch, gate: str, searched: bool
) -> None:
    """The INT8 default costs no second quantization when plain PTQ already holds the gate (plain
    PTQ's model is what NNCF would return); it still searches when plain PTQ breaks it."""
    nncf = pytest.importorskip("nncf", reason="nncf not installed")
    pytest.importorskip("onnx", reason="onnx not installed")
    from edgefer.data.calibration import ArrayData
    from edgefer.quantize import ptq
    from edgefer.quantize.accuracy_control import quantize_with_accuracy_control
    from edgefer.quantize.evaluate import Runner

    model = _linear_classifier()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((40, 3, 8, 8)).astype(np.float32)
    data = ArrayData(x=x, labels=rng.integers(0, 7, 40), ids=[str(i) for i in range(40)], split="test")
    fp32_logits = Runner(model)(x)
    calls: list[Any] = []

    def search(fp32_model: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["max_drop"])
        plain = ptq.run_nncf(nncf.quantize, fp32_model, args[0], subset_size=40)
        return plain  # stands for NNCF's result (what it keeps in FP is not what is tested here)

    monkeypatch.setattr(nncf, "quantize_with_accuracy_control", search)
    kwargs = ptq.nncf_kwargs("onnx", calib_size=40)
    out, info = quantize_with_accuracy_control("onnx", model, data, data, fp32_logits, Gate.parse(gate), NAMES, kwargs)
    assert bool(calls) is searched, (calls, info)
    assert (info["before_severity"] > 1.0) is searched, info
    assert info["kept_fp"] == [] and info["before"] == "plain PTQ"
    assert {n.op_type for n in out.graph.node} >= {"QuantizeLinear", "DequantizeLinear"}
