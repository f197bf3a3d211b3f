"""FP32 reference predictions: the yardstick every deployed model is measured against.

``reference.npz`` holds, for each test image in evaluation order, its id, its label and the FP32
model's logits, plus the class names and the metadata of the model that produced them. It is
written once by ``edgefer export --data`` and read by the benchmark on any device, so a
Jetson never needs PyTorch or the checkpoint to know whether INT8 broke the model.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgefer.errors import EdgeferError
from edgefer.utils.io import atomic_path

REFERENCE_SCHEMA = 1


@dataclass
class Reference:
    ids: np.ndarray  # (N,) str
    labels: np.ndarray  # (N,) int64, canonical indices
    logits: np.ndarray  # (N, C) float32
    class_names: tuple[str, ...]
    metadata: dict = field(default_factory=dict)  # ModelMetadata.to_dict() of the FP32 model, dataset info

    def __post_init__(self) -> None:
        self.ids = np.asarray(self.ids).astype(str)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.logits = np.asarray(self.logits, dtype=np.float32)
        self.class_names = tuple(self.class_names)
        n = len(self.ids)
        if self.labels.shape != (n,) or self.logits.ndim != 2 or self.logits.shape[0] != n:
            raise EdgeferError(
                f"inconsistent reference: {n} ids, labels {self.labels.shape}, logits {self.logits.shape}"
            )
        if self.logits.shape[1] != len(self.class_names):
            raise EdgeferError(
                f"reference logits have {self.logits.shape[1]} classes but {len(self.class_names)} names"
            )

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def predictions(self) -> np.ndarray:
        return self.logits.argmax(axis=1)

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(
                fh,
                schema=np.int64(REFERENCE_SCHEMA),
                ids=self.ids,
                labels=self.labels,
                logits=self.logits,
                class_names=np.asarray(self.class_names),
                metadata=np.asarray(json.dumps(self.metadata, default=str)),
            )
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Reference:
        path = Path(path)
        if not path.exists():
            raise EdgeferError(f"reference file {path} does not exist (make it with `edgefer export --data`)")
        try:
            with np.load(path, allow_pickle=False) as z:
                schema = int(z["schema"])
                if schema > REFERENCE_SCHEMA:
                    raise EdgeferError(f"reference schema {schema} is newer than this edgefer ({REFERENCE_SCHEMA})")
                return cls(
                    ids=z["ids"],
                    labels=z["labels"],
                    logits=z["logits"],
                    class_names=tuple(str(c) for c in z["class_names"]),
                    metadata=json.loads(str(z["metadata"])),
                )
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise EdgeferError(f"{path} is not a valid edgefer reference file: {exc}") from exc
