"""What the INT8 default (``ptq-acc`` held to the production gate, issue 26) costs against plain PTQ.

For each trained model given as ``NAME=CHECKPOINT@DATASET`` and each target, this runs, as a user
types them,

    edgefer quantize --checkpoint C --data D --target T --out OUT/NAME/T-default           # the default
    edgefer quantize --checkpoint C --data D --target T --method ptq --out OUT/NAME/T-ptq  # plain PTQ

and records each one's wall time, exit code, Δ, worst-class Δ, agreement with FP32, the gate verdict
and the layers the default kept in floating point. Then it times both artifacts on this CPU,
interleaved (round after round, the order alternating, ``--calls`` batch-1 calls per model per
round, one inference thread), and gives the medians and their ratio (default / plain: the price of
the layers kept in floating point), and the median and quartiles of the per-round ratios (the two
models measured under the same load).

    .venv/bin/python benchmarks/int8_default.py seed0=runs/q/seed0/train/best.pt@runs/q/seed0/data \\
        --targets openvino,onnx --out runs/q/int8 --md runs/q/int8/table.md

Results are kept in ``OUT/results.json`` (a rerun skips a model/target already there); the markdown
table goes to ``--md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def run_quantize(ckpt: str, data: str, target: str, out: Path, plain: bool) -> dict[str, Any]:
    """One ``edgefer quantize`` through the console script; its report, exit code and wall time."""
    exe = Path(sys.executable).with_name("edgefer")
    cmd = [str(exe), "quantize", "--checkpoint", ckpt, "--data", data, "--target", target]
    cmd += [*(["--int8-method", "ptq"] if plain else []), "--out", str(out), "--quiet", "--overwrite"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    (out.parent / f"{out.name}.log").write_text(proc.stdout + proc.stderr)
    reports = sorted(out.glob("*.report.json"))
    report = json.loads(reports[0].read_text()) if reports else None
    return {"command": " ".join(["edgefer", *cmd[1:]]), "rc": proc.returncode, "wall_s": wall, "report": report}


def interleaved_latency(paths: list[Path], rounds: int, calls: int) -> list[list[float]]:
    """Per-round median batch-1 latency (ms) of each model, the models taking turns (order
    alternating each round) so that the load of a shared machine falls on both alike."""
    from edgefer.backends import open_model

    models = [open_model(p, threads=1) for p in paths]
    size = models[0].input_size
    x = np.random.default_rng(0).standard_normal((1, 3, size, size), dtype=np.float32)
    for m in models:
        for _ in range(5):
            m.infer(x)
    per_round: list[list[float]] = [[] for _ in models]
    for r in range(rounds):
        order = range(len(models)) if r % 2 == 0 else reversed(range(len(models)))
        for i in order:
            times = []
            for _ in range(calls):
                t0 = time.perf_counter()
                models[i].infer(x)
                times.append(1e3 * (time.perf_counter() - t0))
            per_round[i].append(statistics.median(times))
    return per_round


def _row(name: str, target: str, res: dict[str, Any]) -> str:
    d, p = res["default"], res["ptq"]
    dr, pr = d.get("report") or {}, p.get("report") or {}
    kept = ((dr.get("accuracy_control") or {}).get("kept_fp")) or []
    lat = res.get("latency_ms") or {}

    def num(r: dict[str, Any], key: str, scale: float = 1.0, fmt: str = "+.2f") -> str:
        v = r.get(key)
        return "—" if v is None else format(scale * v, fmt)

    gate = {True: "passed", False: "FAILED", None: "—"}[dr.get("budget_met")]
    lat_txt = "—"
    if lat:
        lat_txt = f"{lat['default']:.2f} / {lat['ptq']:.2f} = {lat['ratio']:.2f}x"
        rounds = res.get("latency_rounds_ms")
        if rounds:  # the ratio within each round (both models under the same load), its median and quartiles
            ratios = [a / b for a, b in zip(*rounds, strict=True)]
            q1, q2, q3 = statistics.quantiles(ratios, n=4)
            lat_txt += f" (per round {q2:.2f}x, IQR {q1:.2f}-{q3:.2f})"
    return (
        f"| {name} | {target} | {num(pr, 'delta_pts')} / {num(pr, 'agreement', 100, '.1f')} % "
        f"| {num(dr, 'delta_pts')} / {num(dr, 'worst_class_delta_pts')} {dr.get('worst_class', '')} "
        f"/ {num(dr, 'agreement', 100, '.1f')} % | {gate} (exit {d['rc']}) | {len(kept)} "
        f"| {d['wall_s']:.0f} / {p['wall_s']:.0f} | {lat_txt} |"
    )


def write_markdown(results: dict[str, Any], path: Path) -> None:
    lines = [
        "| model | target | plain PTQ: Δ / agreement | default: Δ / worst class Δ / agreement | production gate "
        "| layers kept in FP | wall s: default / plain | batch-1 ms: default / plain = ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key in results:
        name, target = key.split("/")
        lines.append(_row(name, target, results[key]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="NAME=CHECKPOINT@DATASET")
    ap.add_argument("--targets", default="openvino,onnx")
    ap.add_argument("--out", default="runs/int8-default")
    ap.add_argument("--md", default="runs/int8-default/table.md")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--calls", type=int, default=40)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "results.json"
    results: dict[str, Any] = json.loads(saved.read_text()) if saved.is_file() else {}
    for spec in args.models:
        name, rest = spec.split("=", 1)
        ckpt, data = rest.split("@", 1)
        for target in args.targets.split(","):
            key = f"{name}/{target}"
            if key in results:
                continue
            res = {
                "default": run_quantize(ckpt, data, target, out / name / f"{target}-default", plain=False),
                "ptq": run_quantize(ckpt, data, target, out / name / f"{target}-ptq", plain=True),
            }
            arts = [(res[k].get("report") or {}).get("artifact") for k in ("default", "ptq")]
            if all(arts):
                per_round = interleaved_latency([Path(a) for a in arts], args.rounds, args.calls)
                med = [statistics.median(r) for r in per_round]
                res["latency_ms"] = {"default": med[0], "ptq": med[1], "ratio": med[0] / med[1]}
                res["latency_rounds_ms"] = per_round
            results[key] = res
            saved.write_text(json.dumps(results, indent=1))
            write_markdown(results, Path(args.md))
            d = res["default"]
            plain_s = res["ptq"]["wall_s"]
            print(f"{key}: default exit {d['rc']} in {d['wall_s']:.0f} s, plain {plain_s:.0f} s", flush=True)
    write_markdown(results, Path(args.md))


if __name__ == "__main__":
    main()
