"""The embeddable predictor: BGR frames in, faces with expressions and per-stage timings out.

Torch-free: numpy, OpenCV and one inference backend (``edgefer.backends.open_model``). The
pixel -> tensor step is :func:`edgefer.preprocess.preprocess_batch` with the
:class:`~edgefer.preprocess.Preprocessing` read from the artifact's own metadata, i.e. the very
function the training eval transform calls, so a face crop gives the tensor the model was
evaluated on. Frames are BGR (OpenCV's order); we pass ``input_color="BGR"`` and let
``preprocess_batch`` reorder channels to the model's ``color_order``, never converting twice.

Pipeline per frame (each stage timed, milliseconds):

``detect``      face detection (on a downscaled copy of the frame), or, between detections in a video
                (``detect_every`` > 1), carrying the last boxes forward (:class:`~edgefer.runtime.tracking.BoxCarrier`)
``align``       5-point similarity warp, or square crop with margin, per face
``preprocess``  crops -> one NCHW float32 batch (resize, scale, mean/std, colour order)
``infer``       the backend, all faces of the frame as one batch (chunked by ``max_batch``)
``total``       everything, including softmax and tracking

Several streams share one predictor (one detector, one classifier): each has its own
:class:`StreamState` (tracks and carried boxes), and :meth:`Predictor.predict_many` classifies the
faces of one frame per stream in one backend call; each frame's ``infer`` is then its share of that
call (by faces), so per-stream stage times still add up to the run's time.

Bad frames (``None``, empty arrays, wrong rank or channel count) give a :class:`FrameResult`
with no faces and ``error`` set, so a camera loop never dies on one broken frame; pass
``strict=True`` to get a :class:`FrameError` instead. Grey, BGRA, 16-bit and float frames are
converted; odd sizes just work; very large frames are detected at ``detect_max_side`` and the
boxes mapped back to full resolution, where the crops are taken.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgefer.backends.base import Backend
from edgefer.errors import BackendError, EdgeferError
from edgefer.metadata import ModelMetadata
from edgefer.metrics import softmax
from edgefer.preprocess import preprocess_batch, to_three_channels
from edgefer.runtime.align import align_by_landmarks, crop_square
from edgefer.runtime.detect import Detection, FaceDetector, FullFrameDetector, detect_scaled, make_detector
from edgefer.runtime.tracking import BoxCarrier, IoUTracker
from edgefer.utils.compat import zip_strict
from edgefer.utils.limits import MAX_MARGIN, check_at_most
from edgefer.utils.options import merged

STAGES = ("detect", "align", "preprocess", "infer", "total")


class FrameError(EdgeferError):
    """A frame that is not an image (None, empty, wrong shape)."""


@dataclass
class Face:
    """One face of a frame.

    ``probs`` are softmax probabilities in the metadata's class order (smoothed over the track when
    the predictor tracks); ``score`` is the probability of ``label``; ``det_score`` is the
    detector's confidence; ``raw_probs`` the unsmoothed probabilities of this frame.
    """

    box: tuple[int, int, int, int]
    label: str
    class_index: int
    probs: np.ndarray = field(repr=False)
    score: float
    det_score: float = 1.0
    landmarks: np.ndarray | None = field(default=None, repr=False)
    track_id: int | None = None
    raw_probs: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self, class_names: tuple[str, ...] | None = None) -> dict[str, Any]:
        d: dict[str, Any] = {
            "box": [int(v) for v in self.box],
            "label": self.label,
            "class_index": int(self.class_index),
            "score": round(float(self.score), 6),
            "det_score": round(float(self.det_score), 6),
        }
        if class_names is not None:
            d["probs"] = {n: round(float(p), 6) for n, p in zip_strict(class_names, self.probs)}
        else:
            d["probs"] = [round(float(p), 6) for p in self.probs]
        if self.landmarks is not None:
            d["landmarks"] = [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks]
        if self.track_id is not None:
            d["track_id"] = int(self.track_id)
        return d


@dataclass
class FrameResult:
    """Faces of one frame, per-stage timings in ms, the frame size ``(w, h)`` and an error, if any.

    ``detected`` is False when the boxes were carried forward from an earlier detection instead of
    running the detector on this frame (``Predictor(detect_every=N)``).
    """

    faces: list[Face]
    timings: dict[str, float]
    frame_size: tuple[int, int] | None = None
    error: str | None = None
    detected: bool = True

    def to_dict(self, class_names: tuple[str, ...] | None = None) -> dict[str, Any]:
        d: dict[str, Any] = {
            "frame_size": list(self.frame_size) if self.frame_size else None,
            "faces": [f.to_dict(class_names) for f in self.faces],
            "timings_ms": {k: round(v, 3) for k, v in self.timings.items()},
            "detected": self.detected,
        }
        if self.error:
            d["error"] = self.error
        return d


def as_bgr_frame(frame: Any) -> np.ndarray:
    """Any reasonable image array -> HxWx3 uint8 BGR; :class:`FrameError` for non-images.

    Grey (HxW or HxWx1) is replicated, BGRA loses its alpha; other depths than uint8 follow
    :func:`edgefer.preprocess.to_uint8` (uint16 scaled by 1/257, rounded), the rule the training
    data readers use too.
    """
    if frame is None:
        raise FrameError("frame is None (the camera or decoder returned nothing)")
    arr = np.asarray(frame)
    if arr.size == 0:
        raise FrameError(f"frame is empty (shape {arr.shape})")
    if arr.ndim not in (2, 3):
        raise FrameError(f"frame must be HxW or HxWxC, got shape {arr.shape}")
    try:
        return to_three_channels(arr, "BGR")
    except EdgeferError as exc:
        raise FrameError(str(exc)) from exc


_PRECISION_RANK = {"int8": 0, "fp16": 1, "fp32": 2}


def _backend_importable(name: str) -> bool:
    """True when the engine package of the backend called ``name`` (per the formats table) is installed."""
    from edgefer.formats import format_for_backend

    fmt = format_for_backend(name)
    return fmt is not None and fmt.installed()


def resolve_artifact(path: str | os.PathLike, backend: str | None = None) -> Path:
    """The model file of an artifact path: the path itself, or the artifact chosen from a bundle.

    From a bundle (directory with ``bundle.json``) the files are verified against their sha256
    first; then the lowest-precision artifact (int8 < fp16 < fp32) whose backend is installed (or
    the one for ``backend``) is chosen - a device runs the model the bundle was made for.
    Archives (``.tar.gz``) must be extracted first (``tar xzf``) so the model outlives this call.
    """
    p = Path(path)
    if not p.exists():
        raise BackendError(f"model {p} does not exist")
    if not p.is_dir():
        if p.name.endswith((".tar.gz", ".tgz")):
            raise BackendError(f"{p} is a bundle archive: extract it (tar xzf) and pass the folder")
        return p
    from edgefer.bundle import open_bundle

    bundle = open_bundle(p)
    bundle.verify()
    entries = bundle.manifest.get("artifacts", [])
    usable = [
        a
        for a in entries
        if (backend is None or a.get("backend") == backend) and _backend_importable(a.get("backend", ""))
    ]
    if not usable:
        listed = ", ".join(f"{a.get('path')} ({a.get('backend')})" for a in entries) or "none"
        raise BackendError(f"bundle {p} has no artifact this device can run (artifacts: {listed})")
    usable.sort(key=lambda a: _PRECISION_RANK.get(str(a.get("precision", "fp32")), 3))
    return bundle.root / usable[0]["path"]


@dataclass
class StreamState:
    """What a predictor remembers about one video between frames: the face tracks (smoothing) and
    the boxes carried between detections. One per stream; :meth:`Predictor.new_state` makes them."""

    tracker: IoUTracker | None = None
    carrier: BoxCarrier | None = None

    def reset(self) -> None:
        """Forget tracks and carried boxes (a new, unrelated video)."""
        if self.tracker is not None:
            self.tracker.reset()
        if self.carrier is not None:
            self.carrier.reset()


@dataclass
class _Located:
    """One frame between its own stages (detect, align, preprocess) and the shared classifier call."""

    t0: float
    timings: dict[str, float]
    dets: list[Detection] = field(default_factory=list)
    batch: np.ndarray | None = None
    frame_size: tuple[int, int] | None = None
    error: str | None = None
    detected: bool = True


@dataclass(frozen=True)
class DetectionOptions:
    """How a :class:`Predictor` finds faces, checked when made (see the Predictor's arguments).

    ``detect_every`` and ``detect_width`` make a video loop keep up: the detector runs on every
    N-th frame, on a copy downscaled to ``detect_width``, and boxes are carried in between.
    """

    detector: str | FaceDetector | None = "auto"
    detector_model: str | os.PathLike | None = None
    aligned: bool = False
    margin: float = 0.15
    align: bool = True
    detect_max_side: int | None = 1280
    detect_width: int | None = None
    detect_every: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.detect_every, bool) or not isinstance(self.detect_every, int) or self.detect_every < 1:
            raise EdgeferError(f"--detect-every must be a whole number >= 1, got {self.detect_every!r}")
        if self.detect_width is not None and self.detect_width < 32:
            raise EdgeferError(f"--detect-width must be >= 32 pixels, got {self.detect_width}")
        if not self.margin >= 0:  # `not >=` also refuses NaN
            raise EdgeferError(f"--margin must be >= 0, got {self.margin}")
        check_at_most("--margin", self.margin, MAX_MARGIN, EdgeferError, "a fraction of the face box's side")


class Predictor:
    """Faces and expressions for BGR frames, torch-free.

    Args:
        model: an artifact path (``.onnx``, OpenVINO ``.xml``, TensorRT ``.engine``), a bundle
            directory, or an already opened :class:`~edgefer.backends.Backend`.
        device: backend device ("cpu", "GPU", "cuda:0", ...).
        detection: how faces are found (:class:`DetectionOptions`); its fields may be given as
            keywords instead (``Predictor(m, detector="none", margin=0.0)``). They are:
        detector: "auto"/"haar", "yunet", "yunet:/path.onnx", "none", a :class:`FaceDetector`, or None.
        detector_model: the detector's weights file (YuNet ONNX, or a Haar cascade XML), for a
            ``detector`` given by name alone.
        aligned: input frames are already aligned face crops; skip detection.
        threads: inference threads (backend default when None).
        smoothing: EMA weight of new probabilities per tracked face (1.0 = none); ``None`` turns
            the tracker off (still images).
        margin: extra border around a landmark-less box, as a fraction of its side.
        align: use 5-point alignment when the detector gives landmarks.
        detect_max_side: frames larger than this are downscaled for detection only.
        detect_width: frames wider than this are downscaled to this width for detection only (the
            boxes are mapped back; crops come from the full frame). None = only ``detect_max_side``.
        detect_every: run the detector on every N-th frame and carry the boxes forward by template
            matching in between (sooner when a face is lost); 1 = every frame. For video only:
            successive calls must be successive frames of one stream (:meth:`reset` between videos).
        strict: raise :class:`FrameError` on bad frames instead of returning an empty result.
        cache_dir: OpenVINO model cache folder: the first start compiles and writes it, later starts
            read the compiled model back (a camera that restarts does not compile again).
    """

    def __init__(
        self,
        model: str | os.PathLike | Backend,
        device: str = "cpu",
        detection: DetectionOptions | None = None,
        *,
        threads: int | None = None,
        smoothing: float | None = None,
        strict: bool = False,
        backend: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        **detection_fields: Any,
    ) -> None:
        # how faces are found: DetectionOptions, or its fields as keywords (Predictor(m, detector="none"))
        det = merged(DetectionOptions, detection, detection_fields, EdgeferError)
        aligned, detect_every = det.aligned, det.detect_every
        self.detection = det
        # the detector before the model: a missing detector file is refused before a model is loaded
        self.detector: FaceDetector = (
            FullFrameDetector() if aligned else make_detector(det.detector, det.detector_model)
        )
        if isinstance(model, Backend):
            self.backend = model
        else:
            from edgefer.backends import open_model

            self.backend = open_model(
                resolve_artifact(model, backend), device=device, threads=threads, backend=backend, cache_dir=cache_dir
            )
        if self.backend.metadata is None:
            raise BackendError(f"{self.backend!r} has no metadata")
        self.metadata: ModelMetadata = self.backend.metadata
        self.preprocessing = self.metadata.preprocessing
        self.class_names = tuple(self.metadata.class_names)
        self.aligned = aligned
        self.margin = det.margin
        self.align = det.align
        self.detect_max_side = det.detect_max_side
        self.detect_width = det.detect_width
        self.detect_every = detect_every
        self.smoothing = smoothing
        self.strict = strict
        self.state = self.new_state()  # the stream of predict(); others bring their own
        self.infer_calls = 0  # backend calls so far (a batch larger than max_batch takes several)

    def new_state(self, phase: int = 0) -> StreamState:
        """Fresh per-stream memory (tracks, carried boxes) for one more video on this predictor;
        ``phase`` staggers its detections against the other streams' (see :class:`BoxCarrier`)."""
        carries = self.detect_every > 1 and not isinstance(self.detector, FullFrameDetector)
        return StreamState(
            tracker=IoUTracker(alpha=self.smoothing) if self.smoothing is not None else None,
            carrier=BoxCarrier(self.detect_every, phase=phase) if carries else None,
        )

    @property
    def tracker(self) -> IoUTracker | None:
        return self.state.tracker

    @property
    def carrier(self) -> BoxCarrier | None:
        return self.state.carrier

    # -- stages ---------------------------------------------------------------------------
    def crop(self, frame_bgr: np.ndarray, det: Detection) -> np.ndarray:
        """The face crop (BGR) the model sees for one detection, before resizing."""
        if isinstance(self.detector, FullFrameDetector) and det.box == (0, 0, frame_bgr.shape[1], frame_bgr.shape[0]):
            return frame_bgr
        if self.align and det.landmarks is not None:
            return align_by_landmarks(frame_bgr, det.landmarks, self.preprocessing.input_size)
        return crop_square(frame_bgr, det.box, self.margin)

    def preprocess(self, crops_bgr: list[np.ndarray]) -> np.ndarray:
        """BGR crops -> the model's float32 batch in its layout (the shared preprocessing function)."""
        return preprocess_batch(crops_bgr, self.preprocessing, input_color="BGR")

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Logits for a batch of any size, chunked to the backend's ``max_batch`` (a model that outputs
        probabilities gives log-probabilities, so the softmax after it is not applied twice)."""
        n = batch.shape[0]
        if n == 0:
            return np.zeros((0, len(self.class_names)), dtype=np.float32)
        step = self.backend.max_batch or n
        outs = []
        for i in range(0, n, step):
            outs.append(np.asarray(self.backend.infer(batch[i : i + step]), dtype=np.float32))
            self.infer_calls += 1
        logits = np.concatenate(outs, axis=0).reshape(n, -1)
        if logits.shape[1] != len(self.class_names):
            raise BackendError(
                f"model returned {logits.shape[1]} scores but its metadata names {len(self.class_names)} classes"
            )
        return self.metadata.logits(logits)

    # -- the whole frame ------------------------------------------------------------------
    def predict(self, frame: Any, detections: list[Detection] | None = None) -> FrameResult:
        """Detect (unless ``detections`` are given), align, classify all faces of one BGR frame."""
        return self.predict_many([frame], [self.state], None if detections is None else [detections])[0]

    def predict_many(
        self,
        frames: list[Any],
        states: list[StreamState],
        detections: list[list[Detection] | None] | None = None,
    ) -> list[FrameResult]:
        """One frame of each of several streams: each found and cropped with its stream's ``states[i]``,
        the faces of all of them classified in one backend call (chunked by ``max_batch``).

        A frame's ``infer`` time is its share of the call by faces; ``total`` is its own stages, that
        share and its softmax/tracking."""
        if len(states) != len(frames) or (detections is not None and len(detections) != len(frames)):
            raise EdgeferError(f"predict_many: {len(frames)} frames need as many states (got {len(states)})")
        located = [
            self._locate(f, st, None if detections is None else detections[i])
            for i, (f, st) in enumerate(zip_strict(frames, states))
        ]
        parts = [x.batch for x in located if x.batch is not None and len(x.batch)]
        t_infer = time.perf_counter()
        logits = self.infer(np.concatenate(parts, axis=0) if parts else np.empty((0,), np.float32))
        infer_ms = (time.perf_counter() - t_infer) * 1e3
        n_faces = max(1, len(logits))
        results, at = [], 0
        for x, st in zip_strict(located, states):
            n = len(x.dets)
            x.timings["infer"] = infer_ms * n / n_faces if parts else 0.0
            results.append(self._finish(x, logits[at : at + n], st))
            at += n
        return results

    def _locate(self, frame: Any, state: StreamState, detections: list[Detection] | None) -> _Located:
        """The frame's own stages: check it, find faces (detect or carry), crop and preprocess them."""
        t0 = time.perf_counter()
        timings = dict.fromkeys(STAGES, 0.0)
        try:
            img = as_bgr_frame(frame)
        except FrameError as exc:
            if self.strict:
                raise
            return _Located(t0, timings, error=str(exc))
        h, w = img.shape[:2]
        detected = True
        if detections is not None:
            dets = list(detections)
        elif state.carrier is None:
            dets = self.detect(img)
        else:
            dets, detected = self._detect_or_carry(img, state.carrier)
        t1 = time.perf_counter()
        crops = [self.crop(img, d) for d in dets]
        t2 = time.perf_counter()
        batch = self.preprocess(crops) if crops else None
        t3 = time.perf_counter()
        timings.update(detect=(t1 - t0) * 1e3, align=(t2 - t1) * 1e3, preprocess=(t3 - t2) * 1e3)
        timings["total"] = (t3 - t0) * 1e3  # so far: infer's share and the finish are added later
        return _Located(t0, timings, dets, batch, (w, h), None, detected)

    def _finish(self, x: _Located, logits: np.ndarray, state: StreamState) -> FrameResult:
        """Softmax, tracking and the :class:`FrameResult` of one located frame."""
        if x.error is not None:
            x.timings["total"] = (time.perf_counter() - x.t0) * 1e3
            return FrameResult(faces=[], timings=x.timings, frame_size=None, error=x.error)
        t4 = time.perf_counter()
        dets = x.dets
        n_classes = len(self.class_names)
        probs = softmax(logits, axis=1).astype(np.float32) if len(dets) else np.zeros((0, n_classes), np.float32)
        tracked = state.tracker.update([d.box for d in dets], probs) if state.tracker is not None else None
        faces = []
        for i, d in enumerate(dets):
            track_id, p = tracked[i] if tracked is not None else (None, probs[i])
            k = int(np.argmax(p))
            faces.append(
                Face(
                    box=tuple(int(v) for v in d.box),
                    label=self.class_names[k],
                    class_index=k,
                    probs=np.asarray(p, dtype=np.float32),
                    score=float(p[k]),
                    det_score=float(d.score),
                    landmarks=d.landmarks,
                    track_id=track_id,
                    raw_probs=probs[i],
                )
            )
        x.timings["total"] += x.timings["infer"] + (time.perf_counter() - t4) * 1e3
        return FrameResult(faces=faces, timings=x.timings, frame_size=x.frame_size, detected=x.detected)

    __call__ = predict

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        """Faces of one frame: the detector on a copy downscaled to ``detect_width`` / ``detect_max_side``."""
        return detect_scaled(self.detector, frame_bgr, self.detect_max_side, width=self.detect_width)

    def _detect_or_carry(self, img: np.ndarray, carrier: BoxCarrier) -> tuple[list[Detection], bool]:
        """The boxes carried from the last detection, or a fresh detection when one is due or a face was lost."""
        import cv2

        grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        if not carrier.due(img.shape):
            carried = carrier.carry(grey)
            if carried is not None:
                return carried, False
        dets = self.detect(img)
        carrier.refresh(grey, dets)
        return dets, True

    def reset(self) -> None:
        """Forget tracks and carried boxes of :meth:`predict`'s stream (call between unrelated videos)."""
        self.state.reset()

    def info(self) -> dict[str, Any]:
        info = dict(self.backend.info())
        info.update(
            detector=getattr(self.detector, "name", type(self.detector).__name__),
            input_size=self.preprocessing.input_size,
            classes=list(self.class_names),
        )
        return info

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
