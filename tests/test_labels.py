"""Canonical class order and the mappings from FER2013 and folder names."""

from __future__ import annotations

import pytest

from edgefer.errors import DatasetError
from edgefer.labels import (
    CLASS_NAMES,
    FER2013_NAMES,
    FER2013_TO_CANONICAL,
    NUM_CLASSES,
    class_index,
    fer2013_label_to_index,
    rafdb_label_to_index,
)


def test_canonical_order_is_rafdb() -> None:
    assert CLASS_NAMES == ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral")
    assert NUM_CLASSES == 7


def test_rafdb_labels_are_one_based() -> None:
    assert [rafdb_label_to_index(i) for i in range(1, 8)] == list(range(7))
    assert rafdb_label_to_index("4") == CLASS_NAMES.index("Happiness")
    for bad in (0, 8, "x", None, "4.5"):
        with pytest.raises(DatasetError):
            rafdb_label_to_index(bad)


def test_fer2013_order_maps_by_meaning() -> None:
    assert FER2013_NAMES == ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")
    expected = ["Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Neutral"]
    assert [CLASS_NAMES[FER2013_TO_CANONICAL[i]] for i in range(7)] == expected
    assert [fer2013_label_to_index(i) for i in range(7)] == [5, 2, 1, 3, 4, 0, 6]
    assert fer2013_label_to_index("0") == 5
    assert sorted(FER2013_TO_CANONICAL) == list(range(7))  # a permutation
    for bad in (-1, 7, "angry"):
        with pytest.raises(DatasetError):
            fer2013_label_to_index(bad)


@pytest.mark.parametrize(
    ("names", "canonical"),
    [
        (("angry", "anger", "ANGRY", " Anger "), "Anger"),
        (("happy", "happiness", "Happy"), "Happiness"),
        (("sad", "sadness", "SAD"), "Sadness"),
        (("surprised", "surprise", "Surprised"), "Surprise"),
        (("fearful", "fear", "Fear"), "Fear"),
        (("disgusted", "disgust", "DISGUST"), "Disgust"),
        (("neutral", "Neutral"), "Neutral"),
    ],
)
def test_folder_aliases_are_case_insensitive(names: tuple[str, ...], canonical: str) -> None:
    for name in names:
        assert class_index(name) == CLASS_NAMES.index(canonical)


def test_unknown_class_name_lists_known_names() -> None:
    with pytest.raises(DatasetError, match=r"unknown expression class name 'contempt'.*happy"):
        class_index("contempt")
