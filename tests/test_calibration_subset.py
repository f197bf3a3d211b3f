"""Class-balanced calibration subsets (``--balanced-calib``): even, deterministic, within the split."""

from __future__ import annotations

import numpy as np

from edgefer.data.calibration import select_balanced


def test_balanced_subset_takes_each_class_evenly() -> None:
    labels = np.array([0] * 90 + [1] * 10 + [2] * 5)
    idx = select_balanced(labels, 15, seed=0)
    assert np.bincount(labels[idx]).tolist() == [5, 5, 5]
    assert idx.tolist() == sorted(set(idx.tolist()))  # sorted, no image twice
    assert np.array_equal(idx, select_balanced(labels, 15, seed=0))  # deterministic
    assert not np.array_equal(idx, select_balanced(labels, 15, seed=1))


def test_a_small_class_gives_all_it_has_and_the_others_fill_its_share() -> None:
    labels = np.array([0] * 90 + [1] * 40 + [2] * 2)
    counts = np.bincount(labels[select_balanced(labels, 30)]).tolist()
    assert counts[2] == 2 and sum(counts) == 30 and abs(counts[0] - counts[1]) <= 1
    assert len(select_balanced(labels, None)) == len(labels) == len(select_balanced(labels, 500))
