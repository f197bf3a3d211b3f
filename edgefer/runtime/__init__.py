"""The embeddable runtime: frames in, faces and expressions out, no PyTorch.

Imports numpy, OpenCV and, through :func:`edgefer.backends.open_model`, one inference backend.

>>> from edgefer.runtime import Predictor                      # doctest: +SKIP
>>> with Predictor("model_int8.xml", detector="auto") as p:    # doctest: +SKIP
...     result = p.predict(frame_bgr)
...     [(f.box, f.label, f.score) for f in result.faces], result.timings
"""

from edgefer.runtime.detect import (
    Detection,
    DetectorError,
    FaceDetector,
    FullFrameDetector,
    HaarDetector,
    YuNetDetector,
    make_detector,
)
from edgefer.runtime.draw import draw_result
from edgefer.runtime.predictor import (
    DetectionOptions,
    Face,
    FrameError,
    FrameResult,
    Predictor,
    StreamState,
    as_bgr_frame,
)
from edgefer.runtime.stream import (
    FrameSource,
    MultiStreamSummary,
    StreamError,
    StreamOptions,
    StreamSummary,
    run_stream,
    run_streams,
)
from edgefer.runtime.tracking import IoUTracker

__all__ = [
    "Detection",
    "DetectionOptions",
    "DetectorError",
    "Face",
    "FaceDetector",
    "FrameError",
    "FrameResult",
    "FrameSource",
    "FullFrameDetector",
    "HaarDetector",
    "IoUTracker",
    "MultiStreamSummary",
    "Predictor",
    "StreamError",
    "StreamOptions",
    "StreamState",
    "StreamSummary",
    "YuNetDetector",
    "as_bgr_frame",
    "draw_result",
    "make_detector",
    "run_stream",
    "run_streams",
]
