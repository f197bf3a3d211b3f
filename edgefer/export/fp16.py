"""FP32 ONNX -> FP16 ONNX with FP32 inputs and outputs.

Why an FP16 *file*: TensorRT 11 removed ``BuilderFlag.FP16``; a strongly typed network runs each
layer in the type the ONNX gives it, so FP16 inference means an FP16 graph. The same file runs on
ONNX Runtime on the CPU, so the numerics TensorRT will execute are scored against the FP32
reference here, before any Jetson is involved. Inputs and outputs stay FP32 (``keep_io_types``):
the runtime and the benchmark feed the same float32 batch to every artifact.

The conversion is ONNX Runtime's own ``convert_float_to_float16`` (shipped in the ``onnxruntime``
wheel), which keeps ops that are unsafe or unsupported in FP16 (e.g. ``Resize`` scales, ``Range``)
in FP32 behind Cast nodes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from edgefer.errors import ExportError, require
from edgefer.export.onnx import _tmp_dir, check_onnx, ort_session
from edgefer.export.source import require_fp32
from edgefer.metadata import ModelMetadata, set_onnx_metadata
from edgefer.utils.io import sha256_file

#: Max abs logit difference tolerated between the FP16 and the FP32 ONNX on random inputs
#: (relative to the logit scale: ``tol * max(1, max |logit|)``). FP16 has ~3 significant
#: digits; ResNet-sized nets typically land at 1e-3..1e-2 on logits of magnitude ~1-10.
FP16_TOLERANCE = 2e-2


def to_fp16_onnx(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Convert the FP32 ONNX ``src`` into an FP16 ONNX at ``dst`` (FP32 I/O, metadata precision
    ``fp16``, ``source_onnx_sha256`` = sha256 of ``src``). Written atomically."""
    onnx = require("onnx", "onnx", "FP16 ONNX conversion")
    float16 = require("onnxruntime.transformers.float16", "onnx", "FP16 ONNX conversion")
    src, dst = Path(src), Path(dst)
    if not src.exists():
        raise ExportError(f"ONNX model {src} does not exist")
    from edgefer.metadata import read_metadata

    meta = read_metadata(src)
    require_fp32(src, meta, "FP16 conversion", ExportError)
    model = onnx.load(str(src))
    try:
        fp16 = float16.convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)
    except Exception as exc:
        raise ExportError(f"FP16 conversion of {src.name} failed: {exc}") from exc
    toposort(fp16.graph)
    new_meta = meta.replace(precision="fp16", source_onnx_sha256=sha256_file(src))
    set_onnx_metadata(fp16, new_meta)
    check_onnx(fp16)
    with _tmp_dir(dst.parent) as tmp_dir:
        staged = tmp_dir / dst.name
        onnx.save(fp16, str(staged))
        os.replace(staged, dst)
    return dst


def toposort(graph) -> None:
    """Sort ``graph.node`` topologically in place (stable: ties keep their original order).

    ``convert_float_to_float16`` appends the Cast nodes it inserts for ``keep_io_types`` at the end
    of the node list; ONNX requires (and the TensorRT parser assumes) topological order.
    """
    nodes = list(graph.node)
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    producers = {out for n in nodes for out in n.output}
    ordered = []
    pending = nodes
    while pending:
        rest = []
        for n in pending:
            # inputs produced by no node are graph inputs/initializers (or outer-scope names)
            if all(i in available or i not in producers for i in n.input):
                ordered.append(n)
                available.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise ExportError("ONNX graph has a cycle; cannot sort it")
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)


def compare_onnx(
    a: str | os.PathLike, b: str | os.PathLike, img_size: int | tuple[int, ...], batch: int = 8
) -> dict[str, float]:
    """Run two ONNX files on the same seeded random batch on ORT CPU.

    ``img_size``: the side of an NCHW RGB input, or one image's shape (``Preprocessing.input_shape``).
    Returns ``max_abs_diff``, ``scale`` (max |logit| of ``a``) and ``top1_agreement``.
    """
    rng = np.random.default_rng(0)
    per = (3, img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    x = rng.standard_normal((batch, *per), dtype=np.float32)
    ya, yb = (_run_first(ort_session(p), x) for p in (a, b))
    return {
        "max_abs_diff": float(np.max(np.abs(ya - yb))),
        "scale": float(np.max(np.abs(ya))),
        "top1_agreement": float(np.mean(ya.argmax(1) == yb.argmax(1))),
    }


def _run_first(sess: Any, x: np.ndarray) -> np.ndarray:
    """The first output of an ORT session on ``x`` (tensor names read from the model: an imported
    ONNX keeps its own)."""
    return sess.run([sess.get_outputs()[0].name], {sess.get_inputs()[0].name: x})[0].astype(np.float32)


def check_fp16(
    fp32: str | os.PathLike, fp16: str | os.PathLike, meta: ModelMetadata, tolerance: float = FP16_TOLERANCE
) -> float:
    """Max abs logit difference of the FP16 ONNX to the FP32 ONNX; :class:`ExportError` above
    ``tolerance * max(1, max |logit|)`` (an FP16 overflow or a broken conversion)."""
    # a static-batch ONNX (an imported model, often) is run at its own batch
    batch = 8 if meta.extra.get("dynamic_batch", True) else int(meta.extra.get("batch") or 1)
    stats = compare_onnx(fp32, fp16, meta.preprocessing.input_shape, batch)
    limit = tolerance * max(1.0, stats["scale"])
    if not stats["max_abs_diff"] <= limit:
        raise ExportError(
            f"FP16 ONNX differs from FP32 by {stats['max_abs_diff']:.3g} (> {limit:.3g}): "
            "FP16 overflow or an unsupported op; export FP32 instead"
        )
    return stats["max_abs_diff"]
