"""Frame-loop benchmark: ``edgefer run`` end to end on a 640x480 video with one to three moving faces,
before (detector on every full frame) and after (detection every N frames on a downscaled copy,
boxes carried forward by template matching in between).

The video (300 frames, 30 FPS, mp4v): a textured real scene (``skimage.data.coffee``, 640x480) with
one, then two, then three copies of the real face of ``skimage.data.astronaut`` (100 frames each),
110-150 px wide, each moving on its own smooth path at up to ~3 px per frame, as a person in front of
a camera does. Real photographs rather than the synthetic generator: OpenCV's Haar cascade finds few
of the drawn faces (``benchmarks/runtime.md``), a detector that finds nothing leaves nothing to
classify or carry, and the cascade's cost depends on the texture of the scene (a smooth synthetic
background makes it look cheaper than on a camera).

The model is the edge model ``msff_mobilenetv3`` (untrained weights: latency does not depend on
them) as OpenVINO INT8 (NNCF PTQ through ``edgefer.pipeline.artifacts.build_artifacts``, as
``benchmarks/runtime_bench.py`` does). Every configuration is one ``edgefer run`` process
(``--quiet --summary-json``; a file is read without drops, so frames/s is the loop's throughput:
decode, detect or carry, align, preprocess, infer, events); configurations are interleaved and
repeated, and the medians reported.

    .venv/bin/python benchmarks/frame_loop_bench.py --out benchmarks/runtime_frame_loop.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

# (name, edgefer run options); the first is "before" (the detector on every frame, at the Haar
# cascade's own 480 px), the fifth is the new default of edgefer run (--detect-every 5 --detect-width 480)
CONFIGS = [
    ("before: detect every frame, 480 px", ["--detect-every", "1", "--detect-width", "0"]),
    ("detect every frame, 320 px", ["--detect-every", "1", "--detect-width", "320"]),
    ("detect every 3, 480 px", ["--detect-every", "3", "--detect-width", "480"]),
    ("detect every 5, 320 px", ["--detect-every", "5", "--detect-width", "320"]),
    ("after: detect every 5, 480 px (default)", ["--detect-every", "5", "--detect-width", "480"]),
    ("detect every 10, 480 px", ["--detect-every", "10", "--detect-width", "480"]),
]


def make_video(path: Path, frames: int = 300, fps: float = 30.0) -> list[int]:
    """Write the benchmark video; return the true number of faces per frame."""
    from skimage.data import astronaut, coffee

    from edgefer.runtime.detect import HaarDetector

    photo = cv2.cvtColor(astronaut(), cv2.COLOR_RGB2BGR)
    (x, y, w, h) = HaarDetector(max_side=None).detect(photo)[0].box
    m = int(0.35 * w)
    face = photo[max(0, y - m) : y + h + m, max(0, x - m) : x + w + m]
    background = cv2.resize(cv2.cvtColor(coffee(), cv2.COLOR_RGB2BGR), (640, 480), interpolation=cv2.INTER_AREA)
    sizes = (150, 130, 110)
    # each face: centre path = base + amplitude * sin(2 pi t / period + phase); <= ~3 px per frame
    paths = [
        ((170, 200), (90, 60), (200, 170), (0.0, 1.0)),
        ((470, 170), (80, 50), (230, 150), (2.0, 0.5)),
        ((330, 360), (120, 40), (260, 190), (4.0, 2.5)),
    ]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (640, 480))
    if not writer.isOpened():
        raise SystemExit("cannot write the benchmark video (mp4v)")
    counts = []
    for t in range(frames):
        n = 1 + min(2, t * 3 // frames)
        frame = background.copy()
        for i in range(n):
            side = sizes[i]
            (bx, by), (ax, ay), (px, py), (fx, fy) = paths[i]
            cx = bx + ax * np.sin(2 * np.pi * t / px + fx)
            cy = by + ay * np.sin(2 * np.pi * t / py + fy)
            x0 = int(np.clip(cx - side / 2, 0, 640 - side))
            y0 = int(np.clip(cy - side / 2, 0, 480 - side))
            frame[y0 : y0 + side, x0 : x0 + side] = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
        writer.write(frame)
        counts.append(n)
    writer.release()
    return counts


def build_model(work: Path) -> tuple[Path, str]:
    """msff_mobilenetv3 as OpenVINO INT8, built as benchmarks/runtime_bench.py builds it."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from runtime_bench import build_artifacts

    arts = build_artifacts(work, "msff_mobilenetv3", 112)
    return arts["ov_int8"], "OpenVINO INT8 (NNCF PTQ)"


