"""What a stream run writes: the live events file, the annotated video, the summary, and the
checks made on them before the first frame.

Events (JSONL) are written under their own name from the first frame, one complete line per
processed frame, flushed as it goes: a camera stream never ends, so a consumer must be able to
``tail -f`` the file while it runs, and a crash leaves only whole lines of events that really
happened. The annotated video (``mp4v``) is written to a partial file and renamed at the end (or
removed when it could not be written completely). With several sources each stream has its own
video, named by :func:`stream_output`; the events of every stream share one file, each line
carrying its ``stream`` id.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgefer.runtime.capture import StreamError
from edgefer.runtime.summary import MultiStreamSummary, StreamSummary

#: ``stopped_by`` when the events file could not be written (a full disk)
WRITE_FAILED = "output write failed"


def _write_error(exc: OSError, path: Path | None) -> str:
    from edgefer.utils.io import storage_error

    err = storage_error(exc)
    return str(err) if err is not None else f"cannot write {path}: {exc}"


def _video_complete(path: Path | None, frames: int) -> bool:
    """True when the video just written reads back with its index and ``frames`` frames.

    OpenCV's writer never reports a failed write: a full disk (or a file-size limit) leaves a
    file cut short, an ``.mp4`` without the index written at the end that no player opens."""
    if path is None or not path.is_file():
        return False
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return False
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        # a backend that cannot count is given the benefit, one that estimates from the duration a frame
        return count <= 0 or count >= frames - 1
    finally:
        cap.release()


def check_gui() -> None:
    """Raise a clear error when this OpenCV cannot open windows (headless wheels)."""
    try:
        cv2.namedWindow("edgefer")
    except cv2.error as exc:
        raise StreamError(
            "--show needs an OpenCV build with GUI support; opencv-python-headless has none. "
            "Install 'opencv-python<5' instead (same API), or write --out video.mp4 and watch that"
        ) from exc


def check_stream_outputs(*paths: str | os.PathLike | None, overwrite: bool = False) -> None:
    """Check the files a stream run will write (video, events, summary) before anything runs.

    Each follows the output policy of :mod:`edgefer.utils.outputs`: an existing folder of that
    name, or a file edgefer did not write, is refused; an earlier edgefer output needs
    ``overwrite``. Called by :func:`run_stream` and, earlier still, by ``edgefer run`` (before the
    model is even loaded).
    """
    from edgefer.utils.io import check_can_create
    from edgefer.utils.outputs import check_outputs

    given = [Path(p) for p in paths if p is not None]
    if len({p.resolve() for p in given}) != len(given):
        raise StreamError("--out, --jsonl and --summary-json must be different files")
    for p in given:
        if not p.name or p.name in (".", ".."):
            raise StreamError(f"{p} is not a file name")
        check_outputs(p.parent, [p.name], overwrite=overwrite)
        check_can_create(p)  # a read-only folder is refused now, not after the last frame


def save_summary(
    summary: StreamSummary | MultiStreamSummary, path: str | os.PathLike, *, overwrite: bool = False
) -> Path:
    """Write the run summary as JSON (atomically; the output policy applies)."""
    from edgefer.utils.io import write_json
    from edgefer.utils.outputs import check_outputs, record_outputs

    p = Path(path)
    check_outputs(p.parent, [p.name], overwrite=overwrite)
    write_json(p, summary.to_dict())
    record_outputs(p.parent, [p.name], "run")
    return p


def check_run_outputs(
    streams: int,
    out: str | os.PathLike | None,
    jsonl: str | os.PathLike | None,
    summary: str | os.PathLike | None = None,
    *,
    overwrite: bool = False,
) -> None:
    """:func:`check_stream_outputs` for a run over ``streams`` sources: every stream's video (see
    :func:`stream_output`), the shared events file and the summary."""
    videos = [stream_output(out, i, streams) for i in range(streams)]
    check_stream_outputs(*videos, jsonl, summary, overwrite=overwrite)


def stream_output(path: str | os.PathLike | None, stream: int, streams: int) -> Path | None:
    """The video file of stream ``stream`` of ``streams``: ``path`` itself for one source, else
    ``path`` with ``.s<stream>`` before its suffix (``--out cams.mp4`` -> ``cams.s0.mp4``, ``cams.s1.mp4``...)."""
    if path is None:
        return None
    p = Path(path)
    if streams == 1:
        return p
    return p.with_name(f"{p.stem}.s{stream}{p.suffix or '.mp4'}")


class EventLog:
    """The live JSONL events file: one whole line per processed frame, flushed as it goes.

    :meth:`write` returns False when a line could not be written (a full disk): the caller stops,
    and :meth:`close` cuts the file back to the last whole line. ``error`` then says why.
    """

    def __init__(self, path: Path) -> None:
        from edgefer.utils.io import ensure_writable_dir
        from edgefer.utils.outputs import record_outputs

        ensure_writable_dir(path.parent)
        self.path = path
        self._file = open(path, "w", encoding="utf-8", buffering=1)  # noqa: SIM115 - closed in close()
        record_outputs(path.parent, [path.name], "run")
        self._cut: int | None = None
        self.error: str | None = None

    def write(self, event: dict[str, Any]) -> bool:
        whole = self._file.tell()  # the end of the last whole line
        try:
            self._file.write(json.dumps(event) + "\n")
        except OSError as exc:  # a full disk: stop, keeping every whole line and the video so far
            self._cut = whole
            self.error = _write_error(exc, self.path)
            return False
        return True

    def close(self) -> None:
        try:
            self._file.close()
        except OSError as exc:  # a full disk: the buffered part of the last line is dropped
            self.error = self.error or _write_error(exc, self.path)
        if self._cut is not None:  # and what of it reached the disk
            with contextlib.suppress(OSError):
                os.truncate(self.path, self._cut)


class VideoSink:
    """An annotated ``mp4v`` video written under a partial name and renamed into place by
    :meth:`finish` (or removed when the run failed or the file came out incomplete).

    Opened on the first frame at ``fps`` and that frame's size; a stream that changes resolution
    is resized to it."""

    def __init__(self, path: Path, fps: float) -> None:
        from edgefer.utils.io import ensure_writable_dir

        ensure_writable_dir(path.parent)
        self.path = path
        self.fps = fps
        self.partial = path.with_name(f".{path.stem}.pid{os.getpid()}.partial{path.suffix or '.mp4'}")
        self._writer: cv2.VideoWriter | None = None
        self._size = (0, 0)
        self.frames = 0

    def write(self, image: np.ndarray) -> None:
        if self._writer is None:
            self._size = (image.shape[1], image.shape[0])
            self._writer = cv2.VideoWriter(str(self.partial), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self._size)
            if not self._writer.isOpened():
                raise StreamError(f"cannot write video {self.path} (mp4v codec unavailable?)")
        if (image.shape[1], image.shape[0]) != self._size:  # a stream changed resolution
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(image)
        self.frames += 1

    def finish(self, completed: bool, events: Path | None = None) -> str | None:
        """Close; rename into place when ``completed`` and whole. Returns why the video was removed
        after a completed run (a full disk), else None."""
        from edgefer.utils.outputs import record_outputs

        if self._writer is None:
            return None
        self._writer.release()
        error = None
        if completed and not _video_complete(self.partial, self.frames):
            error = (
                f"the annotated video {self.path} could not be written completely (the disk is full or a "
                "file-size limit was reached); it was removed"
                + (f", and {events} keeps every processed frame" if events is not None else "")
            )
            completed = False
        if completed:
            os.replace(self.partial, self.path)
            record_outputs(self.path.parent, [self.path.name], "run")
        else:
            with contextlib.suppress(OSError):
                self.partial.unlink()
        return error
