"""Runtime latency benchmark: per-stage latency and FPS of ``edgefer.runtime.Predictor``.

Builds the edge model (``msff_mobilenetv3``, untrained weights: latency does not depend on the
weights), exports FP32 ONNX -> OpenVINO IR, quantizes it to INT8 with NNCF PTQ through
``edgefer.quantize.quantize(target="openvino", method="ptq")`` on a small synthetic set, then times
the predictor on 640x480 synthetic frames with 1 and 4 faces, and on a real photograph.

Detection on the synthetic frames: the Haar cascade runs on the whole frame (its cost is the
``detect`` stage), but it finds only some drawn faces, so the faces passed on are the frame's
ground-truth boxes: the face count of the ``align``/``infer`` stages is exact. The real photo
(``skimage.data.astronaut`` resized to 640x480) runs the plain pipeline (Haar finds its 1 face).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/runtime_bench.py --out benchmarks/runtime.md
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np


class HaarThenGivenBoxes:
    """Runs the Haar cascade (its cost is what we time) and returns the frame's known face boxes."""

    name = "haar(timed)+given boxes"

    def __init__(self, boxes: list[tuple[int, int, int, int]]) -> None:
        from edgefer.runtime.detect import HaarDetector

        self.haar = HaarDetector()
        self.boxes = boxes
        self.found = 0

    def detect(self, frame_bgr: np.ndarray):
        from edgefer.runtime.detect import Detection

        self.found = len(self.haar.detect(frame_bgr))
        return [Detection(box=b) for b in self.boxes]


def build_artifacts(work: Path, model: str, size: int) -> dict[str, Path]:
    from edgefer.data.synth import generate_synthetic
    from edgefer.labels import CLASS_NAMES
    from edgefer.models import create_model
    from edgefer.pipeline.artifacts import build_artifacts as build_all
    from edgefer.preprocess import Preprocessing
    from edgefer.quantize.options import QuantizeOptions
    from edgefer.training.checkpoint import save_checkpoint

    net = create_model(model, num_classes=len(CLASS_NAMES), pretrained=None).eval()
    ckpt = save_checkpoint(
        work / "ckpt.pt",
        model=net,
        model_name=model,
        model_args={},
        class_names=CLASS_NAMES,
        preprocessing=Preprocessing(input_size=size),
    )
    data = generate_synthetic(work / "synth", n_train=140, n_test=70, image_size=100, seed=0, progress=False)
    arts = build_all(
        ckpt,
        work,
        data,
        openvino=("fp32",),
        int8=("openvino",),
        int8_options=QuantizeOptions(calib_size=100, progress=False),
    )
    return {"onnx": arts.onnx, "ov_fp32": arts.openvino["fp32"], "ov_int8": Path(arts.int8["openvino"].artifact)}


