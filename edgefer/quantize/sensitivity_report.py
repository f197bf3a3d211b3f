"""Sensitivity report: which part of the network does INT8 hurt?

For each block group of the FP32 ONNX (backbone stages, PyConv blocks, fusion, hybrid attention,
mask block, classifier -- whatever the model's top-level modules are), the model is quantized
with *only that group* in INT8 (NNCF ``IgnoredScope`` on every other node) and scored against
FP32 on a small validation subset: accuracy delta and agreement. A group whose row shows a
large drop is the one to keep in FP (``--ignore``) or to fix with QAT.

Groups come from the module path of each ONNX node: the TorchScript exporter names nodes
``/layer1/layer1.0/conv1/Conv``; the ``torch.export`` exporter records the path in the node's
``pkg.torch.onnx.name_scopes`` metadata. Groups are the top-level modules; a group holding more
than half the quantizable nodes (typically "backbone") is split one level deeper (its stages).

Uses the TensorRT-style Q/DQ quantization on ONNX Runtime (torch-free with ``onnx_path``): it is
the strictest numerics of our targets (signed activations, no asymmetric ranges).
"""

from __future__ import annotations

import ast
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgefer.data.calibration import calibration_arrays, validation_arrays
from edgefer.errors import QuantizationError
from edgefer.quantize.options import QuantizeOptions
from edgefer.utils.io import write_json, write_text
from edgefer.utils.options import merged
from edgefer.utils.outputs import check_outputs, staged_output, staging_dir

#: Op types NNCF puts quantizers on (inputs/weights); the others follow their producer's quantizer.
QUANTIZABLE = (
    "Conv",
    "ConvTranspose",
    "Gemm",
    "MatMul",
    "Add",
    "Mul",
    "Sub",
    "Div",
    "Concat",
    "GlobalAveragePool",
    "AveragePool",
    "MaxPool",
    "ReduceMean",
    "Sigmoid",
    "Softmax",
)
TOP = "(top level)"
_WEIGHTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclass
class SensitivityResult:
    rows: list[dict[str, Any]]
    json_path: Path
    markdown_path: Path
    markdown: str
    groups: dict[str, list[str]] = field(default_factory=dict)


