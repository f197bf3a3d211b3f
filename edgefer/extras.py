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

from edgefer.errors import MissingDependencyError

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
    return MissingDependencyError(name, extra, feature, hint=HINTS.get(name, ""))
