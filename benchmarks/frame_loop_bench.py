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

``--streams 1,2,4`` measures several streams instead: one ``edgefer run`` with that many ``--source``
copies of the video (default settings: one shared detector and classifier, the faces of every stream
classified in one call per tick) and reports frames/s per stream and each stage's share of the wall
time, in its own section of the Markdown file.
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
    return _run_cmd(cmd, summary)


def _run_cmd(cmd: list[str], summary: Path) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    return json.loads(summary.read_text())


MARK_START = "<!-- frame-loop:start (benchmarks/frame_loop_bench.py writes this section) -->"
MARK_END = "<!-- frame-loop:end -->"
STREAMS_START = "<!-- streams:start (benchmarks/frame_loop_bench.py --streams writes this section) -->"
STREAMS_END = "<!-- streams:end -->"
#: the stages of a frame, as the run summary names them (``total`` is their sum plus softmax/tracking)
STAGE_KEYS = ("detect", "align", "preprocess", "infer")


def run_streams_once(edgefer: list[str], model: Path, video: Path, n: int, work: Path, tag: str) -> dict:
    """One ``edgefer run`` with ``n`` copies of ``video`` as sources, default settings; its summary."""
    summary = work / f"streams-{tag}.json"
    cmd = [*edgefer, "run", "--model", str(model), "--quiet", "--overwrite", "--summary-json", str(summary)]
    for _ in range(n):
        cmd += ["--source", str(video)]
    return _run_cmd(cmd, summary)


def stream_row(s: dict) -> dict[str, float]:
    """Per-stream frames/s and each stage's share of the run's wall time, for one run summary (one source
    or several: the stages run one after another in the loop, so their times over all streams add up)."""
    streams = s.get("streams", [s])
    wall = s["wall_s"]
    frames = sum(x["frames_processed"] for x in streams)
    spent = {k: sum(x["stage_ms"][k]["mean"] * x["frames_processed"] for x in streams) / 1e3 for k in STAGE_KEYS}
    row = {"fps": statistics.median(x["fps"] for x in streams), "fps_min": min(x["fps"] for x in streams)}
    row.update({k: 100.0 * v / wall for k, v in spent.items()})
    row["other"] = max(0.0, 100.0 - sum(row[k] for k in STAGE_KEYS))
    row["total_fps"] = frames / wall
    row["faces_per_call"] = s["batched_faces"] / s["infer_calls"] if s.get("infer_calls") else float("nan")
    row["frames"] = frames
    return row


def streams_table(runs: dict[int, list[dict]]) -> str:
    lines = [
        "| streams | frames/s per stream, median (min-max over runs) | per stream / 1 stream (same round) "
        "| all streams, frames/s | detect (or carry) | align | preprocess | infer | other (loop, events, waiting "
        "for frames) | faces per classifier call |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    ones = [stream_row(s)["fps"] for s in runs.get(1, [])]
    for n, rs in sorted(runs.items()):
        rows = [stream_row(s) for s in rs]
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        per = [r["fps"] for r in rows]
        ratio = f"{statistics.median(r / o for r, o in zip(per, ones, strict=True)):.2f}" if ones else "-"
        calls = f"{med['faces_per_call']:.1f}" if n > 1 else "(one stream: per frame)"
        lines.append(
            f"| {n} | {med['fps']:.1f} ({min(r['fps_min'] for r in rows):.1f}-{max(per):.1f}) | {ratio} | "
            f"{med['total_fps']:.1f} | {med['detect']:.0f} % | {med['align']:.1f} % | {med['preprocess']:.0f} % | "
            f"{med['infer']:.0f} % | {med['other']:.0f} % | {calls} |"
        )
    return "\n".join(lines)


def measure_streams(exe: str, artifact: Path, video: Path, work: Path, counts: list[int], rounds: int) -> tuple:
    """Every stream count once per round, interleaved; the summaries by count and the load averages."""
    runs: dict[int, list[dict]] = {n: [] for n in counts}
    loads = []
    for r in range(rounds):
        for n in counts:
            loads.append(os.getloadavg()[0])
            s = run_streams_once([exe], artifact, video, n, work, f"{r}-{n}")
            runs[n].append(s)
            print(f"round {r}, {n} streams: {stream_row(s)['fps']:.1f} frames/s per stream", flush=True)
    return runs, loads


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


def write_section(path: Path, text: str, marks: tuple[str, str] = (MARK_START, MARK_END)) -> None:
    """Put ``text`` between the ``marks`` of ``path`` (appended when they are not there yet)."""
    start, end = marks
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    block = f"{start}\n{text.rstrip()}\n{end}"
    if start in old and end in old:
        head, rest = old.split(start, 1)
        new = head + block + rest.split(end, 1)[1]
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
    ap.add_argument("--streams", default=None, help="measure these stream counts instead, e.g. 1,2,4")
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
    if args.streams:
        counts = [int(c) for c in args.streams.split(",")]
        exe = shutil.which("edgefer") or str(Path(sys.executable).with_name("edgefer"))
        if args.report_only:  # the summaries saved in --work (loads not saved: see the section's text)
            runs_n = {n: [json.loads(p.read_text()) for p in sorted(work.glob(f"streams-*-{n}.json"))] for n in counts}
            loads_n = [os.getloadavg()[0]]
        else:
            runs_n, loads_n = measure_streams(exe, artifact, video, work, counts, args.rounds)
        text = streams_table(runs_n)
        print(text)
        if args.out:
            stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            machine = machine_line(f"{min(loads_n):.1f}-{max(loads_n):.1f}")
            body = streams_report(text, kind, args.rounds, args.frames, machine, stamp, args.streams)
            write_section(args.out, body, (STREAMS_START, STREAMS_END))
        return
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
    rounds = min(len(v) for v in runs.values())
    machine = machine_line(f"{min(loads):.1f}-{max(loads):.1f}" if loads else "not recorded")
    if args.out:
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        write_section(args.out, report(text, kind, rounds, args.frames, sum(counts), machine, stamp))


def machine_line(load: str) -> str:
    """The machine, versions and the load average range the runs started under."""
    import openvino

    return (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, OpenVINO "
        f"{openvino.__version__}, OpenCV {cv2.__version__}; 1-minute load average {load} when the runs started"
    )


def streams_report(text: str, kind: str, rounds: int, frames: int, machine: str, stamp: str, counts: str) -> str:
    return f"""## Several streams: one `edgefer run` with N sources

Measured {stamp} with `benchmarks/frame_loop_bench.py --streams {counts}` ({rounds} interleaved rounds of
every stream count, medians; each run is one `edgefer run --quiet --summary-json` process with N
`--source` copies of the video, default settings: `--detect-every 5 --detect-width 480`):

    PATH=.venv/bin:$PATH .venv/bin/python benchmarks/frame_loop_bench.py --streams {counts} --out benchmarks/runtime.md

Video: the frame-loop video above ({frames} frames, 640x480, 1-3 moving real faces). Model:
`msff_mobilenetv3`, {kind}, untrained weights, Haar cascade detector, one detector and one
classifier shared by all streams. Machine: {machine}.

{text}

- **frames/s per stream**: each stream's frames processed / its wall time (files are read without
  drops, so this is throughput); the range is over every stream of every round.
- Stage columns: the time all streams spent in the stage over the run's wall time (the loop runs the
  stages one after another, so the shares add up with `other` to 100 %). `infer` is the shared
  classifier calls; `other` is what the loop does beside the stages (events, summary, waking for
  frames) and the time it waited for a capture thread to decode the next frame.
- **faces per classifier call**: the mean batch of the shared call (faces of every stream with a
  frame ready on the tick).
"""


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
