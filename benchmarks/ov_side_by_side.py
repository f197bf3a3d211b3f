"""edgefer's OpenVINO backend against OpenVINO's own ``benchmark_app``, on the same IRs, interleaved.

Two measurements per round and IR, each tool in turn (the order alternates between rounds):

* **latency**: ``benchmark_app -hint latency -infer_precision f32 -shape [...] -niter N`` (its reported
  median: the requests' own latency, measured in C++) against edgefer's backend as ``edgefer benchmark``
  times it (:func:`edgefer.backends.open_model`, median wall time of N ``infer`` calls from Python, so
  edgefer's number includes its per-call Python cost and benchmark_app's does not);
* **throughput**: ``benchmark_app -hint throughput -api async -t S`` (its FPS) against edgefer opened
  with ``mode="throughput"`` and :meth:`~edgefer.backends.base.Backend.throughput` for S seconds (the
  ``edgefer benchmark --mode throughput`` path). Both compile with the THROUGHPUT hint, so the plugin picks
  the streams and requests; the table prints both tools' counts, and a round where they differ is an error.

Rounds interleave the tools and the models, so a slow minute on a shared machine hits all of them; the
tables give the median over rounds of each tool's number and the median of the per-round ratios (a ratio
from the same minute is what survives the drift of a shared machine), with the per-round range.

    .venv/bin/python benchmarks/ov_side_by_side.py A.xml B.xml --rounds 9 --iters 500 --seconds 3 \\
        --raw benchmarks/ov_side_by_side.json --notes benchmarks/ov_side_by_side.notes.md \\
        --out benchmarks/ov_side_by_side.md
    # the report again from the saved rounds (new notes), measuring nothing:
    .venv/bin/python benchmarks/ov_side_by_side.py --render benchmarks/ov_side_by_side.json \\
        --notes benchmarks/ov_side_by_side.notes.md --out benchmarks/ov_side_by_side.md

The IRs: ``benchmarks/build_irs.py`` (untrained INT8 IRs of registered models, as a trained one is built).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np

from edgefer.bench.system import cpu_model

#: benchmark_app prints its median in ms, or in us when it is under a millisecond.
MEDIAN = re.compile(r"Median:\s+([0-9.]+)\s*(ms|us)")
FPS = re.compile(r"Throughput:\s+([0-9.]+)\s*FPS")
STREAMS = re.compile(r"NUM_STREAMS:\s+(\d+)")
REQUESTS = re.compile(r"(\d+) inference requests")
#: the issue's targets: edgefer latency <= 1.10x benchmark_app's, throughput >= 0.90x
LATENCY_TARGET, THROUGHPUT_TARGET = 1.10, 0.90


@dataclass
class AppRun:
    """One benchmark_app run: median latency (ms), FPS, streams and requests it used."""

    median_ms: float
    fps: float
    streams: int
    requests: int


def benchmark_app(
    xml: Path, shape: list[int], hint: str, iters: int | None = None, seconds: float | None = None
) -> AppRun:
    """Run ``benchmark_app`` on CPU with ``hint`` for ``iters`` calls or ``seconds``, f32 inference precision."""
    exe = shutil.which("benchmark_app") or str(Path(sys.executable).with_name("benchmark_app"))
    cmd = [exe, "-m", str(xml), "-d", "CPU", "-hint", hint, "-infer_precision", "f32"]
    cmd += ["-shape", f"[{','.join(map(str, shape))}]"]
    cmd += ["-api", "async"] if hint == "throughput" else []
    cmd += ["-niter", str(iters)] if iters else ["-t", str(max(1, round(seconds or 1)))]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True).stdout
    med, fps, streams, requests = (p.search(out) for p in (MEDIAN, FPS, STREAMS, REQUESTS))
    if not (med and fps and streams):
        raise RuntimeError(f"benchmark_app output lacks a median, FPS or NUM_STREAMS:\n{out[-2000:]}")
    median = float(med.group(1)) / (1000.0 if med.group(2) == "us" else 1.0)
    return AppRun(median, float(fps.group(1)), int(streams.group(1)), int(requests.group(1)) if requests else 1)


def edgefer_latency(xml: Path, shape: list[int], iters: int, warmup: int = 30) -> tuple[float, float]:
    """edgefer's OpenVINO backend: median wall time (ms) of ``iters`` batch-``shape[0]`` calls, and the
    median of the same calls' ``InferRequest.latency`` (the engine's own time, as benchmark_app reports it):
    their ratio is edgefer's per-call cost, free of the drift between two processes."""
    from edgefer.backends import open_model

    with open_model(xml, device="cpu") as backend:
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        for _ in range(warmup):
            backend.infer(x)
        request = backend._batches.call_for(shape[0]).request  # the request infer() runs this shape on
        times, engine = [], []
        for _ in range(iters):
            t0 = time.perf_counter()
            backend.infer(x)
            times.append((time.perf_counter() - t0) * 1e3)
            engine.append(float(request.latency))
    return float(np.median(times)), float(np.median(engine))