def module_path(node: Any) -> list[str]:
    """The module path of an ONNX node as a list (``['layer1', '0', 'conv1']``), [] if unknown."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = [s for s in ast.literal_eval(prop.value) if s]
            except (ValueError, SyntaxError):
                break
            # the last entry is the op itself; the one before is the innermost module
            return scopes[-2].split(".") if len(scopes) >= 2 else []
    name = node.name
    if name.startswith("/"):
        # TorchScript scopes mix attribute names and dotted paths ("/layer1/layer1.0/conv1/Conv"):
        # the last dotted piece of each scope is that level's attribute name.
        return [p.split(".")[-1] for p in name.strip("/").split("/")[:-1]]
    return []


def block_groups(model: Any, split_fraction: float = 0.5, max_groups: int = 8) -> dict[str, list[str]]:
    """Group quantizable node names by top-level module (splitting a dominant group one level).

    Groups without a weighted op (Conv/Gemm/MatMul) are folded into their neighbours' cost-free
    "(other)" group; beyond ``max_groups`` the smallest groups are merged into "(other)" too, so the
    report stays cheap (one PTQ run per group).
    """
    nodes = [n for n in model.graph.node if n.op_type in QUANTIZABLE]
    weighted = {n.name for n in nodes if n.op_type in _WEIGHTED}
    paths = {n.name: module_path(n) for n in nodes}
    top = Counter(p[0] if p else TOP for p in paths.values())
    dominant = {g for g, c in top.items() if g != TOP and c > split_fraction * len(nodes) and len(top) > 0}
    groups: dict[str, list[str]] = {}
    for name, p in paths.items():
        if not p:
            key = TOP
        elif p[0] in dominant and len(p) > 2:
            key = ".".join(p[:2])
        else:
            key = p[0]
        groups.setdefault(key, []).append(name)
    other = [n for g, names in groups.items() if not weighted.intersection(names) for n in names]
    groups = {g: names for g, names in groups.items() if weighted.intersection(names)}
    ranked = sorted(groups, key=lambda g: -len(groups[g]))
    for g in ranked[max(1, max_groups - 1) :] if len(ranked) > max_groups else []:
        other.extend(groups.pop(g))
    if other and weighted.intersection(other):
        groups["(other)"] = other
    return groups


#: Validation images a sensitivity table scores when the options leave ``val_size`` unset: one
#: quantization per block group, so the whole split would multiply the run time.
SENSITIVITY_VAL_SIZE = 200


def sensitivity(
    checkpoint: str | os.PathLike | None,
    data: Any,
    options: QuantizeOptions | None = None,
    *,
    onnx_path: str | os.PathLike | None = None,
    max_groups: int = 8,
    **fields: Any,
) -> SensitivityResult:
    """Per-block-group INT8 sensitivity table, written as ``sensitivity.json`` and ``sensitivity.md``.

    ``options`` (or the ``fields`` shorthand) give the output folder, calibration and validation
    sizes and splits, seed, progress and the output policy; ``val_size`` defaults to
    :data:`SENSITIVITY_VAL_SIZE`. The numerics are TensorRT-style Q/DQ whatever ``target`` says.
    The two files follow the output policy of :mod:`edgefer.utils.outputs` (an earlier table is
    replaced only with ``overwrite``; both appear together, only on success).
    """
    opts = merged(QuantizeOptions, options, fields, QuantizationError)
    out_dir, calib_size, seed = opts.out_dir, opts.calib_size, opts.seed
    allow_missing_classes, overwrite = opts.allow_missing_classes, opts.overwrite
    val_size = opts.val_size if opts.val_size is not None else SENSITIVITY_VAL_SIZE
    import nncf
    import onnx

    from edgefer.quantize import ptq
    from edgefer.quantize.api import _check_classes, _fp32_onnx, quiet
    from edgefer.quantize.evaluate import compare, predict
    from edgefer.quantize.graph import input_name
    from edgefer.quantize.ptq import nncf_dataset

    check_outputs(out_dir, ["sensitivity.json", "sensitivity.md"], overwrite=overwrite)
    with staged_output(out_dir, "sensitivity", overwrite=overwrite) as stage, staging_dir(out_dir, "fp32") as scratch:
        fp32_path, meta = _fp32_onnx(checkpoint, onnx_path, opts.img_size, scratch)
        names, align = _check_classes(meta, data)
        pp = meta.preprocessing
        calib = calibration_arrays(
            data, pp, calib_size, split=opts.calib_split, seed=seed, allow_missing_classes=allow_missing_classes
        )
        val = validation_arrays(
            data, pp, val_size, split=opts.val_split, seed=seed, allow_missing_classes=allow_missing_classes
        )
        fp32 = onnx.load(str(fp32_path))
        ref = align(predict(fp32, val.x))
        groups = block_groups(fp32, max_groups=max_groups)
        if not groups:
            raise QuantizationError(f"{fp32_path.name} has no quantizable nodes")
        all_names = [n.name for n in fp32.graph.node]
        calib_ds = nncf_dataset(calib.x, input_name(fp32))
        base_kwargs = ptq.nncf_kwargs("trt", calib_size=len(calib))
        rows: list[dict[str, Any]] = []
        from rich.console import Console
        from rich.progress import Progress

        plan = [("(all)", set(all_names)), *[(g, set(names)) for g, names in sorted(groups.items())]]
        # NNCF's own bars are silenced per run (quiet(False)); ours goes to stderr
        with Progress(console=Console(stderr=True), disable=not opts.progress, transient=True) as bar:
            task = bar.add_task("sensitivity", total=len(plan))
            for group, members in plan:
                kwargs = dict(base_kwargs)
                others = [n for n in all_names if n not in members]
                kwargs["ignored_scope"] = nncf.IgnoredScope(names=others, validate=False) if others else None
                with quiet(False):
                    try:
                        q = ptq.quantize_onnx(onnx.load(str(fp32_path)), calib_ds, **kwargs)
                    except QuantizationError as exc:  # nothing quantizable in this group alone
                        rows.append({"group": group, "nodes": len(members), "error": str(exc)})
                        bar.update(task, advance=1)
                        continue
                cmp = compare(ref, align(predict(q, val.x)), val.labels, val.ids, names)
                rows.append(
                    {
                        "group": group,
                        "nodes": len(members) if group != "(all)" else sum(len(v) for v in groups.values()),
                        "int8_accuracy": cmp["accuracy"],
                        "delta_pts": cmp["delta_pts"],
                        "worst_class": cmp["worst_class"],
                        "worst_class_delta_pts": cmp["worst_class_delta_pts"],
                        "agreement": cmp["agreement"],
                        "mean_kl": cmp["mean_kl"],
                    }
                )
                bar.update(task, advance=1)
        fp32_acc = float((ref.argmax(1) == val.labels).mean())
        doc = {
            "model": meta.model_name,
            "fp32_accuracy": fp32_acc,
            "validation_images": len(val),
            "calib_size": len(calib),
            "numerics": "onnx-qdq (TensorRT-style) on ONNX Runtime CPU",
            "rows": rows,
            "groups": groups,
        }
        md = _markdown(meta.model_name, fp32_acc, len(val), rows)
        json_path = stage.final(write_json(stage.path("sensitivity.json"), doc))
        md_path = stage.final(write_text(stage.path("sensitivity.md"), md))
    return SensitivityResult(rows, json_path, md_path, md, groups)


def _markdown(model: str, fp32_acc: float, n: int, rows: list[dict[str, Any]]) -> str:
    lines = [
        f"# INT8 sensitivity of {model}",
        "",
        f"FP32 accuracy {100 * fp32_acc:.2f}% on {n} validation images. Each row quantizes *only* that block "
        "group to INT8 (TensorRT-style Q/DQ, scored on ONNX Runtime); `(all)` is the full PTQ model.",
        "",
        "| block group | nodes | INT8 acc | delta (pt) | worst class (pt) | agreement |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['group']} | {r['nodes']} | - | - | - | {r['error']} |")
            continue
        lines.append(
            f"| {r['group']} | {r['nodes']} | {100 * r['int8_accuracy']:.2f}% | {r['delta_pts']:+.2f} | "
            f"{r['worst_class']} {r['worst_class_delta_pts']:+.2f} | {100 * r['agreement']:.1f}% |"
        )
    return "\n".join(lines) + "\n"