def run_once(edgefer: list[str], model: Path, video: Path, opts: list[str], work: Path, tag: str) -> dict:
    summary = work / f"summary-{tag}.json"
    cmd = [*edgefer, "run", "--model", str(model), "--source", str(video), "--quiet", "--overwrite"]
    cmd += ["--summary-json", str(summary), *opts]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    return json.loads(summary.read_text())


MARK_START = "<!-- frame-loop:start (benchmarks/frame_loop_bench.py writes this section) -->"
MARK_END = "<!-- frame-loop:end -->"


def load_runs(work: Path) -> tuple[dict[str, list[dict]], list[float]]:
    """The saved summaries of every configuration (all rounds found in ``work``) and the load averages."""
    runs: dict[str, list[dict]] = {name: [] for name, _ in CONFIGS}
    loads = []
    for path in sorted(work.glob("summary-*-*.json")):
        i = int(path.stem.rsplit("-", 1)[1])
        runs[CONFIGS[i][0]].append(json.loads(path.read_text()))
        load = path.with_name(path.name.replace("summary-", "load-").replace(".json", ".txt"))
        if load.exists():
            loads.append(float(load.read_text()))
    return runs, loads


def table(runs: dict[str, list[dict]], frames: int, true_faces: int) -> str:
    lines = [
        "| configuration | FPS median (min-max) | detector ran on | faces found / true | detect (or carry) "
        "| detect p50 | align | preprocess | infer | other (decode, events, queue) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, _ in CONFIGS:
        rs = runs[name]
        if not rs:
            continue
        fps = [s["fps"] for s in rs]
        frame_ms = statistics.median(1000.0 * s["wall_s"] / s["frames_processed"] for s in rs)
        stage = {
            k: statistics.median(s["stage_ms"][k]["mean"] for s in rs)
            for k in ("detect", "align", "preprocess", "infer", "total")
        }
        other = max(0.0, frame_ms - stage["total"])
        share = {k: 100.0 * v / frame_ms for k, v in stage.items()}
        det = statistics.median(s["frames_detected"] for s in rs)
        det_p50 = statistics.median(s["stage_ms"]["detect"]["p50"] for s in rs)
        faces = statistics.median(s["faces"] for s in rs)
        lines.append(
            f"| {name} | {statistics.median(fps):.1f} ({min(fps):.1f}-{max(fps):.1f}) | {det:.0f} / {frames} | "
            f"{faces / true_faces:.0%} | {stage['detect']:.1f} ms ({share['detect']:.0f} %) | {det_p50:.1f} ms | "
            f"{stage['align']:.2f} ms ({share['align']:.0f} %) | {stage['preprocess']:.2f} ms "
            f"({share['preprocess']:.0f} %) | {stage['infer']:.1f} ms ({share['infer']:.0f} %) | "
            f"{other:.1f} ms ({100 * other / frame_ms:.0f} %) |"
        )
    return "\n".join(lines)


def write_section(path: Path, text: str) -> None:
    """Put ``text`` between the frame-loop markers of ``path`` (appended when they are not there yet)."""
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    block = f"{MARK_START}\n{text.rstrip()}\n{MARK_END}"
    if MARK_START in old and MARK_END in old:
        head, rest = old.split(MARK_START, 1)
        new = head + block + rest.split(MARK_END, 1)[1]
    else:
        new = old.rstrip() + ("\n\n" if old else "") + block + "\n"
    path.write_text(new, encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved repetitions of every configuration")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--work", type=Path, default=None, help="keep the model, video and summaries here (reused)")
    ap.add_argument("--report-only", action="store_true", help="no runs: tabulate the summaries saved in --work")
    ap.add_argument("--out", type=Path, default=None, help="print the table only, or write it into this Markdown file")
    args = ap.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="edgefer-loopbench-"))
    work.mkdir(parents=True, exist_ok=True)
    video = work / "faces_640x480.mp4"
    counts = make_video(video, args.frames)
    model = work / "int8_model.txt"
    if model.exists():
        artifact, kind = Path(model.read_text().split("\n")[0]), model.read_text().split("\n")[1]
    else:
        artifact, kind = build_model(work / "model")
        model.write_text(f"{artifact}\n{kind}\n")
    if not args.report_only:
        for old in [*work.glob("summary-*.json"), *work.glob("load-*.txt")]:
            old.unlink()
        exe = shutil.which("edgefer") or str(Path(sys.executable).with_name("edgefer"))
        for r in range(args.rounds):
            for i, (name, opts) in enumerate(CONFIGS):
                (work / f"load-{r}-{i}.txt").write_text(f"{os.getloadavg()[0]:.2f}")
                s = run_once([exe], artifact, video, opts, work, f"{r}-{i}")
                print(f"round {r} {name}: {s['fps']:.1f} FPS, detector on {s['frames_detected']} frames", flush=True)
    runs, loads = load_runs(work)
    text = table(runs, args.frames, sum(counts))
    print(text)
    import openvino

    rounds = min(len(v) for v in runs.values())
    load = f"{min(loads):.1f}-{max(loads):.1f}" if loads else "not recorded"
    machine = (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, OpenVINO "
        f"{openvino.__version__}, OpenCV {cv2.__version__}; 1-minute load average {load} when the runs started"
    )
    if args.out:
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        write_section(args.out, report(text, kind, rounds, args.frames, sum(counts), machine, stamp))


