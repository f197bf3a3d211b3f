"""The statistical per-class gate: exact one-sided McNemar p-values, image counts, and the rule that a
class fails only when its drop exceeds ``max-class-drop`` *and* is significant at ``class-alpha``."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgefer.bench.gate import Gate
from edgefer.bench.metrics import (
    _upper_tail_half_exact,
    _upper_tail_half_log,
    binomial_upper_tail_half,
    compare_to_reference,
    mcnemar_drop_p,
    per_class_changes,
)
from edgefer.bench.report import per_class_table, to_markdown
from edgefer.errors import EdgeferError
from edgefer.reference import Reference

NAMES = ("Happiness", "Fear")


@pytest.mark.parametrize(
    ("lost", "gained", "expected"),
    [
        (0, 0, 1.0),  # no discordant image: no evidence at all
        (1, 0, 0.5),  # one flip: a coin toss
        (2, 1, 0.5),  # P(X >= 2 | n=3) = (3 + 1) / 8
        (6, 0, 1 / 64),
        (5, 1, 7 / 64),  # P(X >= 5 | n=6) = (6 + 1) / 64
        (10, 2, 79 / 4096),  # (C(12,10) + C(12,11) + C(12,12)) / 2^12 = (66 + 12 + 1) / 4096
        (0, 5, 1.0),  # only gains: no evidence of a drop
        (20, 0, 2.0**-20),
    ],
)
def test_mcnemar_one_sided_p_hand_computed(lost: int, gained: int, expected: float) -> None:
    assert mcnemar_drop_p(lost, gained) == pytest.approx(expected, rel=1e-12, abs=0)


def test_binomial_tail_paths_agree_and_edges() -> None:
    for k, n in ((1600, 3000), (1500, 3000), (1700, 3000), (3, 40)):
        assert _upper_tail_half_log(k, n) == pytest.approx(_upper_tail_half_exact(k, n), rel=1e-9)
    # above the exact limit: for odd n, P(X >= (n + 1) / 2) is exactly 1/2 by symmetry
    assert binomial_upper_tail_half(5001, 10001) == pytest.approx(0.5, rel=1e-9)
    assert binomial_upper_tail_half(0, 10) == 1.0 and binomial_upper_tail_half(11, 10) == 0.0
    assert binomial_upper_tail_half(10, 10) == 2.0**-10
    with pytest.raises(EdgeferError):
        mcnemar_drop_p(-1, 2)


def _paired(sizes: dict[int, tuple[int, int, int, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """labels, reference predictions, model predictions for classes {i: (images, both right, lost, gained)}.

    Per class: ``both`` images right in both, ``lost`` right in the reference only, ``gained`` right in
    the model only, the rest wrong in both (a wrong prediction is the other class)."""
    labels, ref, model = [], [], []
    for cls, (n, both, lost, gained) in sizes.items():
        wrong = 1 - cls
        neither = n - both - lost - gained
        assert neither >= 0
        labels += [cls] * n
        ref += [cls] * (both + lost) + [wrong] * (gained + neither)
        model += [cls] * both + [wrong] * lost + [cls] * gained + [wrong] * neither
    return np.array(labels), np.array(ref), np.array(model)


def _row(sizes: dict[int, tuple[int, int, int, int]], label: str = "int8") -> dict:
    labels, ref_preds, preds = _paired(sizes)
    eye = np.eye(len(NAMES), dtype=np.float32) * 5
    ref = Reference(ids=[f"i{k}" for k in range(len(labels))], labels=labels, logits=eye[ref_preds], class_names=NAMES)
    return {"label": label, "status": "ok", "accuracy": compare_to_reference(eye[preds], labels, ref, NAMES)}


def test_per_class_changes_counts() -> None:
    labels, ref_preds, preds = _paired({0: (100, 80, 3, 5), 1: (22, 14, 2, 1)})
    happy, fear = per_class_changes(labels, preds, ref_preds, NAMES)
    assert happy == {
        "class": "Happiness",
        "images": 100,
        "reference_correct": 83,
        "correct": 85,
        "lost": 3,
        "gained": 5,
        "net_images": 2,
        "delta_pts": pytest.approx(2.0),
        "p_drop": pytest.approx(0.85546875),
    }
    assert (fear["images"], fear["reference_correct"], fear["correct"], fear["net_images"]) == (22, 16, 15, -1)
    assert fear["delta_pts"] == pytest.approx(-100 / 22)
    assert fear["p_drop"] == pytest.approx(0.5)  # P(X >= 2 | n=3)


def test_compare_to_reference_reports_counts() -> None:
    acc = _row({0: (200, 150, 0, 0), 1: (22, 15, 1, 0)})["accuracy"]
    assert acc["worst_class"] == "Fear" and acc["worst_class_net_images"] == -1
    assert [c["class"] for c in acc["per_class_changes"]] == list(NAMES)
    assert acc["per_class_changes"][1]["delta_pts"] == pytest.approx(acc["per_class_delta_pts"][1])


def test_one_flipped_image_of_a_small_class_passes() -> None:
    row = _row({0: (500, 400, 0, 0), 1: (22, 15, 1, 0)})  # Fear: -1 image = -4.5 pt, p = 0.5
    assert row["accuracy"]["worst_class_delta_pts"] == pytest.approx(-100 / 22)
    assert Gate.parse("max-class-drop=1.0").check(row) == []
    # the points-only rule (class-alpha=1) would have failed it: the test is what passes it
    (msg,) = Gate.parse("max-class-drop=1.0,class-alpha=1").check(row)
    assert "Fear" in msg


def test_a_real_regression_of_a_small_class_fails() -> None:
    row = _row({0: (500, 400, 0, 0), 1: (22, 15, 6, 0)})  # Fear: 6 of 22 lost, none gained, p = 1/64
    (msg,) = Gate.parse("max-drop=100,max-class-drop=1.0,min-agreement=0").check(row)
    assert msg.startswith("int8: class Fear dropped 27.27 pts") and "-6 of 22 images" in msg
    assert "p=0.016" in msg and "class-alpha 0.05" in msg
    # at a stricter level the same evidence is not enough
    assert Gate.parse("max-class-drop=1.0,class-alpha=0.01").check(row) == []


def test_a_large_class_with_a_small_significant_drop_beyond_tolerance_fails() -> None:
    row = _row({0: (1000, 800, 20, 0), 1: (22, 15, 0, 0)})  # Happiness: -20 of 1000 = -2 pt, p = 2^-20
    (msg,) = Gate.parse("max-class-drop=1.0").check(row)
    assert "class Happiness dropped 2.00 pts" in msg
    # significant but within tolerance (-8 of 1000 = -0.8 pt, p = 1/256): passes
    assert Gate.parse("max-class-drop=1.0").check(_row({0: (1000, 800, 8, 0), 1: (22, 15, 0, 0)})) == []
    # beyond tolerance but not significant (lost 30, gained 18: -1.2 pt, p ~ 0.06): passes
    mixed = _row({0: (1000, 800, 30, 18), 1: (22, 15, 0, 0)})
    assert mcnemar_drop_p(30, 18) > 0.05
    assert Gate.parse("max-class-drop=1.0").check(mixed) == []


def test_every_class_is_judged_not_only_the_worst() -> None:
    # Fear has the larger (insignificant) drop, Happiness the significant one
    row = _row({0: (1000, 800, 20, 0), 1: (22, 15, 1, 0)})
    assert row["accuracy"]["worst_class"] == "Fear"
    (msg,) = Gate.parse("max-class-drop=1.0").check(row)
    assert "Happiness" in msg


def test_gate_parse_class_alpha_and_errors() -> None:
    g = Gate.parse("max-drop=0.5,max-class-drop=1.0,class-alpha=0.01")
    assert (g.max_class_drop, g.class_alpha) == (1.0, 0.01)
    assert str(g) == "max-drop=0.5,max-class-drop=1,class-alpha=0.01"
    assert Gate.from_value(g.to_dict()) == g  # a report's gate dict parses back to the same rule
    assert Gate.parse("max-class-drop=2").to_dict() == {"max-class-drop": 2.0, "class-alpha": 0.05}
    assert Gate.parse("max-drop=1").class_alpha is None
    bad = {
        "class-alpha=0.05": "only applies with max-class-drop",
        "max-class-drop=1,class-alpha=0": "significance level",
        "max-class-drop=1,class-alpha=1.5": "significance level",
        "max-class-drop=1,class-alpha=abc": "needs a number",
        "max-class-drop=1,class-alpha=-0.1": "non-negative",
        "max-class-drop=1,class-alfa=0.1": "bad gate term",
        "max-class-drop=1,max-class-drop=2": "given twice",
        "max-class-drop=nan": "non-negative",
    }
    for text, match in bad.items():
        with pytest.raises(EdgeferError, match=match):
            Gate.parse(text)


def test_report_shows_images_next_to_points() -> None:
    row = _row({0: (500, 400, 0, 0), 1: (22, 15, 1, 0)})
    row.update(backend="onnxruntime", precision="int8", device="cpu", size_mb=1.0, latency={})
    gate = Gate.parse("max-class-drop=1.0")
    d = {
        "schema": 1,
        "kind": "edgefer-benchmark",
        "edgefer_version": "x",
        "created": "now",
        "machine": {},
        "settings": {
            "data": "synthetic",
            "split": "test",
            "images": 522,
            "batches": [1],
            "warmup": 0,
            "iters": 1,
            "device": "cpu",
        },
        "reference": None,
        "gate": gate.to_dict(),
        "gate_passed": True,
        "gate_failures": gate.check(row),
        "notes": [],
        "rows": [row],
    }
    table = per_class_table(d)
    assert "Fear (22 images)" in table and "| FP32 reference (correct) | 400 | 16 |" in table
    assert "| 15: -1 img (-4.55 pt, p=0.5) |" in table
    md = to_markdown(d)
    assert "-4.55 (Fear, -1 img)" in md  # the worst-class column carries the image count
    assert "class-alpha=0.05" in md and "PASSED" in md
    assert math.isclose(row["accuracy"]["per_class_changes"][1]["p_drop"], 0.5)


#: discordant counts for the SciPy cross-check: none, a few, and both sides of the exact/log switch
_DISCORDANT = (0, 1, 2, 3, 7, 25, 100, 1000, 4990, 5000, 5001, 6000, 20000)


def test_mcnemar_tail_matches_scipy_binomtest() -> None:
    """The one-sided McNemar p equals SciPy's exact binomial test P(X >= lost), X ~ Bin(lost + gained, 1/2),
    over a grid of lost/gained counts that includes 0 and n far above the exact-integer limit."""
    stats = pytest.importorskip("scipy.stats")
    for lost in _DISCORDANT:
        for gained in _DISCORDANT:
            ours = mcnemar_drop_p(lost, gained)
            if lost + gained == 0:  # SciPy needs n >= 1; no discordant image is no evidence
                assert ours == 1.0
                continue
            theirs = stats.binomtest(lost, lost + gained, 0.5, alternative="greater").pvalue
            assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-300), (lost, gained)
