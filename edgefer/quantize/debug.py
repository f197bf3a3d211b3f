"""``edgefer debug``: which layer does INT8 hurt? Layer-by-layer FP32 vs INT8 activations.

The tool to reach for when the INT8 gate fails. The FP32 ONNX and the INT8 artifact run on the
same class-balanced sample of a dataset split (preprocessed by :func:`edgefer.preprocess.preprocess_batch`
with the model's own metadata, as the benchmark does) with their intermediate tensors exposed;
tensors are matched by name and every layer gets

* ``rel_l2``: ``||int8 - fp32|| / ||fp32||`` of its output over the sample (the error accumulated up to it);
* ``cosine``: mean per-image cosine similarity of its output with FP32's;
* ``added_rel_l2``: ``rel_l2`` of its output minus the largest ``rel_l2`` of its inputs -- the error
  *this* layer adds (its input/weight quantizers and its INT8 arithmetic). Quantized layers are
  ranked by it; the worst ``top`` become ``ignore.json``.

How the intermediate tensors are exposed:

* Q/DQ ONNX (the trt/onnx targets, scored on ONNX Runtime CPU): ONNX Runtime's own debugging
  helpers, :mod:`onnxruntime.quantization.qdq_loss_debug` (``modify_model_output_intermediate_tensors``,
  ``collect_activations``, ``create_activation_matching``, ``compute_activation_error``). NNCF keeps
  the FP32 tensor names in its Q/DQ graph (``x -> QuantizeLinear -> DequantizeLinear -> dq_output_x_1``),
  so the DQ outputs are renamed to ONNX Runtime's convention (``x_DequantizeLinear_Output``) before
  matching; ``qdq_sqnr_db`` (per layer, the worst of its inputs) is ONNX Runtime's signal-to-quantization-noise
  ratio of the quantizer alone.
* OpenVINO INT8 IR (FakeQuantize): ``Model.add_outputs`` on the IR. The ONNX frontend keeps every
  ONNX tensor name on the op output that produces it, and the op's friendly name is the ONNX node
  name (a Conv with bias becomes ``<name>/WithoutBiases`` + an ``Add`` named ``<name>``), so tensors
  match by name. Checked on this repository's models: every FP32 tensor name survives NNCF + save.
* A TensorRT engine exposes no intermediate tensors once built (its layers are fused): debug the
  Q/DQ ONNX it was built from here, and on the device use Polygraphy
  (``polygraphy run model_int8_qdq.onnx --trt --onnxrt --trt-outputs mark all --onnx-outputs mark all``),
  which is not a dependency of edgefer.

``ignore.json`` holds one regex per worst layer, ``^<ONNX node name>(/WithoutBiases)?$``: NNCF's
ignored scope matches it against the ONNX node names (trt/onnx targets) and the OpenVINO friendly
names (openvino target, where the quantized Convolution carries the ``/WithoutBiases`` suffix), so
``edgefer quantize --ignore-from DIR/ignore.json`` keeps those layers in floating point for both.
(QAT quantizes the PyTorch model, whose NNCF node names differ: the patterns match none of them, which
NNCF's ignored-scope validation should refuse; that path is not tested.)

Torch-free (it reads exported artifacts only).
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgefer.errors import QuantizationError
from edgefer.quantize.graph import input_name
from edgefer.utils.limits import MAX_DEBUG_SAMPLES, check_at_most, memory_budget

DEFAULT_SAMPLES = 64
DEFAULT_TOP = 5
#: what ``ignore.json`` says it is (checked by :func:`read_ignore_file`)
IGNORE_FORMAT = "edgefer-ignore/1"
#: suffix OpenVINO's ONNX frontend gives the Convolution of a Conv with bias (the op NNCF quantizes)
OV_CONV_SUFFIX = "/WithoutBiases"
OUTPUT_NAMES = ("debug.json", "debug.md", "debug.png", "ignore.json")
_EPS = 1e-12


@dataclass
class DebugResult:
    """What :func:`debug_int8` found and wrote.

    Attributes:
        layers: one dict per matched layer, in graph order (see :func:`debug_int8`).
        summary: FP32-vs-INT8 agreement and accuracies on the sample, counts, what was compared.
        ignore_patterns: the ``top`` worst quantized layers as NNCF ignored-scope regexes.
        markdown: the text of ``debug.md``.
        files: every file written (``debug.png`` only when matplotlib is installed).
    """

    layers: list[dict[str, Any]]
    summary: dict[str, Any]
    ignore_patterns: list[str]
    markdown: str
    files: list[Path] = field(default_factory=list)

    @property
    def worst(self) -> list[dict[str, Any]]:
        """The ranked (quantized) layers, worst first."""
        return sorted((r for r in self.layers if r["rank"] is not None), key=lambda r: r["rank"])


# ----------------------------------------------------------------------------------------------- sample


def balanced_indices(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Indices of ``n`` items, as evenly spread over the classes as they allow; deterministic, sorted.

    Each class's items are shuffled by a seeded generator and taken round-robin across classes, so
    a rare class is fully used before the common ones fill the rest.
    """
    if n < 1:
        raise QuantizationError(f"the sample must hold at least 1 image, got {n}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    pools = [list(rng.permutation(np.flatnonzero(labels == c))) for c in np.unique(labels)]
    picked: list[int] = []
    while len(picked) < min(n, len(labels)):
        for pool in pools:
            if pool and len(picked) < n:
                picked.append(int(pool.pop(0)))
    return np.sort(np.asarray(picked, dtype=np.int64))


# ----------------------------------------------------------------------------------------------- checks


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix == ".xml":
        return "openvino"
    if suffix in (".engine", ".plan", ".trt"):
        raise QuantizationError(
            f"{path.name} is a TensorRT engine, whose intermediate tensors are fused away: debug the Q/DQ ONNX it "
            "was built from, or on the device use Polygraphy (polygraphy run <int8_qdq.onnx> --trt --onnxrt "
            "--trt-outputs mark all --onnx-outputs mark all)"
        )
    raise QuantizationError(f"{path.name}: the INT8 artifact must be a Q/DQ .onnx or an OpenVINO INT8 .xml")


def _check_inputs(fp32_onnx: Path, int8: Path) -> tuple[Any, Any, str]:
    """Both files exist, are FP32 and INT8 of the same model interface; returns both metadata and the INT8 kind."""
    from edgefer.metadata import read_metadata

    for what, p in (("FP32 ONNX", fp32_onnx), ("INT8 artifact", int8)):
        if not p.is_file():
            raise QuantizationError(f"{what} {p} does not exist")
    if fp32_onnx.suffix.lower() != ".onnx":
        raise QuantizationError(f"{fp32_onnx.name}: the FP32 model must be the FP32 .onnx")
    kind = _kind(int8)
    meta, qmeta = read_metadata(fp32_onnx), read_metadata(int8)
    if meta.precision != "fp32":
        raise QuantizationError(f"{fp32_onnx.name} is {meta.precision}, not the FP32 ONNX")
    if qmeta.precision != "int8":
        raise QuantizationError(f"{int8.name} is {qmeta.precision}, not an INT8 artifact: nothing to debug")
    if meta.model_name != qmeta.model_name:
        raise QuantizationError(
            f"{int8.name} is a {qmeta.model_name} but {fp32_onnx.name} a {meta.model_name}: not the FP32 model "
            "it was quantized from, so a layer-by-layer comparison means nothing"
        )
    _check_source(fp32_onnx, int8, meta, qmeta)
    if tuple(meta.class_names) != tuple(qmeta.class_names):
        raise QuantizationError(
            f"{fp32_onnx.name} predicts {len(meta.class_names)} classes {list(meta.class_names)} but {int8.name} "
            f"{len(qmeta.class_names)} {list(qmeta.class_names)}: they are not the same model"
        )
    s, qs = meta.preprocessing.input_size, qmeta.preprocessing.input_size
    if s != qs:
        raise QuantizationError(f"{fp32_onnx.name} takes {s} px inputs but {int8.name} {qs} px: not the same model")
    if meta.preprocessing != qmeta.preprocessing:
        raise QuantizationError(
            f"{fp32_onnx.name} and {int8.name} record different preprocessing: not the same model's FP32 and INT8"
        )
    return meta, qmeta, kind


def _check_source(fp32_onnx: Path, int8: Path, meta: Any, qmeta: Any) -> None:
    """The INT8 artifact records the sha256 of the FP32 ONNX it was quantized from
    (``source_onnx_sha256``): it must be this file, or an export of the same checkpoint (both
    record the same ``source_checkpoint_sha256``; ``quantize --checkpoint`` exports into a scratch
    folder that is gone afterwards). An INT8 model quantized from other weights of the same
    architecture has the same layers and shapes, and would get a confident, meaningless ranking
    and an ``ignore.json`` that ``quantize --ignore-from`` accepts (issue 26)."""
    from edgefer.utils.io import sha256_file

    source_sha = qmeta.source_onnx_sha256
    if not source_sha:
        raise QuantizationError(
            f"{int8.name} does not record which FP32 ONNX it was quantized from (no source_onnx_sha256 in its "
            f"metadata), so it cannot be checked against {fp32_onnx.name}: quantize it again with edgefer quantize"
        )
    sha = sha256_file(fp32_onnx)
    ckpt, qckpt = meta.source_checkpoint_sha256, qmeta.source_checkpoint_sha256
    if source_sha.lower() != sha and not (ckpt and ckpt == qckpt):
        raise QuantizationError(
            f"{int8.name} was quantized from another FP32 ONNX (source_onnx_sha256 {source_sha[:12]}...), not "
            f"from {fp32_onnx.name} ({sha[:12]}...), nor from an export of the same checkpoint: give debug the "
            "FP32 ONNX quantize started from"
        )


def _check_data_classes(meta: Any, dataset: Any) -> tuple[str, ...]:
    """The dataset's classes; each must be one the model predicts (matched by name, not position)."""
    from edgefer.errors import DatasetError
    from edgefer.labels import CLASS_NAMES

    names = tuple(getattr(dataset, "class_names", ()) or ()) or CLASS_NAMES
    try:
        meta.class_map(names)
    except DatasetError as exc:
        raise QuantizationError(str(exc)) from None
    return names


# ------------------------------------------------------------------------------------------ activations


class _Reader:
    """An ``onnxruntime.quantization.CalibrationDataReader``-style iterable: one image per run."""

    def __init__(self, name: str, x: np.ndarray) -> None:
        self._items = [{name: np.ascontiguousarray(x[i : i + 1])} for i in range(len(x))]
        self._pos = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._pos >= len(self._items):
            return None
        self._pos += 1
        return self._items[self._pos - 1]

    def __iter__(self) -> Any:
        return iter(self._items)


def _onnx_activations(path: Path, x: np.ndarray, scratch: Path) -> dict[str, np.ndarray]:
    """Every float tensor of an ONNX model on ``x`` (one image per run), as {name: (N, -1) array}."""
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import collect_activations, modify_model_output_intermediate_tensors

    augmented = scratch / f"{path.stem}.augmented.onnx"
    modify_model_output_intermediate_tensors(str(path), str(augmented))
    name = input_name(onnx.load(str(path), load_external_data=False))
    acts = collect_activations(str(augmented), _Reader(name, x))
    return {k: np.stack([np.asarray(a).reshape(-1) for a in v]) for k, v in acts.items() if len(v) == len(x)}


def _qdq_rename(model: Any, acts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rename NNCF's DQ outputs of activations to ONNX Runtime's ``<x>_DequantizeLinear_Output`` convention."""
    from onnxruntime.quantization.quant_utils import DEQUANT_OUTPUT_SUFFIX

    inits = {t.name for t in model.graph.initializer}
    q_of = {n.output[0]: n for n in model.graph.node if n.op_type == "QuantizeLinear"}
    out = dict(acts)
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or node.output[0] not in out:
            continue
        q = q_of.get(node.input[0])
        if q is None or q.input[0] in inits:
            continue  # a weight (stored int8, or Q of an initializer)
        out[q.input[0] + DEQUANT_OUTPUT_SUFFIX] = out.pop(node.output[0])
    return out


def _qdq_sqnr(model: Any, qdq_acts: dict[str, np.ndarray], fp_acts: dict[str, np.ndarray]) -> dict[str, float]:
    """ONNX Runtime's SQNR (dB) of each activation quantizer alone (its input vs its Q/DQ output)."""
    from onnxruntime.quantization.qdq_loss_debug import compute_activation_error, create_activation_matching

    renamed = _qdq_rename(model, qdq_acts)
    matching = create_activation_matching(
        {k: list(v) for k, v in renamed.items()}, {k: list(v) for k, v in fp_acts.items()}
    )
    matching = {k: m for k, m in matching.items() if "float" in m}
    return {k: float(v["qdq_err"]) for k, v in compute_activation_error(matching).items()}


def _ov_activations(xml: Path, names: Sequence[str], x: np.ndarray) -> tuple[dict[str, np.ndarray], set[str]]:
    """The tensors ``names`` (ONNX tensor names kept by OpenVINO) of an IR on ``x``, plus its quantized ops."""
    import openvino as ov

    from edgefer.backends.openvino import compile_config
    from edgefer.quantize.ptq import quantized_op_names

    core = ov.Core()
    model = core.read_model(str(xml))
    quantized = quantized_op_names(model)
    wanted = set(names)
    present: dict[str, Any] = {}
    for op in model.get_ordered_ops():
        for out in op.outputs():
            for n in out.get_names():
                if n in wanted and n not in present:
                    present[n] = out
    if not present:
        raise QuantizationError(f"{xml.name} keeps none of the FP32 ONNX tensor names: was it converted from it?")
    model.add_outputs(list(present.values()))
    compiled = core.compile_model(model, "CPU", compile_config("int8", "CPU"))
    request = compiled.create_infer_request()
    by_port: list[tuple[str, Any]] = []
    for port in compiled.outputs:
        hit = next((n for n in port.get_names() if n in present), None)
        if hit is not None:
            by_port.append((hit, port))
    rows: dict[str, list[np.ndarray]] = {n: [] for n, _ in by_port}
    for i in range(len(x)):
        res = request.infer({0: np.ascontiguousarray(x[i : i + 1])})
        for n, port in by_port:
            rows[n].append(np.asarray(res[port], dtype=np.float32).reshape(-1))
    return {n: np.stack(v) for n, v in rows.items()}, quantized


# ---------------------------------------------------------------------------------------------- metrics


def rel_l2(ref: np.ndarray, got: np.ndarray) -> float:
    """``||got - ref|| / ||ref||`` over everything (0 when both are zero)."""
    ref64, got64 = ref.astype(np.float64), got.astype(np.float64)
    den = float(np.linalg.norm(ref64))
    num = float(np.linalg.norm(got64 - ref64))
    return num / den if den > _EPS else (0.0 if num <= _EPS else math.inf)


def mean_cosine(ref: np.ndarray, got: np.ndarray) -> float:
    """Mean over rows (images) of the cosine similarity of ``got`` with ``ref`` (1 for two zero rows)."""
    ref64, got64 = ref.astype(np.float64), got.astype(np.float64)
    nr, ng = np.linalg.norm(ref64, axis=1), np.linalg.norm(got64, axis=1)
    dot = np.sum(ref64 * got64, axis=1)
    both_zero = (nr <= _EPS) & (ng <= _EPS)
    cos = np.where(both_zero, 1.0, dot / np.maximum(nr * ng, _EPS))
    return float(np.mean(cos))


def ignore_pattern(node_name: str) -> str:
    """The NNCF ignored-scope regex keeping ONNX node ``node_name`` in FP for every target (see module doc)."""
    return f"^{re.escape(node_name)}({re.escape(OV_CONV_SUFFIX)})?$"


def read_ignore_file(path: str | os.PathLike) -> list[str]:
    """The regex patterns of an ``ignore.json`` written by :func:`debug_int8` (or a plain JSON list of regexes).

    Raises :class:`QuantizationError` for a missing or unreadable file, a wrong shape or a pattern
    that is not a valid regular expression.
    """
    p = Path(path)
    if not p.is_file():
        raise QuantizationError(f"ignore file {p} does not exist")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise QuantizationError(f"ignore file {p} is not readable JSON ({exc})") from None
    patterns = doc.get("patterns") if isinstance(doc, dict) else doc
    if not isinstance(patterns, list) or not all(isinstance(s, str) and s for s in patterns):
        raise QuantizationError(
            f"ignore file {p} must hold a list of regex strings, or an object with one under 'patterns'"
        )
    for s in patterns:
        try:
            re.compile(s)
        except re.error as exc:
            raise QuantizationError(f"ignore file {p}: {s!r} is not a valid regular expression ({exc})") from None
    return list(patterns)


# ------------------------------------------------------------------------------------------------- main


def debug_int8(
    fp32_onnx: str | os.PathLike,
    int8_artifact: str | os.PathLike,
    data: str | os.PathLike | Any,
    out_dir: str | os.PathLike = "runs/debug",
    samples: int = DEFAULT_SAMPLES,
    top: int = DEFAULT_TOP,
    split: str = "test",
    keep_fp: bool = False,
    keep_fp_max: int | None = None,
    seed: int = 0,
    allow_missing_classes: bool = False,
    overwrite: bool = False,
) -> DebugResult:
    """Compare an INT8 artifact with its FP32 ONNX layer by layer and write the findings to ``out_dir``.

    Args:
        fp32_onnx: the FP32 ONNX the INT8 artifact was quantized from.
        int8_artifact: a Q/DQ ``.onnx`` (trt/onnx targets, run on ONNX Runtime CPU) or an OpenVINO
            INT8 ``.xml`` (run on the OpenVINO CPU plugin).
        data: dataset path (any layout :func:`edgefer.data.open_dataset` reads) or an open dataset.
        samples: images of ``split`` in the sample, class-balanced and deterministic (``seed``).
        top: how many of the worst quantized layers go into ``ignore.json``.
        keep_fp: also measure, for every quantized layer, the agreement with FP32 when that layer
            alone is kept in floating point (its input and weight Q/DQ removed): one full run of
            the sample per layer. Q/DQ ONNX only (an IR no longer holds the FP32 weights).
        keep_fp_max: with ``keep_fp``, measure only this many of the worst-ranked layers (None: all).
        overwrite: replace an earlier debug output in ``out_dir``.

    Writes ``debug.json`` (``summary`` and ``layers``: per layer in graph order ``name``, ``op``,
    ``tensor``, ``quantized``, ``rel_l2``, ``cosine``, ``added_rel_l2``, ``rank``, ``qdq_sqnr_db``,
    and with ``keep_fp`` ``agreement_kept_fp``/``agreement_gain``), ``debug.md``, ``debug.png``
    (not without matplotlib; ``debug.md`` says so) and ``ignore.json`` (for ``--ignore-from``).
    """
    from edgefer.data.calibration import load_arrays, open_split
    from edgefer.utils.io import write_json, write_text
    from edgefer.utils.outputs import check_outputs, staged_output, staging_dir

    fp32_path, int8_path = Path(fp32_onnx), Path(int8_artifact)
    if top < 1:
        raise QuantizationError(f"top must be at least 1, got {top}")
    if samples < 1:
        raise QuantizationError(f"samples must be at least 1, got {samples}")
    check_at_most("samples (--samples)", samples, MAX_DEBUG_SAMPLES, QuantizationError)
    meta, _qmeta, kind = _check_inputs(fp32_path, int8_path)
    if keep_fp_max is not None and keep_fp_max < 1:
        raise QuantizationError(f"keep_fp_max must be at least 1, got {keep_fp_max}")
    if keep_fp and kind != "onnx":
        raise QuantizationError(
            "keep_fp (--keep-fp) needs the Q/DQ ONNX: an OpenVINO INT8 IR no longer holds the FP32 weights"
        )
    if isinstance(data, (str, os.PathLike)) and not Path(data).exists():
        raise QuantizationError(f"dataset {data} does not exist")
    check_outputs(out_dir, OUTPUT_NAMES, overwrite=overwrite)
    dataset = open_split(data, split, allow_missing_classes)
    names = _check_data_classes(meta, dataset)
    if len(dataset) == 0:
        raise QuantizationError(f"the {split!r} split is empty: no images to compare the models on")
    idx = balanced_indices(np.asarray(dataset.labels), samples, seed)

    import onnx

    fp_model = onnx.load(str(fp32_path), load_external_data=False)
    _check_shapes(fp_model, int8_path, kind)
    with staged_output(out_dir, "debug", overwrite=overwrite) as stage, staging_dir(out_dir, "aug") as scratch:
        _check_memory(fp32_path, len(idx), meta.preprocessing, scratch)  # before the sample is loaded
        sample = load_arrays(dataset, idx, meta.preprocessing, split)
        if len(sample) == 0:
            raise QuantizationError(f"no readable image among the {len(idx)} chosen from the {split!r} split")
        fp_acts = _onnx_activations(fp32_path, sample.x, scratch)
        sqnr: dict[str, float] = {}
        if kind == "onnx":
            q_model = onnx.load(str(int8_path))
            if not any(n.op_type == "DequantizeLinear" for n in q_model.graph.node):
                raise QuantizationError(
                    f"{int8_path.name} has no QuantizeLinear/DequantizeLinear: not a Q/DQ INT8 ONNX"
                )
            from edgefer.quantize.ptq import quantized_op_names

            q_acts = _onnx_activations(int8_path, sample.x, scratch)
            quantized = quantized_op_names(q_model)
            sqnr = _qdq_sqnr(q_model, q_acts, fp_acts)
            numerics = "onnx-qdq on ONNX Runtime CPU (onnxruntime.quantization.qdq_loss_debug)"
        else:
            q_acts, ov_quantized = _ov_activations(int8_path, list(fp_acts), sample.x)
            if not ov_quantized:
                raise QuantizationError(f"{int8_path.name} has no FakeQuantize: not an INT8 (activations) IR")
            quantized = {n[: -len(OV_CONV_SUFFIX)] if n.endswith(OV_CONV_SUFFIX) else n for n in ov_quantized}
            numerics = "openvino-fq on the OpenVINO CPU plugin (Model.add_outputs)"
        layers = _layer_rows(fp_model, fp_acts, q_acts, quantized, sqnr)
        if not any(r["quantized"] for r in layers):
            raise QuantizationError(f"no quantized layer of {int8_path.name} matched a node of {fp32_path.name}")
        out_name = fp_model.graph.output[0].name
        if out_name not in q_acts:
            raise QuantizationError(f"{int8_path.name} has no output tensor {out_name!r} like {fp32_path.name}")
        from edgefer.quantize.evaluate import compare, predict

        fp_logits, q_logits = fp_acts[out_name], q_acts[out_name]
        if fp_logits.shape != q_logits.shape or fp_logits.shape[1] != len(meta.class_names):
            raise QuantizationError(
                f"logits of shape {fp_logits.shape} (FP32) and {q_logits.shape} (INT8) for "
                f"{len(meta.class_names)} classes: the models do not match"
            )
        # the verdict uses the benchmark's numerics (the saved artifacts through edgefer.backends, graph
        # optimizations on: ONNX Runtime runs Q/DQ as INT8 kernels); the per-layer tensors come from runs
        # with every intermediate exposed, which keeps Q/DQ simulated in float (agreement_exposed).
        # in the dataset's class order (matched by name), as the benchmark scores them
        bench_fp = meta.dataset_logits(predict(fp32_path, sample.x), names)
        bench_q = meta.dataset_logits(predict(int8_path, sample.x), names)
        cmp = compare(bench_fp, bench_q, sample.labels, sample.ids, names)
        exposed = float(np.mean(fp_logits.argmax(1) == q_logits.argmax(1)))
        if keep_fp:
            _keep_fp_rows(
                q_model,
                layers,
                sample,
                bench_fp,
                bench_q,
                keep_fp_max,
                functools.partial(meta.dataset_logits, dataset_names=names),
            )
        patterns = [ignore_pattern(r["name"]) for r in sorted(_ranked(layers), key=lambda r: r["rank"])[:top]]
        summary = {
            "fp32": str(fp32_path),
            "int8": str(int8_path),
            "model": meta.model_name,
            "numerics": numerics,
            "split": split,
            "samples": len(sample),
            "class_counts": {names[c]: int(k) for c, k in enumerate(np.bincount(sample.labels, minlength=len(names)))},
            "agreement": cmp["agreement"],
            "fp32_accuracy": cmp["reference_accuracy"],
            "int8_accuracy": cmp["accuracy"],
            "delta_pts": cmp["delta_pts"],
            "agreement_exposed": exposed,
            "logits_rel_l2": rel_l2(fp_logits, q_logits),
            "logits_cosine": mean_cosine(fp_logits, q_logits),
            "layers": len(layers),
            "quantized_layers": sum(r["quantized"] for r in layers),
            "top": top,
            "keep_fp": keep_fp,
            "keep_fp_layers": sum("agreement_kept_fp" in r for r in layers),
            "out": str(out_dir),
        }
        plot_note = _plot(layers, stage.path("debug.png"), top)
        summary["plot"] = None if plot_note else "debug.png"
        md = _markdown(summary, layers, patterns, plot_note)
        files = [
            stage.final(write_json(stage.path("debug.json"), {"summary": summary, "layers": layers})),
            stage.final(write_text(stage.path("debug.md"), md)),
            stage.final(
                write_json(
                    stage.path("ignore.json"),
                    {
                        "format": IGNORE_FORMAT,
                        "source": str(int8_path),
                        "patterns": patterns,
                        "layers": [r["name"] for r in sorted(_ranked(layers), key=lambda r: r["rank"])[:top]],
                    },
                )
            ),
        ]
        if not plot_note:
            files.insert(2, stage.final(stage.path("debug.png")))
    return DebugResult(layers, summary, patterns, md, files)


#: the activations held per image, as a multiple of the FP32 model's own: FP32's, the INT8 model's
#: (Q/DQ adds a quantized copy of most tensors) and the copies made while stacking them
_ACTIVATION_COPIES = 4


def _check_memory(fp32_path: Path, n_images: int, pp: Any, scratch: Path) -> None:
    """Refuse a sample whose layer-by-layer activations would not fit the memory this process may
    use (:func:`edgefer.utils.limits.memory_budget`: half the memory available now, within its
    address-space limit).

    Every tensor of both models is held for every image of the sample (issue 26: ``--samples
    100000`` on 750 images at 64 px reached 9.25 GB). One blank image through the FP32 model
    measures the floats per image; the estimate is that times the images and
    :data:`_ACTIVATION_COPIES`, plus the input batch. The blank image has the model's own input shape
    (``pp``, its preprocessing: layout and channels -- an imported grey NHWC model too).
    """
    blank = np.zeros(pp.batch_shape(1), np.float32)
    probe = _onnx_activations(fp32_path, blank, scratch)
    floats = sum(int(v.shape[1]) for v in probe.values())
    per_image = 4 * (floats * _ACTIVATION_COPIES + blank.size)
    budget = memory_budget()
    if n_images * per_image > budget:
        fit = max(0, budget // per_image)
        hint = f"pass --samples {fit} or fewer" if fit else "there is not enough free memory to debug this model"
        raise QuantizationError(
            f"comparing {n_images} images layer by layer would hold about {n_images * per_image / 2**30:.1f} GiB "
            f"of activations ({per_image / 2**20:.1f} MiB per image), over the {budget / 2**30:.1f} GiB this "
            f"process can spare (half the memory available now, within its address-space limit): {hint}"
        )


def _check_shapes(fp_model: Any, int8: Path, kind: str) -> None:
    """The two graphs take the same input shape (static dimensions compared; a dynamic one matches any)."""

    def dims_onnx(model: Any) -> list[Any]:
        inp = next(i for i in model.graph.input if i.name == input_name(model))
        return [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]

    fp_dims = dims_onnx(fp_model)
    if kind == "onnx":
        import onnx

        q_dims = dims_onnx(onnx.load(str(int8), load_external_data=False))
    else:
        import openvino as ov

        pshape = ov.Core().read_model(str(int8)).input(0).get_partial_shape()
        q_dims = [d.get_length() if d.is_static else None for d in pshape]
    same = len(fp_dims) == len(q_dims) and all(
        a is None or b is None or a == b for a, b in zip(fp_dims, q_dims, strict=False)
    )
    if not same:
        raise QuantizationError(f"the FP32 ONNX takes input {fp_dims} but {int8.name} {q_dims}: not the same model")


def _layer_rows(
    fp_model: Any,
    fp_acts: dict[str, np.ndarray],
    q_acts: dict[str, np.ndarray],
    quantized: set[str],
    sqnr: dict[str, float],
) -> list[dict[str, Any]]:
    """One row per FP32 node whose (first float) output was seen in both models, in graph order, ranked."""
    err: dict[str, float] = {i.name: 0.0 for i in fp_model.graph.input}
    rows: list[dict[str, Any]] = []
    for node in fp_model.graph.node:
        tensor = next((o for o in node.output if o in fp_acts and o in q_acts), None)
        if tensor is None:
            continue
        ref, got = fp_acts[tensor], q_acts[tensor]
        if ref.shape != got.shape:
            continue
        e = rel_l2(ref, got)
        err[tensor] = e
        before = max((err[i] for i in node.input if i in err), default=0.0)
        in_sqnr = [sqnr[i] for i in node.input if i in sqnr]
        rows.append(
            {
                "index": len(rows),
                "name": node.name,
                "op": node.op_type,
                "tensor": tensor,
                "quantized": node.name in quantized,
                "rel_l2": e,
                "cosine": mean_cosine(ref, got),
                "added_rel_l2": e - before,
                "qdq_sqnr_db": min(in_sqnr) if in_sqnr else None,
                "rank": None,
            }
        )
    for k, r in enumerate(sorted((r for r in rows if r["quantized"]), key=lambda r: (-r["added_rel_l2"], r["index"]))):
        r["rank"] = k + 1
    return rows


def _ranked(layers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in layers if r["rank"] is not None]


def keep_layer_fp(q_model: Any, node_name: str) -> Any:
    """A copy of a Q/DQ ONNX in which node ``node_name`` reads FP inputs: its activation inputs bypass
    their Q/DQ pair and its quantized weights are replaced by their dequantized float values."""
    import copy

    from onnx import numpy_helper

    model = copy.deepcopy(q_model)
    by_out = {o: n for n in model.graph.node for o in n.output}
    inits = {t.name: t for t in model.graph.initializer}
    node = next((n for n in model.graph.node if n.name == node_name), None)
    if node is None:
        raise QuantizationError(f"node {node_name!r} is not in the Q/DQ model")
    for k, name in enumerate(node.input):
        dq = by_out.get(name)
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        src = dq.input[0]
        q = by_out.get(src)
        if q is not None and q.op_type == "QuantizeLinear":
            node.input[k] = q.input[0]  # activation (or float weight) before its Q/DQ pair
        elif src in inits and dq.input[1] in inits:  # int8 weight stored quantized: dequantize it here
            w = numpy_helper.to_array(inits[src]).astype(np.float32)
            scale = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float32)
            zp = numpy_helper.to_array(inits[dq.input[2]]).astype(np.float32) if len(dq.input) > 2 else 0.0
            axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
            shape = [1] * w.ndim
            if np.size(scale) > 1:
                shape[axis % w.ndim] = np.size(scale)
            zp_arr = np.reshape(zp, shape) if np.size(zp) > 1 else zp
            fw = (w - zp_arr) * np.reshape(scale, shape)
            new = f"{name}_kept_fp"
            model.graph.initializer.append(numpy_helper.from_array(fw.astype(np.float32), new))
            node.input[k] = new
    return model


def _keep_fp_rows(
    q_model: Any,
    layers: list[dict[str, Any]],
    sample: Any,
    fp_logits: np.ndarray,
    q_logits: np.ndarray,
    limit: int | None = None,
    align: Any = None,
) -> None:
    """Per quantized layer (the ``limit`` worst-ranked, or all): agreement (and accuracy) with FP32 when
    that layer alone is kept in FP."""
    from edgefer.quantize.evaluate import predict

    fp_top = fp_logits.argmax(1)
    base = float(np.mean(q_logits.argmax(1) == fp_top))
    for r in sorted(_ranked(layers), key=lambda r: r["rank"])[:limit]:
        logits = predict(keep_layer_fp(q_model, r["name"]), sample.x)
        logits = align(logits) if align is not None else logits
        agree = float(np.mean(logits.argmax(1) == fp_top))
        r["agreement_kept_fp"] = agree
        r["agreement_gain"] = agree - base
        r["accuracy_kept_fp"] = float(np.mean(logits.argmax(1) == sample.labels))


# ------------------------------------------------------------------------------------------------ report


def _plot(layers: list[dict[str, Any]], target: Path, top: int) -> str | None:
    """``debug.png``: accumulated and added error per layer in graph order; a note instead without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "debug.png was not drawn: matplotlib is not installed (pip install matplotlib)"
    from edgefer.utils.io import save_figure

    x = np.arange(len(layers))
    fig, ax = plt.subplots(figsize=(max(8.0, len(layers) * 0.06), 4.0))
    ax.plot(x, [r["rel_l2"] for r in layers], color="tab:blue", lw=1.2, label="rel-L2 vs FP32 (accumulated)")
    q = [r for r in layers if r["quantized"]]
    ax.bar(
        [r["index"] for r in q],
        [max(r["added_rel_l2"], 0.0) for r in q],
        color="tab:orange",
        width=1.0,
        label="rel-L2 added by the layer",
    )
    for r in sorted(q, key=lambda r: r["rank"])[:top]:
        ax.annotate(
            f"#{r['rank']}",
            (r["index"], max(r["added_rel_l2"], 0.0)),
            fontsize=7,
            color="tab:red",
            ha="center",
            va="bottom",
        )
    ax.set_xlabel("layer (graph order)")
    ax.set_ylabel("relative L2 error")
    ax.set_title("INT8 vs FP32 activations, layer by layer")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    save_figure(fig, target)
    return None


def _markdown(summary: dict[str, Any], layers: list[dict[str, Any]], patterns: list[str], plot_note: str | None) -> str:
    worst = sorted(_ranked(layers), key=lambda r: r["rank"])[: max(summary["top"], 10)]
    keep = summary["keep_fp"]
    lines = [
        f"# INT8 debug of {summary['model']}",
        "",
        f"{summary['int8']} vs {summary['fp32']} on {summary['samples']} class-balanced images of the "
        f"{summary['split']!r} split ({summary['numerics']}).",
        "",
        f"- top-1 agreement with FP32: {100 * summary['agreement']:.1f}% as the benchmark runs both "
        f"({100 * summary['agreement_exposed']:.1f}% with every layer's output exposed, the runs measured below)",
        f"- accuracy FP32 {100 * summary['fp32_accuracy']:.2f}% / INT8 {100 * summary['int8_accuracy']:.2f}% "
        f"(delta {summary['delta_pts']:+.2f} pt on this sample)",
        f"- logits: rel-L2 {summary['logits_rel_l2']:.4f}, cosine {summary['logits_cosine']:.4f}",
        "",
        "## Worst layers (by the error each adds)",
        "",
        "| rank | layer | op | added rel-L2 | rel-L2 | cosine | input SQNR (dB) |"
        + (" agreement kept FP |" if keep else ""),
        "| ---: | --- | --- | ---: | ---: | ---: | ---: |" + (" ---: |" if keep else ""),
    ]
    for r in worst:
        sq = "-" if r["qdq_sqnr_db"] is None else f"{r['qdq_sqnr_db']:.1f}"
        row = (
            f"| {r['rank']} | `{r['name']}` | {r['op']} | {r['added_rel_l2']:+.4f} | {r['rel_l2']:.4f} | "
            f"{r['cosine']:.4f} | {sq} |"
        )
        if keep and "agreement_kept_fp" in r:
            row += f" {100 * r['agreement_kept_fp']:.1f}% ({100 * r['agreement_gain']:+.1f}) |"
        elif keep:
            row += " - |"
        lines.append(row)
    lines += [
        "",
        "## What to do",
        "",
        f"- Keep the worst layers in floating point: `edgefer quantize ... --ignore-from {summary['out']}/ignore.json` "
        f"(holds the top {len(patterns)}; the patterns match the ONNX node names of the trt/onnx targets and the "
        "OpenVINO names of the openvino target). Re-run the gate; widen or narrow `--top` as needed.",
        "- Let NNCF choose: `edgefer quantize --method ptq-acc --max-drop <pt>` keeps layers in FP until the "
        "drop fits; `--method qat` fine-tunes instead of giving up INT8 speed.",
        "- A low input SQNR (below ~20 dB) with a large added error points at the activation range "
        "(outliers): more or more representative calibration images (`--calib-size`) may help.",
        "- For a TensorRT engine, compare on the device with Polygraphy (`polygraphy run <int8_qdq.onnx> --trt "
        "--onnxrt --trt-outputs mark all --onnx-outputs mark all`).",
        "",
        plot_note or "`debug.json` holds every layer in graph order; `debug.png` plots them.",
        "",
    ]
    return "\n".join(lines)