def report(text: str, kind: str, rounds: int, frames: int, true_faces: int, machine: str, stamp: str) -> str:
    return f"""## The frame loop: `edgefer run` end to end, detection every N frames

Measured {stamp} with `benchmarks/frame_loop_bench.py` ({rounds} interleaved rounds of every
configuration, medians; each run is one `edgefer run --quiet --summary-json` process):

    PATH=.venv/bin:$PATH .venv/bin/python benchmarks/frame_loop_bench.py --out benchmarks/runtime.md

Video: {frames} frames, 640x480 at 30 FPS: a real textured scene with 1, then 2, then 3 moving real
faces (100 frames each, {true_faces} faces in all; see the script). Model: `msff_mobilenetv3`, {kind},
untrained weights, Haar cascade detector. Machine: {machine}.

{text}

- **FPS**: frames processed / wall time of the loop (a file is read without drops, so this is
  throughput: decode + detect or carry + align + preprocess + infer + events).
- **detector ran on**: frames the face detector ran on; on the others the boxes were carried
  forward by template matching (`edgefer.runtime.tracking.BoxCarrier`), or re-detected at once
  when a face was lost.
- **faces found / true**: faces reported over all frames / faces in the video: what downscaling or
  carrying costs in recall (the cascade at 320 px misses faces it finds at 480 px).
- Stage columns: mean ms per frame (median over rounds) and share of the frame's wall time.
  `detect (or carry)` is the whole box-finding stage, the cascade on a detected frame, template
  matching on a carried one; `detect p50` is its median, i.e. the cost of a carried frame when the
  detector ran on fewer than half of the frames, the cascade's otherwise.

Caveats: 2 CPU cores shared with other jobs (the load average above; timings move by +-30 % or
more between runs, which is why the rounds are interleaved and medians reported): read the ratios
between rows, not the absolute FPS. The cascade's cost depends on the scene's texture.
"""


if __name__ == "__main__":
    main()
