"""The seven expression classes in RAF-DB's canonical order, and mappings from other datasets.

Every model, checkpoint, artifact and report in edgefer uses this order. RAF-DB's label file
numbers the classes 1..7 in this order; FER2013 uses another order, and image folders use
names. All three are mapped here and nowhere else.
"""

from __future__ import annotations

from edgefer.errors import DatasetError

#: Canonical class order (RAF-DB basic emotions, labels 1..7 in ``list_patition_label.txt``).
CLASS_NAMES: tuple[str, ...] = ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral")
NUM_CLASSES = len(CLASS_NAMES)

#: FER2013 ``emotion`` column: 0 Angry, 1 Disgust, 2 Fear, 3 Happy, 4 Sad, 5 Surprise, 6 Neutral.
FER2013_NAMES: tuple[str, ...] = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")

_ALIASES: dict[str, str] = {
    "surprise": "Surprise",
    "surprised": "Surprise",
    "surprising": "Surprise",
    "fear": "Fear",
    "fearful": "Fear",
    "afraid": "Fear",
    "scared": "Fear",
    "disgust": "Disgust",
    "disgusted": "Disgust",
    "happiness": "Happiness",
    "happy": "Happiness",
    "joy": "Happiness",
    "sadness": "Sadness",
    "sad": "Sadness",
    "anger": "Anger",
    "angry": "Anger",
    "neutral": "Neutral",
    "calm": "Neutral",
}

#: FER2013 index -> canonical index.
FER2013_TO_CANONICAL: tuple[int, ...] = tuple(CLASS_NAMES.index(_ALIASES[n.lower()]) for n in FER2013_NAMES)


def class_index(name: str) -> int:
    """Canonical index of a class given by any common spelling (case-insensitive).

    >>> class_index("angry"), class_index("Happiness"), class_index("SURPRISED")
    (5, 3, 0)
    """
    key = name.strip().lower()
    if key not in _ALIASES:
        known = ", ".join(sorted(_ALIASES))
        raise DatasetError(f"unknown expression class name {name!r}; known names: {known}")
    return CLASS_NAMES.index(_ALIASES[key])


def rafdb_label_to_index(label: int | str) -> int:
    """RAF-DB's 1-based label (1 Surprise .. 7 Neutral) to the canonical 0-based index."""
    try:
        value = int(label)
    except (TypeError, ValueError):
        raise DatasetError(f"RAF-DB label {label!r} is not a number 1..7") from None
    if not 1 <= value <= NUM_CLASSES:
        raise DatasetError(f"RAF-DB label {value} is out of range 1..{NUM_CLASSES}")
    return value - 1


def fer2013_label_to_index(label: int | str) -> int:
    """FER2013's ``emotion`` value (0 Angry .. 6 Neutral) to the canonical index."""
    try:
        value = int(label)
    except (TypeError, ValueError):
        raise DatasetError(f"FER2013 emotion {label!r} is not a number 0..6") from None
    if not 0 <= value < len(FER2013_TO_CANONICAL):
        raise DatasetError(f"FER2013 emotion {value} is out of range 0..6")
    return FER2013_TO_CANONICAL[value]