def edgefer_throughput(xml: Path, shape: list[int], seconds: float, warmup: int = 20) -> AppRun:
    """edgefer in throughput mode for ``seconds``: FPS (images/s), median request latency, streams, requests."""
    from edgefer.backends import open_model

    with open_model(xml, device="cpu", mode="throughput") as backend:
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        run = backend.throughput(x, seconds=seconds, warmup=warmup)
        streams = int(backend.info()["num_streams"])
    return AppRun(float(np.median(run.latencies)) * 1e3, run.fps(shape[0]), streams, run.requests)


def input_shape(xml: Path) -> list[int]:
    from edgefer.metadata import read_metadata

    size = read_metadata(xml).preprocessing.input_size
    return [1, 3, size, size]


def _ratios(ours: list[float], theirs: list[float]) -> tuple[float, float, float]:
    """(median, min, max) of the per-round ratios ours / theirs."""
    r = [o / t for o, t in zip(ours, theirs, strict=True)]
    return statistics.median(r), min(r), max(r)


def _verdict(name: str, ratio: float, target: float, at_most: bool) -> str | None:
    """A line for a row that misses its target (None when it meets it)."""
    if (ratio <= target) if at_most else (ratio >= target):
        return None
    word = "above" if at_most else "below"
    return f"- **{name}: {ratio:.2f}x, {abs(ratio - target) / target * 100:.0f} % {word} the {target:.2f}x target.**"


def measure(models: list[Path], rounds: int, iters: int, seconds: float) -> dict[str, dict[str, list]]:
    """Every round, every model: both tools' latency, then both tools' throughput, order alternating."""
    res: dict[str, dict[str, list]] = {
        m.name: {"ba_lat": [], "ef_lat": [], "ef_engine": [], "ba_tp": [], "ef_tp": []} for m in models
    }
    for r in range(rounds):
        for xml in models:
            shape, d = input_shape(xml), res[xml.name]
            steps = [
                ("ba_lat", partial(benchmark_app, xml, shape, "latency", iters=iters)),
                ("ef_lat", partial(edgefer_latency, xml, shape, iters)),
                ("ba_tp", partial(benchmark_app, xml, shape, "throughput", seconds=seconds)),
                ("ef_tp", partial(edgefer_throughput, xml, shape, seconds)),
            ]
            order = [0, 1, 2, 3] if r % 2 == 0 else [1, 0, 3, 2]
            for i in order:
                key, fn = steps[i]
                d[key].append(fn())
            d["ba_lat"][-1] = d["ba_lat"][-1].median_ms
            d["ef_lat"][-1], engine = d["ef_lat"][-1]
            d["ef_engine"].append(engine)
            ba, ef = d["ba_tp"][-1], d["ef_tp"][-1]
            if (ba.streams, ba.requests) != (ef.streams, ef.requests):
                raise RuntimeError(
                    f"{xml.name}: benchmark_app used {ba.streams} streams / {ba.requests} requests, "
                    f"edgefer {ef.streams} / {ef.requests}: not the same setup"
                )
            print(
                f"round {r + 1}: {xml.name} latency ms ba {d['ba_lat'][-1]:.3f} ef {d['ef_lat'][-1]:.3f}; "
                f"FPS ba {ba.fps:.0f} ef {ef.fps:.0f} ({ef.streams} streams, {ef.requests} requests)",
                file=sys.stderr,
            )
    return res


