"""Reproduce benchmarks/quantization.md: FP32 / FP16 / INT8 PTQ / accuracy-controlled / QAT per model.

For each model: train on the synthetic set (or take ``--checkpoint NAME=PATH``), export the FP32
ONNX, then score every variant on the same test images against the FP32 ONNX on ONNX Runtime:
accuracy, delta vs FP32 (overall and worst class, in points), agreement of top-1 predictions,
artifact size and wall time. Everything goes through the public API (``edgefer.quantize.quantize``,
``edgefer.export``), so the table is what ``edgefer quantize`` gives.

    python benchmarks/quantization_bench.py --models msff_resnet18,msff_resnet50 --epochs 3 \\
        --img-size 64 --out runs/qbench --md benchmarks/quantization.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

TARGETS = {"delta_pts": -0.5, "worst_class_delta_pts": -1.0, "agreement": 0.98}


def _train(model: str, data: Path, out: Path, epochs: int, img_size: int, seed: int) -> Path:
    from edgefer.training import TrainConfig, train

    cfg = TrainConfig(
        data=str(data),
        model=model,
        out=str(out / f"train_{model}"),
        epochs=epochs,
        batch_size=32,
        img_size=img_size,
        lr=2e-3,
        seed=seed,
        workers=0,
        progress=False,
    )
    return Path(train(cfg).best_checkpoint)


def _row(name: str, variant: str, cmd: str, report: dict[str, Any], size: int, seconds: float) -> dict[str, Any]:
    return {
        "model": name,
        "variant": variant,
        "command": cmd,
        "accuracy": report["accuracy"],
        "delta_pts": report["delta_pts"],
        "worst_class": report["worst_class"],
        "worst_class_delta_pts": report["worst_class_delta_pts"],
        "agreement": report["agreement"],
        "size_bytes": size,
        "seconds": round(seconds, 1),
    }


def bench_model(name: str, ckpt: Path, data: Path, out: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    from edgefer.data.calibration import validation_arrays
    from edgefer.export.onnx import export_onnx
    from edgefer.export.openvino import export_openvino
    from edgefer.quantize import quantize
    from edgefer.quantize.evaluate import compare, predict
    from edgefer.utils.io import dir_size

    mdir = out / name
    fp32 = Path(export_onnx(ckpt, mdir, img_size=args.img_size).onnx)
    from edgefer.metadata import read_metadata

    meta = read_metadata(fp32)
    val = validation_arrays(data, meta.preprocessing, args.val_size, split="test")
    ref = predict(fp32, val.x)
    rows = []
    fp32_rep = compare(ref, ref, val.labels, val.ids, meta.class_names)
    rows.append(
        _row(
            name,
            "FP32 ONNX (ORT)",
            f"edgefer export --checkpoint {ckpt.name} --target onnx",
            fp32_rep,
            dir_size(fp32),
            0.0,
        )
    )
    t = time.perf_counter()
    xml16, _ = export_openvino(fp32, mdir, precision="fp16")
    rep16 = compare(ref, predict(xml16, val.x), val.labels, val.ids, meta.class_names)
    rows.append(
        _row(
            name,
            "FP16 OpenVINO IR",
            "edgefer export --target openvino --precision fp16",
            rep16,
            dir_size(xml16) + dir_size(xml16.with_suffix(".bin")),
            time.perf_counter() - t,
        )
    )
    common = {
        "calib_size": args.calib_size,
        "onnx_path": fp32,
        "out_dir": mdir,
        "progress": False,
        "val_size": args.val_size,
    }
    variants = [
        ("INT8 PTQ OpenVINO", {"target": "openvino", "method": "ptq"}, "--target openvino --method ptq"),
        ("INT8 PTQ Q/DQ ONNX (TensorRT)", {"target": "trt", "method": "ptq"}, "--target trt --method ptq"),
        (
            "INT8 accuracy-controlled OpenVINO",
            {"target": "openvino", "method": "ptq-acc", "max_drop": 0.5},
            "--target openvino --method ptq-acc --max-drop 0.5",
        ),
        (
            "INT8 QAT OpenVINO",
            {
                "target": "openvino",
                "method": "qat",
                "qat_epochs": args.qat_epochs,
                "qat_max_steps": args.qat_steps,
                "qat_lr": 1e-4,
            },
            f"--target openvino --method qat --qat-epochs {args.qat_epochs}",
        ),
        ("INT8 weights-only OpenVINO", {"target": "openvino", "method": "wc"}, "--target openvino --method wc"),
    ]
    for label, kw, cli in variants:
        t = time.perf_counter()
        try:
            ck = ckpt if kw["method"] == "qat" else None
            res = quantize(ck, data, **common, **kw)
        except Exception as exc:  # a failed variant is a row that says why
            rows.append({"model": name, "variant": label, "error": f"{type(exc).__name__}: {exc}"[:300]})
            continue
        r = res.report
        rep = {
            "accuracy": r["int8_accuracy"],
            "delta_pts": r["delta_pts"],
            "worst_class": r["worst_class"],
            "worst_class_delta_pts": r["worst_class_delta_pts"],
            "agreement": r["agreement"],
        }
        row = _row(
            name,
            label,
            f"edgefer quantize --checkpoint {ckpt.name} --data DATA {cli} --calib-size {args.calib_size}",
            rep,
            r["int8_size_bytes"],
            time.perf_counter() - t,
        )
        if "accuracy_control" in r:
            row["kept_fp"] = r["accuracy_control"]["kept_fp"]
            row["plain_ptq_delta_pts"] = r["accuracy_control"]["before_delta_pts"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def markdown(rows: list[dict[str, Any]], info: dict[str, Any]) -> str:
    def ok(row: dict[str, Any]) -> str:
        good = (
            row["delta_pts"] >= TARGETS["delta_pts"]
            and row["worst_class_delta_pts"] >= TARGETS["worst_class_delta_pts"]
            and row["agreement"] >= TARGETS["agreement"]
        )
        return "yes" if good else "**no**"

    lines = [
        "| model | variant | accuracy | Δ vs FP32 (pt) | worst class Δ (pt) | agreement | size | meets target |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | :---: |",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['variant']} | failed: {r['error']} | | | | | |")
            continue
        lines.append(
            f"| {r['model']} | {r['variant']} | {100 * r['accuracy']:.2f}% | {r['delta_pts']:+.2f} | "
            f"{r['worst_class_delta_pts']:+.2f} ({r['worst_class']}) | {100 * r['agreement']:.1f}% | "
            f"{r['size_bytes'] / 1e6:.2f} MB | {ok(r)} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="msff_resnet18,msff_resnet50")
    ap.add_argument("--checkpoint", action="append", default=[], help="NAME=PATH: skip training NAME")
    ap.add_argument("--data", type=Path, default=None, help="dataset (default: generate the synthetic set)")
    ap.add_argument("--n-train", type=int, default=1400)
    ap.add_argument("--n-test", type=int, default=350)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--img-size", type=int, default=64)
    ap.add_argument("--calib-size", type=int, default=300)
    ap.add_argument("--val-size", type=int, default=None)
    ap.add_argument("--qat-epochs", type=int, default=1)
    ap.add_argument("--qat-steps", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("runs/qbench"))
    ap.add_argument("--md", type=Path, default=None, help="also write the table here")
    args = ap.parse_args()

    from edgefer.data.synth import generate_synthetic

    data = args.data or generate_synthetic(args.out / "synth", n_train=args.n_train, n_test=args.n_test, seed=0)
    ckpts = dict(c.split("=", 1) for c in args.checkpoint)
    rows: list[dict[str, Any]] = []
    for name in [m for m in args.models.split(",") if m]:
        t = time.perf_counter()
        ckpt = (
            Path(ckpts[name]) if name in ckpts else _train(name, data, args.out, args.epochs, args.img_size, args.seed)
        )
        print(f"{name}: checkpoint {ckpt} ({time.perf_counter() - t:.0f} s)", flush=True)
        rows.extend(bench_model(name, ckpt, data, args.out, args))
    info = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs", "args": vars(args)}
    (args.out / "quantization.json").write_text(json.dumps({"info": info, "rows": rows}, indent=2, default=str))
    table = markdown(rows, info)
    print(table)
    if args.md:
        args.md.write_text(table)


if __name__ == "__main__":
    main()
