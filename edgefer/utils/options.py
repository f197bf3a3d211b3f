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

The metadata is also where the CLI's parameters come from: a field carries its name, its flag
(and the flag for False), its help text, the value type the command line parses (where the default
does not say it), and the deprecated spellings it still accepts (:func:`cli_field`). The command
modules build their Typer parameters from these (``edgefer/cli/params.py``), so a flag is written
once -- here -- and the CLI, :func:`to_argv` and the options cannot disagree.
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
#: Help text; the type the command line parses (``int``, ``float``, ``str``, ``Path``, ``bool``) when
#: the default does not say it (a ``None`` default); deprecated spellings still accepted (hidden);
#: how a value is written on the command line (e.g. ``","`` joins a list into one argument).
HELP = "help"
TYPE = "type"
ALIASES = "aliases"
SEP = "sep"


def flag(
    default: Any,
    name: str | None = None,
    *,
    false: str | None = None,
    factory: Any = None,
    help: str = "",
    type: Any = None,
    aliases: tuple[str, ...] = (),
    sep: str | None = None,
) -> Any:
    """A dataclass field whose CLI flag is ``name`` (``--x``); ``false`` is the flag for a False boolean.

    ``help`` is the flag's help text, ``type`` the type its value is parsed as (default: the type of
    ``default``), ``aliases`` older spellings kept as hidden, deprecated flags, and ``sep`` joins a
    list value into one argument (``--batch 1,8``) instead of repeating the flag.
    """
    meta = {FLAG: name, FLAG_FALSE: false, HELP: help, TYPE: type, ALIASES: tuple(aliases), SEP: sep}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class CliField:
    """What the CLI needs of one options field: see :func:`flag`."""

    name: str
    flag: str | None
    flag_false: str | None
    help: str
    default: Any
    type: Any
    aliases: tuple[str, ...]
    sep: str | None


def cli_field(cls: type, name: str) -> CliField:
    """The CLI description of field ``name`` of the options class ``cls`` (a KeyError names a typo)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            meta = f.metadata
            default = _default(f)
            kind = meta.get(TYPE) or (type(default) if default not in (None, dataclasses.MISSING) else str)
            return CliField(
                name=f.name,
                flag=meta.get(FLAG),
                flag_false=meta.get(FLAG_FALSE),
                help=meta.get(HELP, ""),
                default=None if default is dataclasses.MISSING else default,
                type=Path if isinstance(default, os.PathLike) and not meta.get(TYPE) else kind,
                aliases=tuple(meta.get(ALIASES, ())),
                sep=meta.get(SEP),
            )
    raise KeyError(f"{cls.__name__} has no field {name!r}")


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
    shared: dict[str, Any] = {}
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
        if on in shared:  # two fields one flag (export --data: calibration and reference data)
            if shared[on] == value:
                continue
            on = (f.metadata.get(ALIASES) or (on,))[0]  # a different value: the field's own (older) spelling
        shared[on] = value
        if isinstance(value, (tuple, list)) and f.metadata.get(SEP):
            argv += [on, f.metadata[SEP].join(_text(item) for item in value)]
            continue
        if isinstance(value, (tuple, list)):
            for item in value:
                argv += [on, _text(item)]
            continue
        if f.metadata.get(TYPE) is str and not isinstance(value, (str, os.PathLike)):
            value = str(value)  # an object parsed from text (a Gate) is written back as its text
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
