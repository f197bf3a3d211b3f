"""``edgefer predict``, ``edgefer run`` and ``edgefer deepstream``: the runtime on the command line.

Thin: each command builds a :class:`edgefer.runtime.Predictor` (or calls the DeepStream
generator) and prints what it returns. Library imports live inside the commands so the CLI stays
torch-free on a device.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer


def _echo_err(msg: str) -> None:
    typer.echo(msg, err=True)


#: The face-detector options `predict` and `run` share (one definition, one help text).
CACHE_DIR = typer.Option(
    None,
    "--cache-dir",
    help="OpenVINO model cache: compile on the first start, read back on later ones. By default the bundle's "
    "ov_cache/ if writable, else $XDG_CACHE_HOME/edgefer/openvino (see --no-cache).",
)
NO_CACHE = typer.Option(False, "--no-cache", help="No OpenVINO model cache: compile on every start.")
DETECTOR = typer.Option("auto", "--detector", help="auto | haar[:cascade.xml] | yunet[:/path.onnx] | none")
DETECTOR_MODEL = typer.Option(
    None,
    "--detector-model",
    help="Detector weights, e.g. --detector yunet --detector-model face_detection_yunet_2023mar.onnx "
    "(github.com/opencv/opencv_zoo, models/face_detection_yunet).",
)


def register(app: typer.Typer) -> None:
    @app.command("predict")
    def predict(
        inputs: List[Path] = typer.Argument(..., help="Image files and/or folders (searched recursively)."),
        model: Path = typer.Option(..., "--model", "-m", help="Artifact (.onnx, .xml, .engine) or bundle folder."),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for annotated copies of the images."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON document (a list, one record per image)."),
        aligned: bool = typer.Option(False, "--aligned", help="Images are aligned face crops: skip detection."),
        detector: str = DETECTOR,
        detector_model: Optional[Path] = DETECTOR_MODEL,
        device: str = typer.Option("cpu", "--device", help="Inference device (cpu, GPU, cuda:0, ...)."),
        threads: Optional[int] = typer.Option(None, "--threads", help="Inference threads."),
        cache_dir: Optional[Path] = CACHE_DIR,
        no_cache: bool = NO_CACHE,
        margin: float = typer.Option(0.15, "--margin", help="Border around a detected box without landmarks."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace annotated images of an earlier run."),
    ) -> None:
        """Faces and expressions in still images (annotated copies keep their sub-folders under --out)."""
        from edgefer.runtime import Predictor
        from edgefer.runtime.cache import model_cache_dir
        from edgefer.runtime.images import annotated_targets, check_predicted, predict_images
        from edgefer.utils.outputs import check_outputs

        inside_out: List[Path] = []  # before the model is loaded: a refusal costs nothing
        targets = annotated_targets(inputs, out, skipped=inside_out)
        if out is not None:
            check_outputs(out, [rel for _, rel in targets], overwrite=overwrite)
        if inside_out:
            _echo_err(f"note: {len(inside_out)} images inside --out {out} were not predicted (earlier outputs)")
        with Predictor(
            model,
            device=device,
            detector=detector,
            detector_model=detector_model,
            aligned=aligned,
            threads=threads,
            cache_dir=model_cache_dir(model, cache_dir, enabled=not no_cache),
            margin=margin,
        ) as predictor:
            records = predict_images(predictor, inputs, out_dir=out, overwrite=overwrite)
        if as_json:
            json.dump(records, sys.stdout, indent=2)
            sys.stdout.write("\n")
            return
        bad = 0
        for rec in records:
            if rec.get("error"):
                bad += 1
                typer.echo(f"{rec['path']}: error: {rec['error']}")
                continue
            if not rec["faces"]:
                typer.echo(f"{rec['path']}: no face found")
            for i, face in enumerate(rec["faces"]):
                typer.echo(f"{rec['path']}: face {i} {face['label']} {face['score']:.2f} box={face['box']}")
        n_faces = sum(len(r["faces"]) for r in records)
        where = f"; annotated in {out}" if any(r.get("annotated") for r in records) else ""
        _echo_err(f"{len(records)} images, {n_faces} faces, {bad} unreadable{where}")
        check_predicted(records)  # every image unreadable: exit 2, not success

    @app.command("run")
    def run(
        model: Path = typer.Option(..., "--model", "-m", help="Artifact (.onnx, .xml, .engine) or bundle folder."),
        source: List[str] = typer.Option(
            ["0"],
            "--source",
            "-s",
            help="Camera index, video file, stream URL (rtsp://, http://) or GStreamer pipeline ending in appsink "
            "(needs an OpenCV built with GStreamer, e.g. JetPack's). Repeat for several streams sharing one model.",
        ),
        out: Optional[Path] = typer.Option(
            None, "--out", "-o", help="Annotated output video (.mp4, mp4v codec); stream i of several: NAME.s<i>.mp4."
        ),
        jsonl: Optional[Path] = typer.Option(
            None, "--jsonl", help="Events file: one JSON line per processed frame (with a 'stream' id when several)."
        ),
        show: bool = typer.Option(False, "--show", help="Show the annotated stream in a window (needs GUI OpenCV)."),
        max_frames: Optional[int] = typer.Option(None, "--max-frames", help="Stop after this many processed frames."),
        detector: str = DETECTOR,
        detector_model: Optional[Path] = DETECTOR_MODEL,
        aligned: bool = typer.Option(False, "--aligned", help="Frames are aligned face crops: skip detection."),
        device: str = typer.Option("cpu", "--device", help="Inference device."),
        threads: Optional[int] = typer.Option(None, "--threads", help="Inference threads."),
        cache_dir: Optional[Path] = CACHE_DIR,
        no_cache: bool = NO_CACHE,
        smoothing: float = typer.Option(0.5, "--smoothing", help="EMA weight of new probabilities (1 = off)."),
        queue_size: int = typer.Option(1, "--queue-size", help="Frames buffered between capture and inference."),
        realtime: Optional[bool] = typer.Option(
            None,
            "--realtime/--no-realtime",
            help="Drop stale frames (default: on for cameras/streams, off for files, which are read at their FPS "
            "when on).",
        ),
        detect_every: int = typer.Option(
            5,
            "--detect-every",
            help="Run the face detector every N frames (sooner when a face is lost); boxes are carried forward by "
            "template matching in between. 1 = every frame.",
        ),
        detect_width: Optional[int] = typer.Option(
            480,
            "--detect-width",
            help="Downscale frames to this width for detection only; boxes are mapped back (0 = the detector's "
            "own size: Haar 480 px on the longer side, YuNet the full frame).",
        ),
        reconnect: int = typer.Option(
            10, "--reconnect", help="Attempts to reopen a dropped live stream (URL or GStreamer) before giving up."
        ),
        reconnect_delay: float = typer.Option(
            1.0, "--reconnect-delay", help="Seconds before the first reconnect attempt; doubled per attempt (max 30)."
        ),
        summary_json: Optional[Path] = typer.Option(None, "--summary-json", help="Write the run summary as JSON."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No status lines while running."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace the outputs of an earlier run."),
    ) -> None:
        """Faces and expressions on a camera, video file or stream; FPS and latency at the end."""
        from edgefer.runtime import Predictor
        from edgefer.runtime.cache import model_cache_dir
        from edgefer.runtime.predictor import DetectionOptions
        from edgefer.runtime.stream import StreamOptions, check_run_outputs, parse_source, run_sources, save_summary

        # every setting, every output and the source's form are checked before the model is loaded
        detection = DetectionOptions(
            detector=detector,
            detector_model=detector_model,
            aligned=aligned,
            detect_every=detect_every,
            detect_width=detect_width or None,
        )
        stream = StreamOptions(
            out=out,
            jsonl=jsonl,
            show=show,
            max_frames=max_frames,
            queue_size=queue_size,
            realtime=realtime,
            overwrite=overwrite,
            reconnect=reconnect,
            reconnect_delay=reconnect_delay,
        )
        check_run_outputs(len(source), out, jsonl, summary_json, overwrite=overwrite)
        for s in source:
            parse_source(s)
        cache = model_cache_dir(model, cache_dir, enabled=not no_cache)
        with Predictor(model, device, detection, threads=threads, smoothing=smoothing, cache_dir=cache) as predictor:
            summary = run_sources(
                predictor,
                source,
                stream,
                log=None if quiet else _echo_err,
                warn=_echo_err,  # reconnect attempts are shown even with --quiet
            )
        typer.echo(summary.format())
        if summary_json is not None:
            save_summary(summary, summary_json, overwrite=overwrite)
        if summary.output_error:  # a full disk: what was written is kept, and it is not success
            from edgefer.utils.io import StorageError

            raise StorageError(summary.output_error)
        if summary.source_lost:  # not success: a supervisor must see it (the frames done are kept)
            _echo_err(f"error: {summary.failure_line()}")
            raise typer.Exit(4)

    @app.command("deepstream")
    def deepstream(
        model: Path = typer.Option(..., "--model", "-m", help="ONNX (preferred) or TensorRT engine with metadata."),
        out: Path = typer.Option(..., "--out", "-o", help="Folder for the nvinfer config, labels and model."),
        precision: Optional[str] = typer.Option(None, "--precision", help="fp32 | fp16 | int8 (network-mode)."),
        batch_size: int = typer.Option(16, "--batch-size", help="Faces per nvinfer batch."),
        gie_unique_id: int = typer.Option(2, "--gie-unique-id"),
        operate_on_gie_id: int = typer.Option(1, "--operate-on-gie-id", help="gie-unique-id of the face detector."),
        operate_on_class_ids: str = typer.Option("0", "--operate-on-class-ids", help="Face class ids (a;b)."),
        threshold: float = typer.Option(0.0, "--threshold", help="classifier-threshold on the top probability."),
        approximate: bool = typer.Option(
            False, "--approximate", help="Do not fold the per-channel std into the ONNX (one scale for all channels)."
        ),
    ) -> None:
        """An nvinfer secondary-classifier config for DeepStream, from the artifact metadata."""
        from edgefer.metadata import read_metadata
        from edgefer.runtime.deepstream import deepstream_config
        from edgefer.runtime.predictor import resolve_artifact

        artifact = resolve_artifact(model)
        try:
            ids = tuple(int(c) for c in operate_on_class_ids.split(";") if c.strip())
        except ValueError:
            from edgefer.errors import EdgeferError

            msg = f"--operate-on-class-ids must be integers separated by ';', got {operate_on_class_ids!r}"
            raise EdgeferError(msg) from None
        res = deepstream_config(
            read_metadata(artifact),
            artifact,
            out,
            gie_unique_id=gie_unique_id,
            operate_on_gie_id=operate_on_gie_id,
            operate_on_class_ids=ids,
            batch_size=batch_size,
            precision=precision,
            classifier_threshold=threshold,
            exact_normalization=not approximate,
        )
        for p in res.paths:
            typer.echo(str(p))
        norm = (
            "exact (per-channel scale folded into the ONNX)"
            if res.exact_normalization
            else (f"approximate, max error {res.max_norm_error:.4f} in normalised units")
        )
        _echo_err(f"net-scale-factor={res.net_scale_factor:.6g} offsets={res.values['offsets']} normalisation {norm}")
