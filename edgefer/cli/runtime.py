"""``edgefer predict``, ``edgefer run`` and ``edgefer deepstream``: the runtime on the command line.

Thin: each command builds a :class:`edgefer.runtime.Predictor` (or calls the DeepStream
generator) and prints what it returns. Library imports live inside the commands so the CLI stays
torch-free on a device.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List

import typer

from edgefer.cli import groups
from edgefer.cli.params import Param, Values, command


def _echo_err(msg: str) -> None:
    typer.echo(msg, err=True)


MODEL = Param("model", ("--model", "-m"), Path, ..., "Artifact (.onnx, .xml, .engine) or bundle folder.")
#: The face-detector options `predict` and `run` share (one definition, one help text).
DETECTION = [
    Param("aligned", ("--aligned",), bool, False, "Images are aligned face crops: skip detection."),
    Param("detector", ("--detector",), str, "auto", "auto | haar[:cascade.xml] | yunet[:/path.onnx] | none"),
    Param(
        "detector_model",
        ("--detector-model",),
        Path,
        None,
        "Detector weights, e.g. --detector yunet --detector-model face_detection_yunet_2023mar.onnx "
        "(github.com/opencv/opencv_zoo, models/face_detection_yunet).",
    ),
]
CACHE_DIR = Param(
    "cache_dir",
    ("--cache-dir",),
    Path,
    None,
    "OpenVINO model cache: compile on the first start, read back on later ones. By default the bundle's "
    "ov_cache/ if writable, else $XDG_CACHE_HOME/edgefer/openvino (see --no-cache).",
)
NO_CACHE = Param("no_cache", ("--no-cache",), bool, False, "No OpenVINO model cache: compile on every start.")

PREDICT = [
    Param("inputs", (), Path, ..., "Image files and/or folders (searched recursively).", argument=True, multiple=True),
    MODEL,
    groups.output(
        out={"help": "Folder for annotated copies of the images."},
        overwrite={"help": "Replace annotated images of an earlier run."},
    ),
    groups.json_output()[0].but(help="Print one JSON document (a list, one record per image)."),
    DETECTION,
    groups.device(),
    CACHE_DIR,
    NO_CACHE,
    Param("margin", ("--margin",), float, 0.15, "Border around a detected box without landmarks."),
    groups.progress()[0].but(help="No summary line on stderr."),
]

RUN = [
    MODEL,
    Param(
        "source",
        ("--source", "-s"),
        str,
        ("0",),
        "Camera index, video file, stream URL (rtsp://, http://) or GStreamer pipeline ending in appsink "
        "(needs an OpenCV built with GStreamer, e.g. JetPack's). Repeat for several streams sharing one model.",
        multiple=True,
    ),
    groups.output(
        out={"help": "Annotated output video (.mp4, mp4v codec); stream i of several: NAME.s<i>.mp4."},
        overwrite={"help": "Replace the outputs of an earlier run."},
    ),
    Param(
        "jsonl",
        ("--jsonl",),
        Path,
        None,
        "Events file: one JSON line per processed frame (with a 'stream' id when several).",
    ),
    Param("show", ("--show",), bool, False, "Show the annotated stream in a window (needs GUI OpenCV)."),
    Param("max_frames", ("--max-frames",), int, None, "Stop after this many processed frames."),
    DETECTION,
    groups.device(),
    CACHE_DIR,
    NO_CACHE,
    Param("smoothing", ("--smoothing",), float, 0.5, "EMA weight of new probabilities (1 = off)."),
    Param("queue_size", ("--queue-size",), int, 1, "Frames buffered between capture and inference."),
    Param(
        "realtime",
        ("--realtime/--no-realtime",),
        bool,
        None,
        "Drop stale frames (default: on for cameras/streams, off for files, which are read at their FPS when on).",
    ),
    Param(
        "detect_every",
        ("--detect-every",),
        int,
        5,
        "Run the face detector every N frames (sooner when a face is lost); boxes are carried forward by "
        "template matching in between. 1 = every frame.",
    ),
    Param(
        "detect_width",
        ("--detect-width",),
        int,
        480,
        "Downscale frames to this width for detection only; boxes are mapped back (0 = the detector's "
        "own size: Haar 480 px on the longer side, YuNet the full frame).",
    ),
    Param(
        "reconnect",
        ("--reconnect",),
        int,
        10,
        "Attempts to reopen a dropped live stream (URL or GStreamer) before giving up.",
    ),
    Param(
        "reconnect_delay",
        ("--reconnect-delay",),
        float,
        1.0,
        "Seconds before the first reconnect attempt; doubled per attempt (max 30).",
    ),
    Param("summary_json", ("--summary-json",), Path, None, "Write the run summary as JSON."),
    groups.json_output()[0].but(help="Print the run summary as JSON (instead of the text summary)."),
    groups.progress()[0].but(help="No status lines while running."),
]

DEEPSTREAM = [
    MODEL.but(help="ONNX (preferred) or TensorRT engine with metadata."),
    groups.output(only_out=True, out={"default": ..., "help": "Folder for the nvinfer config, labels and model."}),
    Param("precision", ("--precision", "-p"), str, None, "fp32 | fp16 | int8 (network-mode)."),
    groups.shape(only=("batch",), batch={"default": 16, "help": "Faces per nvinfer batch."}),
    Param("gie_unique_id", ("--gie-unique-id",), int, 2, "gie-unique-id of this classifier."),
    Param("operate_on_gie_id", ("--operate-on-gie-id",), int, 1, "gie-unique-id of the face detector."),
    Param("operate_on_class_ids", ("--operate-on-class-ids",), str, "0", "Face class ids (a;b)."),
    Param("threshold", ("--threshold",), float, 0.0, "classifier-threshold on the top probability."),
    Param(
        "approximate",
        ("--approximate",),
        bool,
        False,
        "Do not fold the per-channel std into the ONNX (one scale for all channels).",
    ),
    groups.json_output(),
]


def register(app: typer.Typer) -> None:
    @command(app, "predict", PREDICT)
    def predict(v: Values) -> None:
        """Faces and expressions in still images (annotated copies keep their sub-folders under --out)."""
        from edgefer.runtime import Predictor
        from edgefer.runtime.cache import model_cache_dir
        from edgefer.runtime.images import annotated_targets, check_predicted, predict_images
        from edgefer.utils.outputs import check_outputs

        inputs, model, out, overwrite, as_json = v.inputs, v.model, v.out, v.overwrite, v.as_json
        device, detector, detector_model, aligned, threads = (
            v.device,
            v.detector,
            v.detector_model,
            v.aligned,
            v.threads,
        )
        cache_dir, margin = v.cache_dir, v.margin
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
            cache_dir=model_cache_dir(model, cache_dir, enabled=not v.no_cache),
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
        if v.progress:
            _echo_err(f"{len(records)} images, {n_faces} faces, {bad} unreadable{where}")
        check_predicted(records)  # every image unreadable: exit 2, not success

    @command(app, "run", RUN)
    def run(v: Values) -> None:
        """Faces and expressions on a camera, video file or stream; FPS and latency at the end."""
        from edgefer.runtime import Predictor
        from edgefer.runtime.cache import model_cache_dir
        from edgefer.runtime.predictor import DetectionOptions
        from edgefer.runtime.stream import StreamOptions, check_run_outputs, parse_source, run_sources, save_summary

        model, source, out, jsonl, show, max_frames = v.model, v.source, v.out, v.jsonl, v.show, v.max_frames
        detector, detector_model, aligned, device, threads = (
            v.detector,
            v.detector_model,
            v.aligned,
            v.device,
            v.threads,
        )
        cache_dir, smoothing, queue_size, realtime, overwrite = (
            v.cache_dir,
            v.smoothing,
            v.queue_size,
            v.realtime,
            v.overwrite,
        )
        detect_every, detect_width, reconnect, reconnect_delay = (
            v.detect_every,
            v.detect_width,
            v.reconnect,
            v.reconnect_delay,
        )
        summary_json, quiet = v.summary_json, not v.progress
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
        source = list(source) or ["0"]
        check_run_outputs(len(source), out, jsonl, summary_json, overwrite=overwrite)
        for s in source:
            parse_source(s)
        cache = model_cache_dir(model, cache_dir, enabled=not v.no_cache)
        with Predictor(model, device, detection, threads=threads, smoothing=smoothing, cache_dir=cache) as predictor:
            summary = run_sources(
                predictor,
                source,
                stream,
                log=None if quiet else _echo_err,
                warn=_echo_err,  # reconnect attempts are shown even with --quiet
            )
        if v.as_json:
            typer.echo(json.dumps(summary.to_dict(), indent=2, default=str))
        else:
            typer.echo(summary.format())
        if summary_json is not None:
            save_summary(summary, summary_json, overwrite=overwrite)
        if summary.output_error:  # a full disk: what was written is kept, and it is not success
            from edgefer.utils.io import StorageError

            raise StorageError(summary.output_error)
        if summary.source_lost:  # not success: a supervisor must see it (the frames done are kept)
            _echo_err(f"error: {summary.failure_line()}")
            raise typer.Exit(4)

    @command(app, "deepstream", DEEPSTREAM)
    def deepstream(v: Values) -> None:
        """An nvinfer secondary-classifier config for DeepStream, from the artifact metadata."""
        from edgefer.metadata import read_metadata
        from edgefer.runtime.deepstream import deepstream_config
        from edgefer.runtime.predictor import resolve_artifact

        model, out, precision, batch_size, threshold = v.model, v.out, v.precision, v.batch, v.threshold
        gie_unique_id, operate_on_gie_id, operate_on_class_ids = (
            v.gie_unique_id,
            v.operate_on_gie_id,
            v.operate_on_class_ids,
        )
        approximate = v.approximate
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
        if v.as_json:
            typer.echo(json.dumps({"files": [str(p) for p in res.paths], "values": res.values}, indent=2, default=str))
            return
        for p in res.paths:
            typer.echo(str(p))
        norm = (
            "exact (per-channel scale folded into the ONNX)"
            if res.exact_normalization
            else (f"approximate, max error {res.max_norm_error:.4f} in normalised units")
        )
        _echo_err(f"net-scale-factor={res.net_scale_factor:.6g} offsets={res.values['offsets']} normalisation {norm}")
