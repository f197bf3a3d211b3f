"""FP32 reference predictions from the exported ONNX (``edgefer export --data``).

The reference is computed from the *exported FP32 ONNX* on ONNX Runtime, not from PyTorch: it is
the artifact every INT8/FP16 model is derived from, so "agreement with the reference" measures
exactly what quantization and the target backend changed. Images are decoded by
:func:`edgefer.bench.evalset.load_evalset`, preprocessed with the preprocessing stored in the ONNX
itself and run by :func:`edgefer.bench.evalset.infer_all`: the benchmark's own path, so a
reference and a benchmark row of the same artifact are the same numbers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from edgefer.errors import EdgeferError, ExportError
from edgefer.reference import Reference
from edgefer.utils.io import sha256_file


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

    The logits are in the *dataset's* class order (the model's outputs matched by name, extra
    model classes left out, probabilities as log-probabilities), so a model whose classes are in
    FER2013's order is compared by name downstream.

    ``reference.metadata`` is the ONNX's :class:`ModelMetadata` as a dict plus ``dataset``
    (path, format, split, size) and ``artifact`` (file name and sha256 of the ONNX).
    """
    from edgefer.backends import open_model
    from edgefer.bench.evalset import infer_all, load_evalset

    onnx_path = Path(onnx_path)
    if batch_size < 1:
        raise ExportError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(data, (str, os.PathLike)) and not Path(data).exists():
        raise ExportError(f"reference dataset {data} does not exist")
    with open_model(onnx_path, device="cpu") as backend:
        meta = backend.metadata
        assert meta is not None  # Backend guarantees it
        if meta.precision != "fp32":
            raise ExportError(f"reference predictions come from the FP32 model; {onnx_path.name} is {meta.precision}")
        # the benchmark's own images and inference loop: each readable image once (an unreadable one
        # is skipped, not replaced by a neighbour), a short last batch padded for static batches
        evalset = load_evalset(
            data,
            split,
            progress=progress,
            allow_missing_classes=allow_missing_classes,
            purpose="compute reference predictions",
        )
        # classes matched by name: the reference holds logits in the dataset's class order
        names = evalset.class_names
        logits = meta.dataset_logits(infer_all(backend, evalset, batch_size), names)
    ids, labels, dataset = evalset.ids, [int(v) for v in evalset.labels], evalset.dataset
    n_cls = len(names)
    if any(not 0 <= lab < n_cls for lab in labels):
        raise EdgeferError(f"dataset labels fall outside the dataset's {n_cls} classes")
    info = meta.to_dict()
    note = meta.class_map(names).note
    if note:
        info["class_note"] = note
    info["dataset"] = {
        "path": str(getattr(dataset, "root", None) or data),
        "format": getattr(dataset, "format", None),
        "split": split,
        "size": len(ids),
        "skipped": evalset.skipped,
    }
    info["artifact"] = {"file": onnx_path.name, "sha256": sha256_file(onnx_path), "backend": "onnxruntime"}
    ref = Reference(
        ids=np.asarray(ids),
        labels=np.asarray(labels),
        logits=logits,
        class_names=names,
        metadata=info,
    )
    if out is not None:
        ref.save(out)
    return ref