def render(res: dict[str, dict[str, list]], args: argparse.Namespace, load: tuple[tuple, tuple]) -> str:
    import openvino as ov

    before, after = (", ".join(f"{v:.2f}" for v in la) for la in load)
    when = getattr(args, "generated", None) or time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    versions = getattr(args, "versions", None) or {"openvino": ov.get_version(), "python": platform.python_version()}
    lines = [
        "# edgefer benchmark vs OpenVINO benchmark_app (same IRs, interleaved)",
        "",
        f"Generated by `benchmarks/ov_side_by_side.py` on {when}: "
        f"OpenVINO {versions['openvino']}, Python {versions['python']}, {cpu_model()}, "
        f"{os.cpu_count()} logical CPUs; load average (1, 5, 15 min) {before} before, {after} after. "
        f"{args.rounds} rounds; per round, tool and model: {args.iters} batch-1 calls (latency) and "
        f"{args.seconds:g} s (throughput); f32 inference precision; the tools' order alternates between rounds.",
        "",
        "## Latency (`-hint latency`, batch 1)",
        "",
        "benchmark_app's median is its requests' own latency (C++); edgefer's is the wall time of `infer()` "
        "seen from Python, its per-call cost included. *edgefer engine* is the same calls' "
        "`InferRequest.latency` in edgefer's process: wall / engine is edgefer's per-call cost alone, measured "
        "within each call, so a busy neighbour cannot move it much. Medians over rounds; a ratio is the "
        "median of the per-round ratios (range in brackets).",
        "",
        "| model | benchmark_app p50 ms | edgefer p50 ms | edgefer / benchmark_app | edgefer engine p50 ms "
        "| edgefer wall / engine |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    misses = []
    for name, d in res.items():
        ratio, lo, hi = _ratios(d["ef_lat"], d["ba_lat"])
        own, own_lo, own_hi = _ratios(d["ef_lat"], d["ef_engine"])
        ba, ef, engine = (statistics.median(d[k]) for k in ("ba_lat", "ef_lat", "ef_engine"))
        lines.append(
            f"| {name} | {ba:.3f} | {ef:.3f} | {ratio:.2f} [{lo:.2f}-{hi:.2f}] | {engine:.3f} "
            f"| {own:.2f} [{own_lo:.2f}-{own_hi:.2f}] |"
        )
        misses.append(_verdict(f"{name} latency", ratio, LATENCY_TARGET, at_most=True))
    lines += [
        "",
        "## Throughput (`-hint throughput`, async, batch 1)",
        "",
        "benchmark_app `-api async` with its AsyncInferQueue against `edgefer benchmark --mode throughput`'s "
        "loop; both with the plugin's streams and `OPTIMAL_NUMBER_OF_INFER_REQUESTS` requests (checked equal "
        "every round). FPS: completed calls over the wall time.",
        "",
        "| model | streams / requests | benchmark_app FPS | edgefer FPS | edgefer / benchmark_app |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, d in res.items():
        ba_fps, ef_fps = [r.fps for r in d["ba_tp"]], [r.fps for r in d["ef_tp"]]
        ratio, lo, hi = _ratios(ef_fps, ba_fps)
        setup = f"{d['ef_tp'][0].streams} / {d['ef_tp'][0].requests}"
        lines.append(
            f"| {name} | {setup} | {statistics.median(ba_fps):.0f} | {statistics.median(ef_fps):.0f} | "
            f"{ratio:.2f} [{lo:.2f}-{hi:.2f}] |"
        )
        misses.append(_verdict(f"{name} throughput", ratio, THROUGHPUT_TARGET, at_most=False))
    misses = [m for m in misses if m]
    lines += ["", "## Targets", ""]
    lines.append(
        f"Latency <= {LATENCY_TARGET:.2f}x and throughput >= {THROUGHPUT_TARGET:.2f}x benchmark_app: "
        + ("met by every row." if not misses else "missed by these rows:")
    )
    lines += misses
    names = list(res)
    if len(names) >= 2:
        lines += ["", f"Per-round latency ratios between models (benchmark_app numbers, against {names[0]}):", ""]
        for a in names[1:]:
            ratio = statistics.median(x / y for x, y in zip(res[a]["ba_lat"], res[names[0]]["ba_lat"], strict=True))
            lines.append(f"- {a}: {ratio:.2f}")
    if args.notes:
        lines += ["", args.notes.read_text(encoding="utf-8").rstrip()]
    return "\n".join(lines) + "\n"


def save_raw(path: Path, res: dict[str, dict[str, list]], args: argparse.Namespace, load: tuple) -> None:
    """Every round's numbers (and the run's settings), so the report can be rendered again with notes."""
    raw = {
        "settings": {"rounds": args.rounds, "iters": args.iters, "seconds": args.seconds, "load": load},
        "versions": {"openvino": __import__("openvino").get_version(), "python": platform.python_version()},
        "generated": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "results": {
            m: {k: [asdict(v) if isinstance(v, AppRun) else v for v in vs] for k, vs in d.items()}
            for m, d in res.items()
        },
    }
    path.write_text(json.dumps(raw, indent=1), encoding="utf-8")


def load_raw(path: Path, args: argparse.Namespace) -> tuple[dict[str, dict[str, list]], tuple]:
    """What :func:`save_raw` wrote, with ``args`` set to the run's settings."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    for k in ("rounds", "iters", "seconds"):
        setattr(args, k, raw["settings"][k])
    args.generated, args.versions = raw["generated"], raw["versions"]
    res = {
        m: {k: [AppRun(**v) if isinstance(v, dict) else v for v in vs] for k, vs in d.items()}
        for m, d in raw["results"].items()
    }
    return res, tuple(tuple(la) for la in raw["settings"]["load"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", type=Path)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=300, help="batch-1 calls per latency measurement")
    ap.add_argument("--seconds", type=int, default=3, help="time budget per throughput measurement (whole s)")
    ap.add_argument("--notes", type=Path, default=None, help="markdown appended to the report (why a target is missed)")
    ap.add_argument("--raw", type=Path, default=None, help="write every round's numbers here (JSON)")
    ap.add_argument("--render", type=Path, default=None, help="render the report from a --raw file, measuring nothing")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.render:
        res, load = load_raw(args.render, args)
    else:
        if not args.models:
            ap.error("give the IRs to measure (or --render RAW.json)")
        before = os.getloadavg()
        res = measure(args.models, args.rounds, args.iters, args.seconds)
        load = (before, os.getloadavg())
        if args.raw:
            save_raw(args.raw, res, args, load)
    text = render(res, args, load)
    if args.out:
        tmp = args.out.with_name(args.out.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(args.out)
    print(text)


if __name__ == "__main__":
    main()
