"""INT8 of the edge model (msff_mobilenetv3, demo recipe) on OpenVINO and Q/DQ ONNX, per method.

Rows for benchmarks/quantization.md: FP32, then for each method (``ptq``, ``ptq-acc`` with the
production gate, ``qat``) and target (``openvino``, ``trt`` = the Q/DQ ONNX TensorRT runs, scored
on ONNX Runtime) the accuracy, Δ vs FP32, the worst class with its image counts, agreement with
the FP32 top-1, the production gate's verdict, the layers kept in FP and the size. Everything goes
through ``edgefer.quantize.quantize`` (what ``edgefer quantize`` runs), scored on the whole test
split. Extra PTQ settings to compare are given as ``--variant NAME=JSON`` (QuantizeOptions fields).

    python benchmarks/quantization_edge.py --checkpoint runs/demo/train/best.pt \\
        --data runs/demo/data/synthetic --out runs/qedge --methods ptq,ptq-acc,qat --qat-epochs 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

#: The production gate (edgefer.pipeline.flow.PRODUCTION_GATE), the one ptq-acc holds by default.
GATE = "max-drop=0.5,max-class-drop=1.0,min-agreement=0.98"


def _row(variant: str, cli: str, report: dict[str, Any], seconds: float) -> dict[str, Any]:
    from edgefer.bench.gate import Gate

    cmp = report["comparison"]
    worst = min(cmp["per_class_changes"], key=lambda c: (c["net_images"] / max(c["images"], 1), c["class"]))
    violations = Gate.parse(GATE).check({"label": variant, "status": "ok", "accuracy": cmp})
    acc = report.get("accuracy_control") or {}
    return {
        "variant": variant,
        "command": cli,
        "accuracy": report["int8_accuracy"],
        "fp32_accuracy": report["fp32_accuracy"],
        "delta_pts": report["delta_pts"],
        "worst_class": report["worst_class"],
        "worst_class_delta_pts": report["worst_class_delta_pts"],
        "worst_class_counts": f"{worst['net_images']:+d} of {worst['images']}: lost {worst['lost']}, "
        f"gained {worst['gained']}",
        "agreement": report["agreement"],
        "gate_violations": violations,
        "kept_fp": acc.get("kept_fp"),
        "size_bytes": report["int8_size_bytes"],
        "seconds": round(seconds, 1),
    }


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    from edgefer.quantize import quantize

    variants: list[tuple[str, dict[str, Any], str]] = []
    methods = [m for m in args.methods.split(",") if m]
    for target in ("openvino", "trt"):
        for method in methods:
            kw: dict[str, Any] = {"target": target, "method": method}
            cli = f"--target {target} --method {method}"
            if method == "ptq-acc":
                kw["max_drop"] = 0.5
                cli += " --max-drop 0.5"
            if method == "qat":
                kw["qat_epochs"] = args.qat_epochs
                cli += f" --qat-epochs {args.qat_epochs}"
            variants.append((f"{target} {method}", kw, cli))
        for spec in args.variant:
            name, _, fields = spec.partition("=")
            extra = json.loads(fields)
            variants.append((f"{target} ptq {name}", {"target": target, "method": "ptq", **extra}, json.dumps(extra)))
    rows = []
    for label, kw, cli in variants:
        t = time.perf_counter()
        try:
            res = quantize(
                args.checkpoint,
                args.data,
                onnx_path=None if kw["method"] == "qat" else args.onnx,  # QAT starts from the checkpoint
                out_dir=args.out / label.replace(" ", "_"),
                progress=False,
                overwrite=True,
                **kw,
            )
        except Exception as exc:  # a failed variant is a row that says why
            rows.append({"variant": label, "error": f"{type(exc).__name__}: {exc}"[:300]})
            continue
        row = _row(
            label, f"edgefer quantize --checkpoint best.pt --data DATA {cli}", res.report, time.perf_counter() - t
        )
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| variant | accuracy | Δ vs FP32 (pt) | worst class Δ (pt) | agreement | gate | kept in FP | size |",
        "| --- | ---: | ---: | --- | ---: | :---: | ---: | ---: |",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['variant']} | failed: {r['error']} | | | | | | |")
            continue
        kept = "—" if r["kept_fp"] is None else str(len(r["kept_fp"]))
        gate = "pass" if not r["gate_violations"] else "**fail**"
        lines.append(
            f"| {r['variant']} | {100 * r['accuracy']:.2f}% | {r['delta_pts']:+.2f} | "
            f"{r['worst_class_delta_pts']:+.2f} {r['worst_class']} ({r['worst_class_counts']}) | "
            f"{100 * r['agreement']:.2f}% | {gate} | {kept} | {r['size_bytes'] / 1e6:.2f} MB |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, required=True, help="the edge model's best.pt")
    ap.add_argument("--onnx", type=Path, default=None, help="its FP32 ONNX (default: exported from the checkpoint)")
    ap.add_argument("--data", type=Path, required=True, help="the dataset it was trained on (test split scored)")
    ap.add_argument("--methods", default="ptq,ptq-acc,qat")
    ap.add_argument("--qat-epochs", type=int, default=1)
    ap.add_argument(
        "--variant", action="append", default=[], help='NAME=JSON extra PTQ fields: c1000={"calib_size":1000}'
    )
    ap.add_argument("--out", type=Path, default=Path("runs/qedge"))
    args = ap.parse_args()
    rows = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quantization_edge.json").write_text(json.dumps(rows, indent=2))
    print(markdown(rows))


if __name__ == "__main__":
    main()
