"""Rendering ``edgefer debug``'s findings: ``debug.png`` (error per layer in graph order) and
``debug.md`` (the worst layers and what to do about them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgefer.quantize.debug_ranking import ranked


def plot_layers(layers: list[dict[str, Any]], target: Path, top: int) -> str | None:
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


def debug_markdown(
    summary: dict[str, Any], layers: list[dict[str, Any]], patterns: list[str], plot_note: str | None
) -> str:
    """``debug.md``: the sample's verdict, the worst layers (with keep-FP gains when measured) and what to do."""
    worst = sorted(ranked(layers), key=lambda r: r["rank"])[: max(summary["top"], 10)]
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
        "- Let NNCF choose: `edgefer quantize --int8-method ptq-acc --max-drop <pt>` keeps layers in FP until the "
        "drop fits; `--int8-method qat` fine-tunes instead of giving up INT8 speed.",
        "- A low input SQNR (below ~20 dB) with a large added error points at the activation range "
        "(outliers): more or more representative calibration images (`--calib-size`) may help.",
        "- For a TensorRT engine, compare on the device with Polygraphy (`polygraphy run <int8_qdq.onnx> --trt "
        "--onnxrt --trt-outputs mark all --onnx-outputs mark all`).",
        "",
        plot_note or "`debug.json` holds every layer in graph order; `debug.png` plots them.",
        "",
    ]
    return "\n".join(lines)
