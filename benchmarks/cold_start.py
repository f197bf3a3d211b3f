"""Cold start of ``edgefer run``: from launching the process to the first frame's result, with the
OpenVINO model cache empty (cold: OpenVINO compiles and writes the cache), filled by the run before
(warm: the compiled model is read back) and off (``--no-cache``: compiles every start, what every
start cost before the cache was on by default).

Each measurement is one ``edgefer run --max-frames 1 --jsonl EVENTS`` process on the frame-loop video
(``benchmarks/frame_loop_bench.py`` makes it and the models, in the same ``--work`` folder). The
first event line holds the frame's capture time and its capture-to-result latency, so the first
frame's result time is ``timestamp + latency``; first-frame time = that - the moment the process was
launched (Python start, imports, model load/compile, capture open, the first inference). Rounds
interleave the three modes; medians are reported. The disk cache of the OS is warm in every mode
(the files were read just before): "cold" means OpenVINO's cache, not the page cache.

    PATH=.venv/bin:$PATH .venv/bin/python benchmarks/cold_start.py --work /tmp/loopbench --out benchmarks/runtime.md
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from frame_loop_bench import build_model, machine_line, make_video, write_section

MARKS = ("<!-- cold-start:start (benchmarks/cold_start.py writes this section) -->", "<!-- cold-start:end -->")
MODES = ("no cache (--no-cache)", "cold cache (empty --cache-dir)", "warm cache (filled by the run before)")


def first_frame_s(exe: str, model: Path, video: Path, work: Path, opts: list[str]) -> tuple[float, float]:
    """Seconds from launch to the first frame's result, and to the process's exit."""
    events = work / "cold-events.jsonl"
    cmd = [exe, "run", "-m", str(model), "-s", str(video), "--max-frames", "1", "--quiet", "--overwrite"]
    cmd += ["--jsonl", str(events), *opts]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    t_exit = time.time()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    first = json.loads(events.read_text().splitlines()[0])
    return first["timestamp"] + first["latency_ms"] / 1e3 - t0, t_exit - t0


LOAD_SCRIPT = """
import sys, time
import openvino  # imported before the clock starts: the cache cuts the compile, not the import
from edgefer.backends import open_model
t = time.perf_counter()
b = open_model(sys.argv[1], cache_dir=sys.argv[2] or None)
print(time.perf_counter() - t)
b.close()
"""


def load_s(model: Path, cache: Path | None) -> float:
    """Seconds to open (compile, or read back from ``cache``) the model alone, in a fresh process."""
    cmd = [sys.executable, "-c", LOAD_SCRIPT, str(model), "" if cache is None else str(cache)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True)
    return float(proc.stdout.strip().splitlines()[-1])


def measure(exe: str, models: dict[str, Path], video: Path, work: Path, rounds: int) -> tuple[dict, dict]:
    """Every (model, mode) once per round, interleaved; the (first frame, exit) times of each, and the
    model's load time alone (a fresh process and cache folder of its own) per mode."""
    got: dict[tuple[str, str], list] = {(m, mode): [] for m in models for mode in MODES}
    loads: dict[tuple[str, str], list] = {(m, mode): [] for m in models for mode in MODES}
    for r in range(rounds):
        for name, model in models.items():
            cache = Path(tempfile.mkdtemp(prefix="edgefer-ovcache-", dir=work))
            runs = [
                (MODES[0], ["--no-cache"]),
                (MODES[1], ["--cache-dir", str(cache)]),
                (MODES[2], ["--cache-dir", str(cache)]),
            ]
            order = runs if r % 2 == 0 else [runs[1], runs[2], runs[0]]  # no-cache first, then last
            for mode, opts in order:
                got[(name, mode)].append(first_frame_s(exe, model, video, work, opts))
            if not any(cache.iterdir()):
                raise SystemExit(f"OpenVINO wrote nothing into {cache}: the cache was not used")
            shutil.rmtree(cache)
            cache.mkdir()
            for mode, where in ((MODES[1], cache), (MODES[2], cache), (MODES[0], None)):
                loads[(name, mode)].append(load_s(model, where))
            shutil.rmtree(cache)
            print(f"round {r} {name}: " + ", ".join(f"{m} {got[(name, m)][-1][0]:.2f} s" for m in MODES), flush=True)
    return got, loads


def table(got: dict[tuple[str, str], list], loads: dict[tuple[str, str], list]) -> str:
    lines = [
        "| model | start | first frame, s: median (min-max) | process exit, s | vs no cache | model load alone, ms |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name in dict.fromkeys(m for m, _ in got):
        base = statistics.median(t for t, _ in got[(name, MODES[0])])
        for mode in MODES:
            first = [t for t, _ in got[(name, mode)]]
            med = statistics.median(first)
            ends = statistics.median(e for _, e in got[(name, mode)])
            lines.append(
                f"| {name} | {mode} | {med:.2f} ({min(first):.2f}-{max(first):.2f}) | {ends:.2f} | {med / base:.2f}x | "
                f"{1e3 * statistics.median(loads[(name, mode)]):.0f} |"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="frame_loop_bench.py's folder (model, video)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    video = args.work / "faces_640x480.mp4"
    if not video.exists():
        make_video(video)
    saved = args.work / "int8_model.txt"
    if saved.exists():
        int8 = Path(saved.read_text().split("\n")[0])
    else:
        int8, kind = build_model(args.work / "model")
        saved.write_text(f"{int8}\n{kind}\n")
    models = {"OpenVINO INT8": int8}
    fp32 = sorted(p for p in int8.parent.parent.rglob("*.xml") if "int8" not in p.name)
    if fp32:
        models["OpenVINO FP32"] = fp32[0]
    exe = shutil.which("edgefer") or str(Path(sys.executable).with_name("edgefer"))
    load_before = os.getloadavg()[0]
    got, loads = measure(exe, models, video, args.work, args.rounds)
    text = table(got, loads)
    print(text)
    if args.out:
        machine = machine_line(f"{load_before:.1f}-{os.getloadavg()[0]:.1f}")
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        write_section(args.out, report(text, args.rounds, machine, stamp), MARKS)


def report(text: str, rounds: int, machine: str, stamp: str) -> str:
    return f"""## Cold start: launch to first frame, with and without the model cache

Measured {stamp} with `benchmarks/cold_start.py` ({rounds} interleaved rounds, medians; each
measurement is one `edgefer run --max-frames 1 --jsonl EVENTS` process on the 640x480 frame-loop
video, untrained `msff_mobilenetv3` at 112 px, Haar detector):

    PATH=.venv/bin:$PATH .venv/bin/python benchmarks/cold_start.py --work /tmp/loopbench --out benchmarks/runtime.md

Machine: {machine}.

{text}

- **first frame**: from launching the process to the first frame's result (its event's capture time
  plus its latency): Python start, imports, model load (compile, or read back from the cache), the
  capture opening, the first detection and inference.
- **cold cache**: an empty `--cache-dir` (the first start of a device: OpenVINO compiles and writes
  the cache); **warm cache**: the same folder on the next start, the case of every restart since the
  cache is on by default (`edgefer/runtime/cache.py`); **no cache**: `--no-cache`, every start as
  it was before.
- **model load alone**: `open_model` (read and compile, or read back from the cache; OpenVINO
  already imported) timed in a fresh process of its own, per mode: the part of the first frame the
  cache can cut. The rest is
  Python's start, the imports (NumPy, OpenCV, OpenVINO), opening the capture and the first frame.
- The OS page cache is warm in every mode; "cold" is OpenVINO's cache only.
"""


if __name__ == "__main__":
    main()
