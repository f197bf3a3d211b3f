"""Run the demo pipeline (what ``make demo`` runs) over several seeds and write ``benchmarks/demo.md``.

A demo that passed once on one machine is not a result (DESIGN.md: machines differ, training runs on
a knife's edge go another way). This script runs ``edgefer pipeline`` with the demo's settings once
per seed (the seed draws the synthetic set *and* initialises the model), then tabulates, per seed:
FP32 accuracy and mean-class accuracy, every INT8 row's Δ, worst-class Δ (in points and images) and
agreement with the FP32 reference, the gate verdict, and the wall time.

    .venv/bin/python benchmarks/demo_seeds.py --seeds 0,1,2,3,4 --out runs/demo-seeds

Each run goes through the installed console script, exactly as a user types it; its full output is
kept in ``<out>/seed<S>/pipeline.log``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from edgefer.bench.system import cpu_model

ROOT = Path(__file__).resolve().parents[1]
DEMO_ARGS = ["pipeline", "--data", "synthetic", "--arch", "msff_mobilenetv3", "--targets", "openvino,onnx,trt"]


def run_seed(seed: int, out: Path, extra: list[str]) -> dict:
    """One pipeline run; returns the numbers of its report (and the exit code and wall time).

    The result is also written to ``<out>/seed<S>/result.json``; with ``--reuse`` a seed that has
    one is not run again (an interrupted sweep continues where it stopped)."""
    run_dir = out / f"seed{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable).with_name("edgefer")
    cmd = [str(exe), *DEMO_ARGS, "--out", str(run_dir / "run"), "--seed", str(seed), "--overwrite", *extra]
    t0 = time.perf_counter()
    with open(run_dir / "pipeline.log", "w") as log:
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT).returncode
    wall = time.perf_counter() - t0
    report_path = run_dir / "run" / "report" / "report.json"
    result = {"seed": seed, "rc": rc, "wall_s": wall, "command": " ".join(["edgefer", *cmd[1:]])}
    if report_path.is_file():
        result["report"] = json.loads(report_path.read_text())
    (run_dir / "result.json").write_text(json.dumps(result))
    return result


def _fmt_int8(row: dict) -> str:
    acc = row.get("accuracy") or {}
    if row.get("status") != "ok" or acc.get("delta_pts") is None:
        return f"did not run ({row.get('status')})"
    worst = acc.get("worst_class_delta_pts")
    worst_txt = "—"
    if worst is not None:
        name = acc.get("worst_class") or "?"
        imgs = acc.get("worst_class_net_images")
        worst_txt = f"{worst:+.2f} {name}" + (f" ({imgs:+d} img)" if isinstance(imgs, int) else "")
    return f"{acc['delta_pts']:+.2f} / {worst_txt} / {100 * acc['agreement']:.1f} %"


def write_markdown(results: list[dict], path: Path, argv: list[str]) -> None:
    int8_labels: list[str] = []
    for r in results:
        for row in (r.get("report") or {}).get("rows", []):
            if row.get("precision") == "int8" and row["label"] not in int8_labels:
                int8_labels.append(row["label"])
    head = ["seed", "FP32 acc %", "FP32 mean-class %"] + [f"{lbl}: Δ / worst class / agreement" for lbl in int8_labels]
    head += ["gate", "wall (min)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    fp32_accs = []
    for r in results:
        rep = r.get("report") or {}
        rows = {row["label"]: row for row in rep.get("rows", [])}
        ref = next(
            (
                row
                for row in rep.get("rows", [])
                if row.get("backend") == "onnxruntime" and row.get("precision") == "fp32"
            ),
            None,
        )
        acc = (ref or {}).get("accuracy") or {}
        if acc.get("accuracy") is not None:
            fp32_accs.append(100 * acc["accuracy"])
        verdicts = {True: "passed", False: "FAILED", None: "—"}
        gate = verdicts[rep.get("gate_passed")] if rep else f"no report (exit {r['rc']})"
        cells = [
            str(r["seed"]),
            f"{100 * acc['accuracy']:.2f}" if acc.get("accuracy") is not None else "—",
            f"{100 * acc['mean_class_accuracy']:.2f}" if acc.get("mean_class_accuracy") is not None else "—",
        ]
        cells += [_fmt_int8(rows[lbl]) if lbl in rows else "—" for lbl in int8_labels]
        cells += [gate, f"{r['wall_s'] / 60:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    gates = [(r.get("report") or {}).get("gate") for r in results]
    gate_txt = ",".join(f"{k}={v:g}" for k, v in (next((g for g in gates if g), {}) or {}).items())
    n_pass = sum(1 for r in results if (r.get("report") or {}).get("gate_passed"))
    text = [
        "# The demo over five seeds",
        "",
        "What `make demo` runs (`edgefer pipeline --data synthetic --model msff_mobilenetv3 --targets "
        "openvino,onnx,trt`), once per seed; the seed draws the synthetic set and initialises the model. "
        "Generated by:",
        "",
        "```bash",
        ".venv/bin/python benchmarks/demo_seeds.py " + " ".join(argv),
        "```",
        "",
        f"Machine: {cpu_model()}, {platform.system()} {platform.machine()}, Python {platform.python_version()}; "
        f"date {time.strftime('%Y-%m-%d')}. Wall time is the whole pipeline (data, training, export, quantization, "
        "benchmark, bundle) without the venv set-up, measured on a shared 2-core machine (±30 % between runs).",
        "",
        "Why the demo uses synthetic difficulty 0.6 (msff_mobilenetv3 sat at the class prior at 1.0): "
        "`benchmarks/learning_probe.md`.",
        "",
        f"Gate: `{gate_txt}`. INT8 cells: accuracy Δ vs the FP32 reference (pts) / worst class Δ (pts, and net "
        "images) / top-1 agreement with the FP32 reference.",
        "",
        *lines,
        "",
        f"**{n_pass} of {len(results)} seeds pass the gate**; FP32 accuracy: worst seed "
        f"{min(fp32_accs):.2f} %, best {max(fp32_accs):.2f} % (chance on this imbalanced split: always "
        "'Happiness', about 37 %)."
        if fp32_accs
        else "No run produced a report.",
        "",
    ]
    path.write_text("\n".join(text))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--out", default="runs/demo-seeds")
    ap.add_argument("--md", default=str(ROOT / "benchmarks" / "demo.md"))
    ap.add_argument("--reuse", action="store_true", help="keep the result of a seed that already has one")
    ap.add_argument(
        "--plots", default="", help="copy the first seed's Pareto and per-class plots to this folder (default: none)"
    )
    ap.add_argument("extra", nargs="*", help="more pipeline flags (after --)")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    out = Path(args.out)
    results = []
    for seed in seeds:
        saved = out / f"seed{seed}" / "result.json"
        r = json.loads(saved.read_text()) if args.reuse and saved.is_file() else run_seed(seed, out, args.extra)
        rep = r.get("report") or {}
        print(f"seed {seed}: exit {r['rc']}, gate {rep.get('gate_passed')}, {r['wall_s'] / 60:.1f} min", flush=True)
        results.append(r)
        write_markdown(results, Path(args.md), sys.argv[1:])
        if len(results) == 1 and args.plots:
            for name in ("pareto.png", "per_class_delta.png"):
                src = out / f"seed{seed}" / "run" / "report" / name
                if src.is_file():
                    Path(args.plots).mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(src, Path(args.plots) / name)
    print(f"wrote {args.md}")


if __name__ == "__main__":
    main()
