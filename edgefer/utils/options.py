"""Options objects and the command lines that reproduce them.

:class:`edgefer.export.ExportOptions` and :class:`edgefer.quantize.QuantizeOptions` are frozen
dataclasses validated on construction and passed whole through their layers. Each field names its
CLI flag in the field's metadata (:func:`flag`), so the command line a pipeline stage prints to
reproduce itself is *derived* from the options it ran with (:func:`to_argv`) instead of being
written out by hand beside them, and a test (``tests/test_options.py``) parses every derived
command line with the real CLI and checks that it gives back the same options.

A field whose metadata has no flag cannot be expressed on the command line (e.g. a seed only the
Python API sets): :func:`to_argv` refuses such a field when it differs from its default, rather
than print a command that would silently run something else.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from edgefer.errors import EdgeferError

T = TypeVar("T")

#: Metadata keys of a field: the flag used when the value is set (or True), and for booleans the
#: flag that says False (``--quiet`` for ``progress=False``, ``--static`` for ``dynamic=False``).
FLAG = "flag"
FLAG_FALSE = "flag_false"


def flag(default: Any, name: str | None = None, *, false: str | None = None, factory: Any = None) -> Any:
    """A dataclass field whose CLI flag is ``name`` (``--x``); ``false`` is the flag for a False boolean."""
    meta = {FLAG: name, FLAG_FALSE: false}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _text(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)  # round-trips exactly
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return str(value)


def to_argv(options: Any) -> list[str]:
    """The CLI flags that give ``options``: one per field that differs from its default.

    Raises :class:`EdgeferError` for a non-default field that has no CLI flag, or a value with
    no flag form (e.g. a device profile given as an object rather than a path).
    """
    argv: list[str] = []
    for f in dataclasses.fields(options):
        value = getattr(options, f.name)
        if value == _default(f):
            continue
        on, off = f.metadata.get(FLAG), f.metadata.get(FLAG_FALSE)
        if isinstance(value, bool):
            chosen = on if value else off
            if chosen is None:
                raise EdgeferError(f"{type(options).__name__}.{f.name}={value} has no command-line flag")
            argv.append(chosen)
            continue
        if on is None:
            raise EdgeferError(f"{type(options).__name__}.{f.name}={value!r} has no command-line flag")
        if isinstance(value, (tuple, list)):
            for item in value:
                argv += [on, _text(item)]
            continue
        if not isinstance(value, (str, int, float, os.PathLike)):
            raise EdgeferError(f"{type(options).__name__}.{f.name}={value!r} cannot be written as {on}")
        argv += [on, _text(value)]
    return argv


def as_paths(options: Any, *names: str) -> None:
    """Turn the ``names`` fields of a frozen options object that hold a ``str`` or path into a
    :class:`~pathlib.Path` (in place, during ``__post_init__``), so that options equal whether a
    path was given as text or as a ``Path`` (the CLI gives text for some flags, ``Path`` for others)."""
    for name in names:
        value = getattr(options, name)
        if isinstance(value, (str, os.PathLike)):
            object.__setattr__(options, name, Path(value))


def field_names(cls: type) -> tuple[str, ...]:
    """The field names of the options class ``cls``."""
    return tuple(f.name for f in dataclasses.fields(cls))


def merged(cls: type[T], options: T | None, fields: Mapping[str, Any], error: type[EdgeferError]) -> T:
    """``options`` (or the defaults) with ``fields`` replaced: what the keyword shorthand of
    ``export(..., target="trt")`` / ``quantize(..., method="qat")`` builds. An unknown field name is
    an ``error`` that lists the valid ones, not a TypeError from deep inside."""
    unknown = sorted(set(fields) - set(field_names(cls)))
    if unknown:
        raise error(f"unknown {cls.__name__} field(s) {', '.join(unknown)}; valid: {', '.join(field_names(cls))}")
    if options is None:
        return cls(**fields)
    if not isinstance(options, cls):
        raise error(f"options must be a {cls.__name__}, not {type(options).__name__}")
    return dataclasses.replace(options, **fields) if fields else options  # type: ignore[type-var]
