#!/usr/bin/env python
"""Reproduce benchmarks/RESULTS.md: every model × {PyTorch FP32, ORT FP32, OV FP32, OV FP16, OV INT8,
Q/DQ INT8 on ORT} at batch 1 and 8 on the synthetic test split.

    .venv/bin/python benchmarks/run_results.py                      # all registered models, untrained
    .venv/bin/python benchmarks/run_results.py --train-epochs 8     # accuracy rows from trained models
    .venv/bin/python benchmarks/run_results.py --models msff_mobilenetv3,resnet50 --iters 30

Per model it writes (under --out): a checkpoint (``best.pt``: randomly initialised unless
``--train-epochs`` > 0), ``model.onnx`` + ``reference.npz``, ``model_fp32.xml``, ``model_fp16.xml``,
``model_int8.xml`` (NNCF PTQ), ``model_qdq_int8.onnx`` (Q/DQ, the TensorRT path, run on ORT), then
benchmarks the six with :func:`edgefer.bench.run_benchmark` and writes RESULTS.md with the tables
and the speed goals. With untrained weights the latency rows are meaningful, the accuracy rows are
not (the report says which).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from edgefer.labels import CLASS_NAMES

EDGE_MODELS = ("msff_mobilenetv3", "msff_resnet18")
LABELS = ("pytorch-fp32", "ort-fp32", "ov-fp32", "ov-fp16", "ov-int8", "ort-qdq-int8")


def _copy_ir(xml: Path, dst_xml: Path) -> Path:
    shutil.copy2(xml, dst_xml)
    shutil.copy2(xml.with_suffix(".bin"), dst_xml.with_suffix(".bin"))
    return dst_xml


def make_artifacts(name: str, data: Path, out: Path, img_size: int, train_epochs: int, calib_size: int) -> dict:
    """Checkpoint -> ONNX + reference -> OV FP32/FP16 -> OV INT8 + Q/DQ INT8; returns paths and flags."""
    from edgefer.pipeline.artifacts import build_artifacts
    from edgefer.preprocess import Preprocessing
    from edgefer.quantize.options import QuantizeOptions

    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "best.pt"
    if train_epochs > 0:
        from edgefer.training import TrainConfig, train

        res = train(
            TrainConfig(
                data=str(data),
                model=name,
                out=str(out / "train"),
                epochs=train_epochs,
                batch_size=32,
                img_size=img_size,
                seed=0,
                workers=0,
                progress=False,
            )
        )
        shutil.copy2(res.best_checkpoint, ckpt)
    else:
        from edgefer.models import create_model
        from edgefer.training.checkpoint import save_checkpoint

        model = create_model(name, num_classes=len(CLASS_NAMES), pretrained=None)
        save_checkpoint(
            ckpt,
            model=model,
            model_name=name,
            model_args={},
            class_names=CLASS_NAMES,
            preprocessing=Preprocessing(input_size=img_size),
        )
    arts = build_artifacts(
        ckpt,
        out,
        data,
        name="model",
        img_size=img_size,
        max_batch=32,
        reference=True,
        openvino=("fp32", "fp16"),
        int8=("openvino", "onnx"),
        int8_options=QuantizeOptions(calib_size=calib_size, progress=False),
    )
    onnx, fp32, fp16 = arts.onnx, arts.openvino["fp32"], arts.openvino["fp16"]
    q_ov, q_qdq = arts.int8["openvino"], arts.int8["onnx"]
    int8 = _copy_ir(Path(q_ov.artifact), out / "model_int8.xml")
    qdq = out / "model_qdq_int8.onnx"
    shutil.copy2(q_qdq.artifact, qdq)
    return {
        "paths": [ckpt, onnx, fp32, fp16, int8, qdq],
        "trained": train_epochs > 0,
        "reference": arts.reference,
    }


def _p50(row: dict, batch: int) -> float | None:
    lat = (row.get("latency") or {}).get(str(batch)) or {}
    return (lat.get("model") or {}).get("p50_ms")


def goals(results: dict[str, dict]) -> list[str]:
    """The speed goals, computed from the reports (p50, model-only)."""
    lines = ["| Goal | Batch | Measured | Target | Met |", "|---|---|---|---|---|"]

    def row(model: str, label: str) -> dict | None:
        rep = results.get(model)
        return next((r for r in rep["rows"] if r["label"] == label and r["status"] == "ok"), None) if rep else None

    for b in (1, 8):
        for edge in EDGE_MODELS:
            pt, ov8 = row(edge, "pytorch-fp32"), row(edge, "ov-int8")
            if pt and ov8 and _p50(pt, b) and _p50(ov8, b):
                x = _p50(pt, b) / _p50(ov8, b)
                lines.append(
                    f"| {edge}: OV INT8 vs PyTorch FP32 eager speed-up | {b} | {x:.2f}x | >= 4x | "
                    f"{'yes' if x >= 4 else 'NO'} |"
                )
        m50_32, m50_8 = row("msff_resnet50", "ov-fp32"), row("msff_resnet50", "ov-int8")
        r50_8 = row("resnet50", "ov-int8")
        if m50_32 and m50_8 and _p50(m50_8, b):
            x = _p50(m50_32, b) / _p50(m50_8, b)
            lines.append(
                f"| msff_resnet50: OV INT8 vs its OV FP32 speed-up | {b} | {x:.2f}x | >= 2x | "
                f"{'yes' if x >= 2 else 'NO'} |"
            )
        if m50_8 and r50_8 and _p50(r50_8, b):
            x = _p50(m50_8, b) / _p50(r50_8, b)
            lines.append(
                f"| msff_resnet50 OV INT8 latency / resnet50 OV INT8 | {b} | {x:.2f}x | <= 1.25x | "
                f"{'yes' if x <= 1.25 else 'NO'} |"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="all", help="comma-separated model names (default: every registered one)")
    ap.add_argument("--img-size", type=int, default=112)
    ap.add_argument("--train-epochs", type=int, default=0, help="0 = random weights (latency rows only)")
    ap.add_argument("--out", default="runs/results")
    ap.add_argument("--n-train", type=int, default=1400)
    ap.add_argument("--n-test", type=int, default=350)
    ap.add_argument("--calib-size", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument(
        "--threads",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="inference threads for every backend, PyTorch included (default: all usable cores)",
    )
    ap.add_argument("--results", default="benchmarks/RESULTS.md")
    args = ap.parse_args(argv)

    from edgefer.bench import run_benchmark
    from edgefer.bench.report import markdown_table, per_class_table
    from edgefer.bench.system import machine_info
    from edgefer.data import generate_synthetic
    from edgefer.models import list_models
    from edgefer.utils.io import write_text

    out = Path(args.out)
    data = out / "synth"
    if not (data / "basic").exists():
        generate_synthetic(data, n_train=args.n_train, n_test=args.n_test, image_size=100, seed=0)
    names = list_models() if args.models == "all" else [m.strip() for m in args.models.split(",") if m.strip()]
    results: dict[str, dict] = {}
    trained: dict[str, bool] = {}
    t0 = time.time()
    for name in names:
        print(f"== {name}", flush=True)
        arts = make_artifacts(name, data, out / "artifacts" / name, args.img_size, args.train_epochs, args.calib_size)
        trained[name] = arts["trained"]
        specs = [{"path": str(p), "label": lab} for p, lab in zip(arts["paths"], LABELS, strict=True)]
        rep = run_benchmark(
            specs,
            data,
            reference=arts["reference"],
            batches=(1, 8),
            warmup=args.warmup,
            iters=args.iters,
            threads=args.threads,
            out_dir=out / "reports" / name,
            progress=False,
        )
        results[name] = rep.to_dict()
        print(rep.table(), flush=True)
    machine = machine_info()
    cmd = ".venv/bin/python benchmarks/run_results.py " + " ".join(
        a for a in (argv if argv is not None else sys.argv[1:])
    )
    weights = (
        f"**trained** for {args.train_epochs} epochs on the synthetic train split"
        if args.train_epochs
        else "**randomly initialised (untrained)**: the latency, size and agreement rows are meaningful, "
        "the accuracy columns are not (chance level)"
    )
    md = [
        "# Benchmark results (synthetic test split, this machine's CPU)",
        "",
        f"- **Machine**: {machine['cpu']}, {machine['cores_usable']} usable cores "
        f"({', '.join(machine['cpu_flags'])}), {machine['memory_gb']} GB RAM, no GPU; {machine['os']}; "
        f"Python {machine['python']}",
        "- **Packages**: " + ", ".join(f"{k} {v}" for k, v in machine["packages"].items()),
        f"- **Weights**: {weights}.",
        f"- **Input**: {args.img_size}x{args.img_size}; {args.n_test} synthetic test images; batches 1 and 8; "
        f"{args.warmup} warm-up + {args.iters} timed calls; threads: {args.threads or 'backend default'}.",
        "- **Latency** columns are model-only p50/p99 (preallocated input); E2E = decode + preprocess + infer.",
        "- **Δ / agreement** are against the FP32 ONNX reference (`reference.npz`) on the same images.",
        f"- **Reproduce**: `{cmd.strip()}` (took {(time.time() - t0) / 60:.0f} min); per-model JSON/PNG reports are "
        f"in `{out}/reports/<model>/`.",
        "",
        "## Speed goals",
        "",
        *goals(results),
        "",
    ]
    for name, rep in results.items():
        md += [f"## {name} ({'trained' if trained[name] else 'untrained: latency only'})", "", markdown_table(rep), ""]
        pc = per_class_table(rep)
        if pc and trained[name]:
            md += ["Per-class Δ vs FP32 (pts):", "", pc, ""]
    write_text(args.results, "\n".join(md))
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
