"""The one table of model file formats: what each is called, its suffixes, its files, who runs it.

Every part of edgefer that needs to know about a format asks this table instead of repeating
suffix rules: export, quantize and the pipeline take their target names from :data:`TARGETS`;
:func:`edgefer.metadata.read_metadata` reads metadata the way the row says; a bundle copies the
files :meth:`Format.files` lists and records the row's backend; :func:`edgefer.backends.open_model`
(and so the benchmark and the runtime) picks the backend whose row claims the suffix, and the
runtime checks whether a row's engine package is installed with :meth:`Format.installed`.

An unknown suffix is an :class:`UnknownFormatError` naming every known suffix - never a guess.

Adding a backend is one backend file plus one row: write ``edgefer/backends/<name>.py`` with a
:class:`~edgefer.backends.base.Backend` subclass whose ``name`` is the row's ``backend``, decorated
with :func:`~edgefer.backends.base.register_backend` (its default ``can_load`` already accepts the
row's suffixes), and add a :class:`Format` row to :data:`FORMATS`. The backend module is imported
only when a backend is needed, so this module stays torch-free and cheap to import.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edgefer.errors import BackendError
from edgefer.extras import MODULE_EXTRAS

#: Precisions ``edgefer export`` knows, lowest rank last.
PRECISIONS = ("fp32", "fp16", "int8")

#: How a format's metadata is read: ONNX ``metadata_props``, OpenVINO ``rt_info``, a JSON sidecar
#: beside the file (``model.engine.json``), or the training checkpoint itself (needs torch).
MetadataKind = Literal["onnx", "openvino", "sidecar", "checkpoint"]


class UnknownFormatError(BackendError):
    """A model file whose suffix no row of :data:`FORMATS` claims."""


@dataclass(frozen=True)
class Format:
    """One model file format.

    Attributes:
        name: the format's name, also its ``--target`` name when ``target`` is true.
        backend: the :attr:`~edgefer.backends.base.Backend.name` of the backend that runs it.
        backend_module: the module that defines and registers that backend (imported lazily).
        runtime: the Python package the backend needs (looked up, never imported here).
        suffixes: file suffixes of the main file, lower case; the first is the one edgefer writes.
        companions: the other files of the artifact, as templates over the main file's ``{name}``
            and ``{stem}`` (e.g. an IR's ``{stem}.bin``); the ones that exist travel with it.
        metadata: how its metadata is read (see :data:`MetadataKind`).
        precisions: the precisions an artifact of this format can hold.
        target_module: for an ``edgefer export`` / ``quantize`` / ``pipeline`` target, the module
            whose ``TARGET`` (an :class:`edgefer.export.targets.base.Target`) owns how it is built
            and quantized (imported lazily, by :func:`edgefer.export.targets.target_named`); None
            for a format that is only run, never built.
        deployable: goes into bundles (a training checkpoint does not).
    """

    name: str
    backend: str
    backend_module: str
    runtime: str
    suffixes: tuple[str, ...]
    companions: tuple[str, ...]
    metadata: MetadataKind
    precisions: tuple[str, ...]
    target_module: str | None
    deployable: bool

    @property
    def target(self) -> bool:
        """Whether this format is an ``edgefer export`` / ``quantize`` / ``pipeline`` target."""
        return self.target_module is not None

    def claims(self, path: str | os.PathLike) -> bool:
        """True when ``path``'s suffix (any case) is one of this format's."""
        return Path(path).suffix.lower() in self.suffixes

    def files(self, path: str | os.PathLike) -> list[Path]:
        """The existing files of the artifact at ``path``: the main file, then its companions."""
        p = Path(path)
        candidates = [p] + [p.with_name(c.format(name=p.name, stem=p.stem)) for c in self.companions]
        seen: list[Path] = []
        for f in candidates:
            if f.is_file() and f not in seen:
                seen.append(f)
        return seen

    @property
    def extra(self) -> str:
        """The ``pip install edgefer[...]`` extra that brings ``runtime`` (:data:`edgefer.extras.MODULE_EXTRAS`)."""
        return MODULE_EXTRAS[self.runtime]

    def installed(self) -> bool:
        """True when the backend's engine package can be imported here (it is not imported)."""
        try:
            return importlib.util.find_spec(self.runtime) is not None
        except (ImportError, ValueError):
            return False


_SIDECAR = "{name}.json"  # edgefer.metadata.sidecar_path: model.engine -> model.engine.json

#: Every format, in the order backends are tried by :func:`edgefer.backends.open_model`.
FORMATS: tuple[Format, ...] = (
    Format(
        name="onnx",
        backend="onnxruntime",
        backend_module="edgefer.backends.onnxruntime",
        runtime="onnxruntime",
        suffixes=(".onnx",),
        companions=("{name}.data", "{stem}.data", _SIDECAR),  # external weights
        metadata="onnx",
        precisions=PRECISIONS,
        target_module="edgefer.export.targets.onnx",
        deployable=True,
    ),
    Format(
        name="openvino",
        backend="openvino",
        backend_module="edgefer.backends.openvino",
        runtime="openvino",
        suffixes=(".xml",),
        companions=("{stem}.bin", _SIDECAR),  # the IR's weights
        metadata="openvino",
        precisions=PRECISIONS,
        target_module="edgefer.export.targets.openvino",
        deployable=True,
    ),
    Format(
        name="trt",
        backend="tensorrt",
        backend_module="edgefer.backends.tensorrt",
        runtime="tensorrt",
        suffixes=(".engine", ".plan", ".trt"),
        companions=(_SIDECAR,),  # which TensorRT and GPU built it, and the model metadata
        metadata="sidecar",
        precisions=PRECISIONS,
        target_module="edgefer.export.targets.tensorrt",
        deployable=True,
    ),
    Format(
        name="torch",
        backend="torch",
        backend_module="edgefer.backends.torch",
        runtime="torch",
        suffixes=(".pt", ".pth"),
        companions=(),
        metadata="checkpoint",
        precisions=("fp32",),
        target_module=None,
        deployable=False,
    ),
)

#: Targets of ``edgefer export``, ``edgefer quantize`` and ``edgefer pipeline``: the rows with a
#: ``target_module`` (their objects: :func:`edgefer.export.targets.target_named`).
TARGETS: tuple[str, ...] = tuple(f.name for f in FORMATS if f.target)
#: Suffixes a bundle accepts.
DEPLOYABLE_SUFFIXES: tuple[str, ...] = tuple(s for f in FORMATS if f.deployable for s in f.suffixes)


def known_suffixes() -> str:
    """One line naming every known suffix and its backend, e.g. ``.onnx -> onnxruntime, ...``."""
    return ", ".join(f"{'/'.join(f.suffixes)} -> {f.backend}" for f in FORMATS)


def format_of(path: str | os.PathLike) -> Format:
    """The format of ``path`` by its suffix; :class:`UnknownFormatError` naming the known ones."""
    p = Path(path)
    for f in FORMATS:
        if f.claims(p):
            return f
    shown = repr(p.suffix) if p.suffix else "no suffix"
    raise UnknownFormatError(f"{p.name} is not an artifact file edgefer knows ({shown}; known: {known_suffixes()})")


def format_named(name: str) -> Format:
    """The row called ``name`` (a target name, or ``torch``); :class:`UnknownFormatError` otherwise."""
    for f in FORMATS:
        if f.name == name:
            return f
    raise UnknownFormatError(f"unknown format {name!r}; known: {', '.join(f.name for f in FORMATS)}")


def format_for_backend(backend: str) -> Format | None:
    """The row run by the backend called ``backend``, or None for a name no row uses."""
    return next((f for f in FORMATS if f.backend == backend), None)
