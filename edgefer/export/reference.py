"""FP32 reference predictions from the exported ONNX (``edgefer export --reference-data``).

The reference is computed from the *exported FP32 ONNX* on ONNX Runtime, not from PyTorch: it is
the artifact every INT8/FP16 model is derived from, so "agreement with the reference" measures
exactly what quantization and the target backend changed. Images are read with
:func:`edgefer.data.open_dataset` and preprocessed by :func:`edgefer.preprocess.preprocess_batch`
with the preprocessing stored in the ONNX itself (the same path the benchmark takes).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from edgefer.data.base import batched, iter_readable
from edgefer.errors import EdgeferError, ExportError
from edgefer.preprocess import preprocess_batch
from edgefer.reference import Reference
from edgefer.utils.io import sha256_file


def _open_split(data: Any, split: str, allow_missing_classes: bool = False) -> Any:
    if not isinstance(data, (str, os.PathLike)):
        return data  # an already opened dataset
    from edgefer.data import open_dataset

    path = Path(data)
    if not path.exists():
        raise ExportError(f"reference dataset {path} does not exist")
    return open_dataset(path, split, allow_missing_classes=allow_missing_classes)


def _progress(enabled: bool, total: int, label: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    prog = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=True,
    )
    return prog, prog.add_task(label, total=total)


def make_reference(
    onnx_path: str | os.PathLike,
    data: Any,
    split: str = "test",
    out: str | os.PathLike | None = None,
    batch_size: int = 32,
    progress: bool = True,
    allow_missing_classes: bool = False,
) -> Reference:
    """Run the FP32 ONNX over ``split`` of ``data`` (a dataset path or an open dataset) and return
    the :class:`Reference`; saved atomically to ``out`` when given (usually ``reference.npz``).

    ``reference.metadata`` is the ONNX's :class:`ModelMetadata` as a dict plus ``dataset``
    (path, format, split, size) and ``artifact`` (file name and sha256 of the ONNX).
    """
    from edgefer.backends import open_model

    onnx_path = Path(onnx_path)
    if batch_size < 1:
        raise ExportError(f"batch_size must be >= 1, got {batch_size}")
    dataset = _open_split(data, split, allow_missing_classes)
    n = len(dataset)
    if n == 0:
        raise ExportError(f"the {split!r} split of {data} is empty: nothing to compute reference predictions on")
    with open_model(onnx_path, device="cpu") as backend:
        meta = backend.metadata
        assert meta is not None  # Backend guarantees it
        if meta.precision != "fp32":
            raise ExportError(f"reference predictions come from the FP32 model; {onnx_path.name} is {meta.precision}")
        step = min(batch_size, backend.max_batch or batch_size)
        pp = meta.preprocessing
        ids: list[str] = []
        labels: list[int] = []
        logits: list[np.ndarray] = []
        prog, task = _progress(progress, n, f"reference ({split})")
        with prog:
            # each readable image once: an unreadable one is skipped, not replaced by a neighbour
            for samples in batched((s for _, s in iter_readable(dataset)), step):
                x = preprocess_batch([s.image for s in samples], pp)
                if backend.max_batch is not None and x.shape[0] != backend.max_batch:
                    x = _pad(x, backend.max_batch)
                out_logits = backend.infer(x)[: len(samples)]
                logits.append(out_logits)
                ids.extend(str(s.id) for s in samples)
                labels.extend(int(s.label) for s in samples)
                prog.advance(task, len(samples))
    if not ids:
        raise ExportError(
            f"no readable image in the {split!r} split of {data}: nothing to compute reference predictions on"
        )
    n_cls = meta.num_classes
    if any(not 0 <= lab < n_cls for lab in labels):
        raise EdgeferError(f"dataset labels fall outside the model's {n_cls} classes")
    info = meta.to_dict()
    info["dataset"] = {
        "path": str(getattr(dataset, "root", None) or data),
        "format": getattr(dataset, "format", None),
        "split": split,
        "size": len(ids),
        "skipped": int(getattr(dataset, "skipped", 0) or 0),
    }
    info["artifact"] = {"file": onnx_path.name, "sha256": sha256_file(onnx_path), "backend": "onnxruntime"}
    ref = Reference(
        ids=np.asarray(ids),
        labels=np.asarray(labels),
        logits=np.concatenate(logits),
        class_names=meta.class_names,
        metadata=info,
    )
    if out is not None:
        ref.save(out)
    return ref


def _pad(x: np.ndarray, batch: int) -> np.ndarray:
    """Pad a short last batch to a static batch size by repeating the last image."""
    if x.shape[0] == batch:
        return x
    return np.concatenate([x, np.repeat(x[-1:], batch - x.shape[0], axis=0)])
