"""Which pip extra installs which optional module: the one place a missing import becomes advice.

edgefer installs in layers (pyproject.toml). A camera or a Jetson has the core (numpy, pillow,
typer, rich, pyyaml), the ``runtime`` extra (onnxruntime, the OpenVINO runtime, onnx) and an OpenCV
(the system's, or the ``opencv`` extra); training, export and quantization need the ``train``
extra (torch, torchvision, matplotlib) and the ``onnx``/``openvino``/``trt`` toolchains. The
library imports these modules where it uses them, so a command that needs a missing layer fails
on its first import with ``ModuleNotFoundError``; :func:`missing_extra` maps that error to a
one-line :class:`~edgefer.errors.MissingDependencyError` naming the extra to install, which the
CLI prints as ``error: ...`` with exit status 2 (instead of an internal error). One table, no
try/except around each import: a new torch-only command is covered without doing anything.

This module imports nothing optional itself (it is loaded when an import has just failed).
"""

from __future__ import annotations

import sys

from edgefer.errors import MissingDependencyError, UnsupportedPythonError

#: The oldest Python the training side runs on: edgefer.training, .models, .quantize and .pipeline (PyTorch,
#: NNCF; the code uses 3.10's ``zip(strict=)``; tested on 3.11). The device side -- predict, run, benchmark,
#: bundle, deepstream, doctor, export from an ONNX -- runs on 3.8 (JetPack 5) to 3.13 (pyproject.toml).
TRAIN_PYTHON: tuple[int, int] = (3, 10)
#: What an interpreter older than TRAIN_PYTHON can still do, for the message that refuses the rest.
DEVICE_COMMANDS = "predict, run, benchmark, bundle, deepstream, doctor and export --onnx"
#: The extras that only the training side needs (their packages carry a python_version marker).
TRAIN_EXTRAS = ("train", "onnx", "openvino")

#: top-level import name -> the extra that installs it (the first one to suggest when several do)
MODULE_EXTRAS: dict[str, str] = {
    "torch": "train",
    "torchvision": "train",
    "matplotlib": "train",
    "cv2": "opencv",
    "onnxruntime": "runtime",
    "openvino": "runtime",
    "onnx": "runtime",
    "onnxscript": "onnx",
    "onnxslim": "onnx",
    "nncf": "openvino",
    "torchao": "openvino",
    "tensorrt": "trt",
    "pycuda": "trt",
    "skimage": "all",
}

#: extra advice for a module a device may already have outside the venv
HINTS: dict[str, str] = {
    # pip cannot express "any cv2": a system OpenCV (JetPack's, with CUDA and GStreamer) satisfies
    # the runtime, so the opencv extra is not forced on devices that have one.
    "cv2": "; or use the system's OpenCV (a venv made with `python3 -m venv --system-site-packages`)",
    "tensorrt": "; on Jetson TensorRT comes with JetPack (a venv made with `python3 -m venv --system-site-packages`)",
}


def python_too_old(what: str, package: str = "torch", extra: str = "train") -> UnsupportedPythonError | None:
    """The error for ``what`` (a command or part of edgefer) on an interpreter older than TRAIN_PYTHON, else None."""
    if sys.version_info[:2] >= TRAIN_PYTHON:
        return None
    need = ".".join(map(str, TRAIN_PYTHON))
    here = ".".join(map(str, sys.version_info[:3]))
    return UnsupportedPythonError(
        package,
        extra,
        f"{what or 'this'} needs Python >= {need} (PyTorch and the training side); this is Python {here}. "
        f"This interpreter runs the device side: {DEVICE_COMMANDS}. Train and quantize on a machine with a newer "
        "Python and bring the ONNX, IR or bundle here.",
    )


def require_train_python(part: str) -> None:
    """Raise :class:`UnsupportedPythonError` when ``part`` (``"edgefer.training"``) is imported on an
    interpreter older than :data:`TRAIN_PYTHON` -- e.g. a Jetson's Python 3.8 with JetPack's own torch,
    where the training code would otherwise fail halfway with a TypeError."""
    err = python_too_old(part)
    if err is not None:
        raise err


def missing_extra(exc: ModuleNotFoundError, feature: str = "") -> MissingDependencyError | None:
    """The :class:`MissingDependencyError` for a failed import of an optional module, else None.

    ``exc.name`` is the module Python could not find (``torch`` or ``torch.nn``); only modules an
    extra provides are mapped, so a missing *edgefer* module (a bug) stays an internal error.
    ``feature`` names what needed it (``"edgefer train"``).
    """
    name = (getattr(exc, "name", None) or "").split(".")[0]
    extra = MODULE_EXTRAS.get(name)
    if extra is None:
        return None
    if extra in TRAIN_EXTRAS:  # on an old interpreter no extra brings it: say what runs here instead
        too_old = python_too_old(feature, name, extra)
        if too_old is not None:
            return too_old
    return MissingDependencyError(name, extra, feature, hint=HINTS.get(name, ""))
