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

This module is the orchestration (:func:`debug_int8`); each step lives in a module of its own:
:mod:`~edgefer.quantize.debug_checks` (are these the FP32 and INT8 of one model?),
:mod:`~edgefer.quantize.debug_capture` (the intermediate tensors), :mod:`~edgefer.quantize.debug_ranking`
(scores and ranks), :mod:`~edgefer.quantize.debug_keep_fp` (one layer kept in FP),
:mod:`~edgefer.quantize.debug_report` (``debug.md``, ``debug.png``) and
:mod:`~edgefer.quantize.ignore_file` (``ignore.json``). Torch-free (it reads exported artifacts only).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgefer.errors import QuantizationError
from edgefer.quantize.debug_capture import check_memory, onnx_activations, ov_activations, qdq_sqnr
from edgefer.quantize.debug_checks import check_data_classes, check_inputs, check_shapes
from edgefer.quantize.debug_keep_fp import keep_fp_rows, keep_layer_fp
from edgefer.quantize.debug_ranking import layer_rows, mean_cosine, ranked, rel_l2
from edgefer.quantize.debug_report import debug_markdown, plot_layers
from edgefer.quantize.ignore_file import IGNORE_FORMAT, OV_CONV_SUFFIX, ignore_pattern, read_ignore_file
from edgefer.utils.limits import MAX_DEBUG_SAMPLES, check_at_most

__all__ = [  # the steps live in their own modules; these names stay importable from here
    "DEFAULT_SAMPLES",
    "DEFAULT_TOP",
    "IGNORE_FORMAT",
    "OUTPUT_NAMES",
    "OV_CONV_SUFFIX",
    "DebugResult",
    "balanced_indices",
    "debug_int8",
    "ignore_pattern",
    "keep_layer_fp",
    "mean_cosine",
    "read_ignore_file",
    "rel_l2",
]

DEFAULT_SAMPLES = 64


DEFAULT_TOP = 5


OUTPUT_NAMES = ("debug.json", "debug.md", "debug.png", "ignore.json")


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
    meta, _qmeta, kind = check_inputs(fp32_path, int8_path)
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
    names = check_data_classes(meta, dataset)
    if len(dataset) == 0:
        raise QuantizationError(f"the {split!r} split is empty: no images to compare the models on")
    idx = balanced_indices(np.asarray(dataset.labels), samples, seed)

    import onnx

    fp_model = onnx.load(str(fp32_path), load_external_data=False)
    check_shapes(fp_model, int8_path, kind)
    with staged_output(out_dir, "debug", overwrite=overwrite) as stage, staging_dir(out_dir, "aug") as scratch:
        check_memory(fp32_path, len(idx), meta.preprocessing, scratch)  # before the sample is loaded
        sample = load_arrays(dataset, idx, meta.preprocessing, split)
        if len(sample) == 0:
            raise QuantizationError(f"no readable image among the {len(idx)} chosen from the {split!r} split")
        fp_acts = onnx_activations(fp32_path, sample.x, scratch)
        sqnr: dict[str, float] = {}
        if kind == "onnx":
            q_model = onnx.load(str(int8_path))
            if not any(n.op_type == "DequantizeLinear" for n in q_model.graph.node):
                raise QuantizationError(
                    f"{int8_path.name} has no QuantizeLinear/DequantizeLinear: not a Q/DQ INT8 ONNX"
                )
            from edgefer.quantize.ptq import quantized_op_names

            q_acts = onnx_activations(int8_path, sample.x, scratch)
            quantized = quantized_op_names(q_model)
            sqnr = qdq_sqnr(q_model, q_acts, fp_acts)
            numerics = "onnx-qdq on ONNX Runtime CPU (onnxruntime.quantization.qdq_loss_debug)"
        else:
            q_acts, ov_quantized = ov_activations(int8_path, list(fp_acts), sample.x)
            if not ov_quantized:
                raise QuantizationError(f"{int8_path.name} has no FakeQuantize: not an INT8 (activations) IR")
            quantized = {n[: -len(OV_CONV_SUFFIX)] if n.endswith(OV_CONV_SUFFIX) else n for n in ov_quantized}
            numerics = "openvino-fq on the OpenVINO CPU plugin (Model.add_outputs)"
        layers = layer_rows(fp_model, fp_acts, q_acts, quantized, sqnr)
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
            keep_fp_rows(
                q_model,
                layers,
                sample,
                bench_fp,
                bench_q,
                keep_fp_max,
                functools.partial(meta.dataset_logits, dataset_names=names),
            )
        patterns = [ignore_pattern(r["name"]) for r in sorted(ranked(layers), key=lambda r: r["rank"])[:top]]
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
        plot_note = plot_layers(layers, stage.path("debug.png"), top)
        summary["plot"] = None if plot_note else "debug.png"
        md = debug_markdown(summary, layers, patterns, plot_note)
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
                        "layers": [r["name"] for r in sorted(ranked(layers), key=lambda r: r["rank"])[:top]],
                    },
                )
            ),
        ]
        if not plot_note:
            files.insert(2, stage.final(stage.path("debug.png")))
    return DebugResult(layers, summary, patterns, md, files)
