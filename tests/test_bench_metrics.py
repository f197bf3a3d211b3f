"""Benchmark metrics, percentiles, the gate and the Pareto front against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgefer.bench.gate import Gate
from edgefer.bench.metrics import (
    accuracy_summary,
    compare_to_reference,
    latency_stats,
    percentile,
    probability_divergence,
)
from edgefer.bench.plots import pareto_front
from edgefer.errors import EdgeferError
from edgefer.reference import Reference

NAMES = ("A", "B", "C")


def _logits_for(preds: list[int], k: int = 3) -> np.ndarray:
    out = np.zeros((len(preds), k), np.float32)
    out[np.arange(len(preds)), preds] = 5.0
    return out


def test_accuracy_with_a_class_never_predicted():
    labels = np.array([0, 0, 1, 1, 2, 2])
    s = accuracy_summary(_logits_for([0, 1, 1, 1, 0, 0]), labels, NAMES)
    assert s["accuracy"] == pytest.approx(3 / 6)
    assert s["per_class_accuracy"] == pytest.approx([0.5, 1.0, 0.0])
    assert s["mean_class_accuracy"] == pytest.approx(0.5)
    assert s["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [2, 0, 0]]


def test_compare_to_fabricated_reference():
    labels = np.array([0, 0, 1, 1, 2, 2])
    ref = Reference(
        ids=[f"i{k}" for k in range(6)], labels=labels, logits=_logits_for([0, 0, 1, 1, 2, 0]), class_names=NAMES
    )
    c = compare_to_reference(_logits_for([0, 1, 1, 1, 0, 0]), labels, ref, NAMES)
    assert c["reference_accuracy"] == pytest.approx(5 / 6)
    assert c["agreement"] == pytest.approx(4 / 6)
    assert c["delta_pts"] == pytest.approx((3 / 6 - 5 / 6) * 100)
    assert c["per_class_delta_pts"] == pytest.approx([-50.0, 0.0, -50.0])
    assert c["worst_class_delta_pts"] == pytest.approx(-50.0)
    assert c["worst_class"] == "A"  # first of the tied worst classes
    assert c["delta_mean_class_pts"] == pytest.approx((0.5 - (1 + 1 + 0.5) / 3) * 100)


def test_class_without_samples_has_no_delta():
    labels = np.array([0, 0, 1])  # class C has no samples
    ref = Reference(ids=["a", "b", "c"], labels=labels, logits=_logits_for([0, 1, 1]), class_names=NAMES)
    c = compare_to_reference(_logits_for([0, 0, 1]), labels, ref, NAMES)
    assert c["per_class_delta_pts"][2] is None
    assert c["per_class_delta_pts"][0] == pytest.approx(50.0)
    assert c["worst_class_delta_pts"] == pytest.approx(0.0) and c["worst_class"] == "B"


def test_reference_mismatches_are_errors():
    labels = np.array([0, 1])
    ref = Reference(ids=["a", "b"], labels=labels, logits=_logits_for([0, 1]), class_names=NAMES)
    with pytest.raises(EdgeferError, match="another split"):
        compare_to_reference(_logits_for([0, 1, 1]), np.array([0, 1, 1]), ref, NAMES)
    with pytest.raises(EdgeferError, match="classes"):
        compare_to_reference(_logits_for([0, 1]), labels, ref, ("X", "Y", "Z"))


def test_kl_and_probability_deviation_hand_computed():
    ref = np.array([[0.0, 0.0]])
    model = np.array([[math.log(3.0), 0.0]])  # softmax -> (0.75, 0.25)
    d = probability_divergence(model, ref)
    assert d["mean_kl"] == pytest.approx(0.5 * math.log(4 / 3), rel=1e-9)
    assert d["max_prob_dev"] == pytest.approx(0.25)
    same = probability_divergence(ref, ref)
    assert same["mean_kl"] == 0.0 and same["max_prob_dev"] == 0.0


def test_percentile_linear_interpolation():
    x = [4.0, 1.0, 3.0, 2.0]
    assert percentile(x, 50) == pytest.approx(2.5)
    assert percentile(x, 90) == pytest.approx(3.7)
    assert percentile(x, 99) == pytest.approx(3.97)
    assert percentile(x, 0) == 1.0 and percentile(x, 100) == 4.0
    rng = np.random.default_rng(0).random(101)
    assert percentile(rng, 37) == pytest.approx(np.percentile(rng, 37))
    with pytest.raises(EdgeferError):
        percentile([], 50)


def test_latency_stats_in_ms_and_fps():
    s = latency_stats([0.001, 0.002, 0.003, 0.004], batch_size=8)
    assert s["mean_ms"] == pytest.approx(2.5)
    assert s["p50_ms"] == pytest.approx(2.5)
    assert s["p99_ms"] == pytest.approx(3.97)
    assert s["fps"] == pytest.approx(8 / 0.0025)
    assert s["std_ms"] == pytest.approx(np.std([1, 2, 3, 4], ddof=1))


def test_gate_parse_and_check():
    g = Gate.parse("max-drop=0.5,max-class-drop=1.0,min-agreement=0.98")
    assert (g.max_drop, g.max_class_drop, g.min_agreement) == (0.5, 1.0, 0.98)
    assert g.class_alpha == 0.05  # the per-class rule's default significance level

    def fear(lost: int, gained: int) -> list[dict]:
        return [{"class": "Fear", "images": 200, "lost": lost, "gained": gained}]

    good = {
        "label": "m",
        "status": "ok",
        "accuracy": {"delta_pts": -0.4, "agreement": 0.99, "per_class_changes": fear(lost=2, gained=1)},
    }
    assert g.check(good) == []
    bad = {
        "label": "int8",
        "status": "ok",
        "accuracy": {"delta_pts": -0.2, "agreement": 0.99, "per_class_changes": fear(lost=7, gained=0)},
    }
    (msg,) = g.check(bad)
    assert "int8" in msg and "Fear" in msg and "3.50" in msg
    assert g.check({"label": "x", "status": "error: boom"}) == ["x: did not run (error: boom)"]
    assert "unknown" in g.check({"label": "x", "status": "ok", "accuracy": {"delta_pts": None}})[0]
    for text in ("max-drop", "speed=3", "max-drop=abc", "min-agreement=98", ""):
        with pytest.raises(EdgeferError):
            Gate.parse(text)
    assert Gate.from_value({"max-drop": 1}) == Gate(max_drop=1.0)


def test_pareto_front():
    pts = [(1.0, 80.0), (2.0, 85.0), (2.5, 84.0), (3.0, 90.0), (0.5, 70.0), (1.0, 75.0)]
    assert pareto_front(pts) == [4, 0, 1, 3]
