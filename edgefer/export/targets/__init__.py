"""The deployment targets (ONNX, OpenVINO, TensorRT): one module each, found through the formats table.

A row of :data:`edgefer.formats.FORMATS` is a target when it names a ``target_module``; that
module defines ``TARGET``, an instance of :class:`~edgefer.export.targets.base.Target`. Export,
quantize, their options, ``edgefer export`` and the pipeline ask the target
(:func:`target_named`) instead of branching on its name. The modules are imported by name when a
target is first asked for (as backends are), so importing this package costs nothing.

Adding a target: a backend module (``edgefer/backends/``), a format row with ``target_module``,
and the target module here (docs/architecture.md, "A target").
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from edgefer.errors import ExportError, QuantizationError
from edgefer.formats import FORMATS, TARGETS

if TYPE_CHECKING:
    from edgefer.export.targets.base import Target

#: Long names of the quantize methods a target may refuse, for the refusal's one line.
_METHOD_WHAT = {"wc": "weights-only compression", "qat": "quantization-aware training"}


def target_named(name: str) -> Target:
    """The target called ``name``; an :class:`ExportError` naming the known ones otherwise."""
    row = next((f for f in FORMATS if f.name == name and f.target_module), None)
    if row is None:
        raise ExportError(f"unknown target {name!r}; choose one of {', '.join(TARGETS)}")
    return importlib.import_module(str(row.target_module)).TARGET  # type: ignore[no-any-return]


def all_targets() -> list[Target]:
    """Every target, in the order of :data:`~edgefer.formats.TARGETS`."""
    return [target_named(name) for name in TARGETS]


def check_method(target: str, method: str) -> None:
    """A :class:`QuantizationError` when ``target`` does not take the quantize ``method``, naming the ones that do."""
    if method not in target_named(target).methods:
        takers = "/".join(t.name for t in all_targets() if method in t.methods)
        what = _METHOD_WHAT.get(method, "quantization")
        raise QuantizationError(f"{what} (method {method!r}) is for the {takers} target")
