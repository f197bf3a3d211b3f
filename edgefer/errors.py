"""The exceptions edgefer raises for bad input.

Every error a user can cause (a wrong dataset layout, a corrupt checkpoint, an engine built by
another TensorRT) is an :class:`EdgeferError` with a message that says what was expected and
what to do. The CLI prints the message and exits with status 2 instead of a traceback.
"""

from __future__ import annotations


class EdgeferError(Exception):
    """Base class of every user-facing edgefer error."""


class DatasetError(EdgeferError):
    """A dataset path, layout, label file or image that cannot be used."""


class CheckpointError(EdgeferError):
    """A checkpoint that is missing, corrupt, or does not match what was asked for."""


class ModelError(EdgeferError):
    """An unknown model name or invalid model options."""


class ExportError(EdgeferError):
    """An export that failed (parity check, unwritable output, missing dependency)."""


class QuantizationError(EdgeferError):
    """A quantization run that cannot proceed (no calibration data, unmet budget)."""


class BackendError(EdgeferError):
    """An artifact that no installed backend can load, or a backend that failed to run it."""


class EngineMismatchError(BackendError):
    """A TensorRT engine built by another TensorRT version or for another GPU."""


class MissingDependencyError(EdgeferError):
    """An optional package is needed for this feature; the message names the extra to install."""

    def __init__(self, package: str, extra: str, feature: str = "", hint: str = "") -> None:
        what = f" for {feature}" if feature else ""
        # extras and the modules they bring: edgefer.extras.MODULE_EXTRAS ("" = not an extra: plain pip)
        how = f"pip install 'edgefer[{extra}]'" if extra else f"pip install {package}"
        super().__init__(f"'{package}' is needed{what} but is not installed. Install it with: {how}{hint}")
        self.package = package
        self.extra = extra


class UnsupportedPythonError(MissingDependencyError):
    """This interpreter is too old for the part of edgefer that was asked for (the training side on a
    Jetson's Python 3.8): installing an extra would not help, so the message says what runs here."""

    def __init__(self, package: str, extra: str, message: str) -> None:
        EdgeferError.__init__(self, message)
        self.package = package
        self.extra = extra


def require(module: str, extra: str, feature: str = ""):
    """Import an optional module or raise :class:`MissingDependencyError` naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(module.split(".")[0], extra, feature) from exc