def time_predictor(predictor, frame: np.ndarray, iters: int, warmup: int) -> dict[str, dict[str, float]]:
    for _ in range(warmup):
        predictor.predict(frame)
    rows: dict[str, list[float]] = {}
    n_faces = 0
    for _ in range(iters):
        r = predictor.predict(frame)
        n_faces = len(r.faces)
        for k, v in r.timings.items():
            rows.setdefault(k, []).append(v)
    out = {
        k: {"mean": float(np.mean(v)), "p50": float(np.median(v)), "p95": float(np.percentile(v, 95))}
        for k, v in rows.items()
    }
    out["faces"] = {"n": n_faces}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="msff_mobilenetv3")
    ap.add_argument("--size", type=int, default=112, help="model input size")
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None, help="write the Markdown table here")
    args = ap.parse_args()

    from edgefer.data.synth import compose_frame
    from edgefer.runtime import Predictor

    with tempfile.TemporaryDirectory(prefix="edgefer-rtbench-") as tmp:
        arts = build_artifacts(Path(tmp), args.model, args.size)
        scenes = []
        for n in (1, 4):
            frame, boxes = compose_frame(
                list(range(n)), frame_hw=(480, 640), rng=np.random.default_rng(n), face_size_range=(100, 140)
            )
            scenes.append((f"synthetic 640x480, {n} face{'s' if n > 1 else ''}", frame, boxes))
        try:
            from skimage.data import astronaut

            photo = cv2.resize(cv2.cvtColor(astronaut(), cv2.COLOR_RGB2BGR), (640, 480))
            scenes.append(("photo 640x480 (astronaut), Haar, 1 face", photo, None))
        except ImportError:
            pass
        results = []
        for art_name in ("ov_int8", "ov_fp32"):
            for scene, frame, boxes in scenes:
                det = HaarThenGivenBoxes(boxes) if boxes is not None else "haar"
                with Predictor(arts[art_name], detector=det, threads=args.threads) as p:
                    stats = time_predictor(p, frame, args.iters, args.warmup)
                    found = det.found if boxes is not None else stats["faces"]["n"]
                    results.append((art_name, scene, stats, found))
                    print(art_name, scene, {k: round(v["mean"], 2) for k, v in stats.items() if k != "faces"})
    lines = [
        "| artifact | scene | faces | Haar found | detect ms | align ms | preprocess ms | infer ms | total ms "
        "(p50 / p95) | FPS |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for art_name, scene, s, found in results:
        fps = 1000.0 / s["total"]["mean"]
        lines.append(
            f"| {art_name} | {scene} | {s['faces']['n']} | {found} | {s['detect']['mean']:.1f} | "
            f"{s['align']['mean']:.2f} | {s['preprocess']['mean']:.2f} | {s['infer']['mean']:.1f} | "
            f"{s['total']['mean']:.1f} ({s['total']['p50']:.1f} / {s['total']['p95']:.1f}) | {fps:.1f} |"
        )
    import openvino

    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, OpenVINO {openvino.__version__}, OpenCV {cv2.__version__}, "
        f"threads={args.threads or 'backend default'}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
        f"load average at the end {os.getloadavg()[0]:.1f} (other jobs share the cores)"
    )
    table = "\n".join(lines)
    print(table)
    if args.out:
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        from frame_loop_bench import MARK_END, MARK_START

        old = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        # keep the frame-loop section frame_loop_bench.py wrote into the same file
        kept = MARK_START + old.split(MARK_START, 1)[1].split(MARK_END, 1)[0] + MARK_END if MARK_START in old else ""
        args.out.write_text(_report(args, table, machine, stamp) + (f"\n{kept}\n" if kept else ""), encoding="utf-8")


def _report(args, table: str, machine: str, stamp: str) -> str:
    return f"""# Runtime latency: per stage, 640x480 frames, {args.model} on OpenVINO CPU

Measured {stamp} with `benchmarks/runtime_bench.py` ({args.iters} timed frames after {args.warmup} warm-up
frames; mean per stage, total as mean (p50 / p95); FPS = 1000 / mean total, one frame at a time):

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/runtime_bench.py --out benchmarks/runtime.md

Machine: {machine}.

{table}

What the columns mean:

- **artifact**: `ov_int8` is the OpenVINO IR quantized by `edgefer.quantize.quantize(target="openvino",
  method="ptq")` (NNCF PTQ, 100 synthetic calibration images); `ov_fp32` the FP32 IR it started from.
  The weights are **untrained** (`{args.model}` built by `create_model`, input {args.size}x{args.size}):
  latency does not depend on the weights; accuracy is not measured here.
- **detect**: OpenCV Haar cascade (`haarcascade_frontalface_default.xml`, `HaarDetector` defaults: run on a
  480x360 copy of the frame, scale step 1.15, faces >= 10 % of the short side).
  On synthetic frames it finds few or none of the drawn faces ("Haar found"), so the ground-truth boxes
  are what is classified: the face count of align/preprocess/infer is exact. Its cost depends on the
  image content (how far candidate windows get through the cascade), not on the number of faces: the
  textured photo costs most. The photo row is the plain pipeline (Haar finds the one real face).
- **align**: square crop with margin per face (Haar gives no landmarks); **preprocess**: crops -> one
  NCHW batch (`edgefer.preprocess.preprocess_batch`); **infer**: all faces of the frame in one batch;
  **total**: the whole `Predictor.predict`, including softmax.

Caveats: this build machine has 2 CPU cores (AMD EPYC, AVX2, no VNNI, so INT8 gains little over FP32
here; VNNI/AMX CPUs and Intel GPUs/NPUs gain more) and was shared with other jobs while measuring, so
treat the numbers as an order of magnitude. The detector dominates the frame: running it less often
(`edgefer run --detect-every N`, the frame-loop section below), YuNet (`--detector yunet
--detector-model PATH`) or a smaller detection resolution is the lever for FPS, not the classifier.
"""


if __name__ == "__main__":
    main()
