"""The seven expression classes in RAF-DB's canonical order, and mappings from other datasets.

Every model, checkpoint, artifact and report in edgefer uses this order. RAF-DB's label file
numbers the classes 1..7 in this order; FER2013 uses another order, and image folders use
names. All three are mapped here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

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
    "contempt": "Contempt",
    "contemptuous": "Contempt",
}

#: Classes a model may predict beyond RAF-DB's seven (AffectNet's eighth); no edgefer dataset has them.
EXTRA_CLASS_NAMES: tuple[str, ...] = ("Contempt",)
#: Every canonical class name a model's outputs may carry.
KNOWN_CLASS_NAMES: tuple[str, ...] = CLASS_NAMES + EXTRA_CLASS_NAMES

#: FER2013 index -> canonical index.
FER2013_TO_CANONICAL: tuple[int, ...] = tuple(CLASS_NAMES.index(_ALIASES[n.lower()]) for n in FER2013_NAMES)


def canonical_name(name: str) -> str:
    """The canonical name (one of :data:`KNOWN_CLASS_NAMES`) of a class given by any common spelling.

    >>> canonical_name("angry"), canonical_name("HAPPY"), canonical_name("contempt")
    ('Anger', 'Happiness', 'Contempt')
    """
    key = str(name).strip().lower()
    if key not in _ALIASES:
        raise DatasetError(
            f"unknown expression class name {name!r}; edgefer knows {', '.join(KNOWN_CLASS_NAMES)} "
            f"(also spelt {', '.join(sorted(k for k in _ALIASES if k not in {n.lower() for n in KNOWN_CLASS_NAMES}))})"
        )
    return _ALIASES[key]


def class_index(name: str) -> int:
    """Canonical index of a class given by any common spelling (case-insensitive).

    >>> class_index("angry"), class_index("Happiness"), class_index("SURPRISED")
    (5, 3, 0)
    """
    key = name.strip().lower()
    if _ALIASES.get(key) not in CLASS_NAMES:
        known = ", ".join(sorted(k for k, v in _ALIASES.items() if v in CLASS_NAMES))
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


#: The output kinds a model may have: raw scores, or probabilities (a final Softmax inside the model).
OUTPUT_KINDS = ("logits", "probabilities")


def as_logits(scores: np.ndarray, outputs: str = "logits") -> np.ndarray:
    """A model's outputs as logits: probabilities become log-probabilities (``softmax(log p) = p``),
    so nothing downstream softmaxes a softmax; logits are returned as they are."""
    scores = np.asarray(scores, dtype=np.float32)
    if outputs == "probabilities":
        return np.log(np.clip(scores, 1e-12, None)).astype(np.float32)
    return scores


@dataclass(frozen=True)
class ClassMap:
    """Where each class of a dataset is among a model's outputs: classes are matched by name.

    ``columns[i]`` is the model output of ``dataset_names[i]``; calling the map on (N, model
    classes) scores gives (N, dataset classes) scores in the dataset's order, so labels, the FP32
    reference, the gate and the per-class tables all speak the dataset's order. Model classes the
    dataset lacks (AffectNet's Contempt on RAF-DB) are left out: the model is scored on the shared
    classes (:attr:`note` says so).
    """

    model_names: tuple[str, ...]
    dataset_names: tuple[str, ...]
    columns: tuple[int, ...]

    @property
    def identity(self) -> bool:
        return self.columns == tuple(range(len(self.model_names)))

    @property
    def extra(self) -> tuple[str, ...]:
        """Model classes no dataset class maps to (ignored when scoring)."""
        return tuple(canonical_name(n) for i, n in enumerate(self.model_names) if i not in self.columns)

    @property
    def note(self) -> str | None:
        """One line for reports when the model is not scored on all of its classes, else None."""
        if not self.extra:
            return None
        return (
            f"the model predicts {len(self.model_names)} classes; scored on the {len(self.columns)} it shares with "
            f"the dataset ({', '.join(self.extra)} ignored)"
        )

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores, dtype=np.float32)
        if scores.ndim != 2 or scores.shape[1] != len(self.model_names):
            raise DatasetError(
                f"model outputs of shape {tuple(scores.shape)} do not match its {len(self.model_names)} class names"
            )
        return scores if self.identity else np.ascontiguousarray(scores[:, list(self.columns)])

    @classmethod
    def identity_of(cls, names: Sequence[str]) -> ClassMap:
        """The map of a model onto data with its own classes in its own order."""
        names = tuple(names)
        return cls(names, names, tuple(range(len(names))))


def class_map(model_names: Sequence[str], dataset_names: Sequence[str] = CLASS_NAMES) -> ClassMap:
    """Match a dataset's classes to a model's outputs by name (any spelling :func:`canonical_name`
    knows). A dataset class the model does not predict is a :class:`DatasetError` naming it."""
    model = tuple(model_names)
    data = tuple(dataset_names)
    index = {}
    for i, name in enumerate(model):
        key = canonical_name(name)
        if key in index:
            raise DatasetError(f"the model names class {key} twice ({model[index[key]]!r} and {name!r})")
        index[key] = i
    missing = [n for n in data if canonical_name(n) not in index]
    if missing:
        raise DatasetError(
            f"the model predicts {len(model)} classes ({', '.join(model)}) but not the dataset's "
            f"{', '.join(missing)}: evaluate it on data with its own classes"
        )
    return ClassMap(model, data, tuple(index[canonical_name(n)] for n in data))
