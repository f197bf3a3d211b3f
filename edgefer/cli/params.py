"""Command-line parameters declared once: :class:`Param`, built from options fields, and :func:`command`.

Every flag of ``edgefer`` is a :class:`Param`. A setting that lives in an options class
(:class:`~edgefer.export.options.ExportOptions`, ``QuantizeOptions``, ``BenchOptions``,
``TrainConfig``) is taken from that field's metadata (:func:`from_field`: flag, help, default,
type and deprecated spellings); the flags shared by several commands are the groups of
:mod:`edgefer.cli.groups`; a command lists its groups and its own few parameters, and
:func:`command` turns the list into the Typer command (this is the only module that creates Typer
options). The idea is Polygraphy's argument groups; nothing of it is copied.

:func:`command` gives the command function a generated signature (``__signature__``), which
Typer reads like a written one on every supported Python (3.8's typer 0.20 included). A
deprecated spelling is a hidden option of its own: when given, one line on stderr says what to
write instead, and its value is used as the canonical flag's.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import typer

from edgefer.errors import EdgeferError
from edgefer.utils.options import cli_field

log = logging.getLogger(__name__)

#: Short spellings: the same letter means the same thing in every command that has it.
SHORT = {"--out": "-o", "--quiet": "-q", "--checkpoint": "-c", "--target": "-t", "--precision": "-p", "--model": "-m"}


@dataclasses.dataclass(frozen=True)
class Param:
    """One command-line parameter.

    Attributes:
        dest: the name the command body reads it as (an options field name where there is one).
        flags: its spellings, long first (``("--out", "-o")``); ``"--x/--no-x"`` for a two-sided switch.
        type: the parsed type (``int``, ``float``, ``str``, ``Path``, ``bool``).
        default: the value when not given (``...``: required).
        help: the help text.
        invert: a flag that sets the field to False (``--quiet`` for ``progress``).
        aliases: deprecated spellings, accepted as hidden options with a one-line warning.
        multiple: repeatable; the value is a list.
        argument: a positional argument instead of an option.
        show_default: text shown as the default where ``default`` is ``None`` only so that a
            recipe or suite file can supply the value (``None``: click's own).
        hidden: not in ``--help``.
        count: an option counted each time it is given (``-vv``).
        eager: a callback run as soon as the option is parsed (``--version``: print and exit).
        replaced_by: a deprecated spelling kept (hidden) for a different setting than the new one
            names (export's ``--calib-data``, now ``--data``): given, it prints the deprecation.
    """

    dest: str
    flags: Tuple[str, ...] = ()
    type: Any = str
    default: Any = None
    help: str = ""
    invert: bool = False
    aliases: Tuple[str, ...] = ()
    multiple: bool = False
    argument: bool = False
    show_default: Optional[str] = None
    hidden: bool = False
    replaced_by: Optional[str] = None
    count: bool = False
    eager: Optional[Callable[[Any], None]] = None

    def but(self, **changes: Any) -> Param:
        """This parameter with ``changes`` (another default, help text or alias)."""
        return dataclasses.replace(self, **changes)

    @property
    def is_flag(self) -> bool:
        return self.type is bool

    def annotation(self) -> Any:
        if self.count:
            return int
        if self.multiple:
            return List[self.type]  # type: ignore[name-defined]
        return self.type if self.is_flag and self.default is not None else Optional[self.type]

    def typer_default(self) -> Any:
        """The ``typer.Option`` / ``typer.Argument`` object Typer reads this parameter from."""
        default = [] if self.multiple and self.default in (None, ()) else self.default
        if self.argument:  # click takes no default list for a variadic argument (nargs=-1)
            default = None if self.multiple and self.default in (None, ()) else self.default
            return typer.Argument(default, help=self.help, show_default=self.show_default or True)
        if self.is_flag and self.default is None and "/" not in self.flags[0]:
            default = False
        show: Any = self.show_default if self.show_default is not None else not self.is_flag
        hidden = self.hidden or self.replaced_by is not None
        extra: Dict[str, Any] = {"count": True} if self.count else {}
        if self.eager is not None:
            extra.update(is_eager=True, callback=self.eager)
        return typer.Option(default, *self.flags, help=self.help, show_default=show, hidden=hidden, **extra)

    def alias_params(self) -> List[Param]:
        """The hidden parameters of the deprecated spellings."""
        return [
            Param(f"{self.dest}__alias{i}", (alias,), self.type, False if self.is_flag else None, hidden=True)
            for i, alias in enumerate(self.aliases)
        ]


def from_field(cls: type, name: str, *extra_flags: str, **changes: Any) -> Param:
    """The parameter of field ``name`` of the options class ``cls``, from the field's metadata.

    ``extra_flags`` are short spellings (``-o``); ``changes`` override what the field says (e.g.
    ``default=None`` where a recipe or suite file supplies the value). A boolean field whose flag
    says False (``progress`` -> ``--quiet``) becomes that flag, inverted.
    """
    f = cli_field(cls, name)
    if f.type is bool and f.flag and f.flag_false:
        flags: Tuple[str, ...] = (f"{f.flag}/{f.flag_false}",)
        param = Param(name, flags, bool, f.default, f.help, aliases=f.aliases)
    elif f.type is bool and f.flag_false:
        param = Param(name, (f.flag_false,), bool, False, f.help, invert=True, aliases=f.aliases)
    else:
        if not f.flag:
            raise KeyError(f"{cls.__name__}.{name} has no command-line flag")
        multiple = isinstance(f.default, tuple) and not f.sep
        kind = str if f.sep else f.type
        default = f.sep.join(str(v) for v in f.default) if f.sep else f.default
        param = Param(name, (f.flag,), kind, default, f.help, aliases=f.aliases, multiple=multiple)
    short = SHORT.get(param.flags[0])
    param = param.but(flags=param.flags + tuple(s for s in (short, *extra_flags) if s and s not in param.flags))
    return param.but(**changes) if changes else param


def from_fields(cls: type, *names: str) -> List[Param]:
    """The parameters of the fields ``names`` of ``cls`` (:func:`from_field` each)."""
    return [from_field(cls, n) for n in names]


def unset(param: Param) -> Param:
    """``param`` with no default of its own (None: a recipe or suite file may set it; the help shows
    the options' default)."""
    if param.is_flag:
        return param if param.invert else param.but(default=None, show_default=None)
    if param.default in (None, ()):
        return param
    # written into the help text (escaped: Rich reads a bare "[default: x]" as markup and drops it)
    return param.but(default=None, help=f"{param.help} \\[default: {param.default}]".strip())


class Values(dict):
    """What a command was given, by :attr:`Param.dest`; attributes read the same values."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def take(self, *names: str) -> Dict[str, Any]:
        """The values ``names`` as keyword arguments (a library call that names them the same)."""
        return {n: self[n] for n in names}

    def pick(self, cls: type, *, given_only: bool = False) -> Dict[str, Any]:
        """The values that are fields of the options class ``cls`` (``given_only``: not None)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return {k: v for k, v in self.items() if k in names and not (given_only and v is None)}


def deprecated(alias: str, canonical: str) -> None:
    """The one line a deprecated spelling prints (stderr), and the same in the log."""
    typer.echo(f"warning: {alias} is deprecated; use {canonical}", err=True)
    log.debug("deprecated flag %s used for %s", alias, canonical)


def flatten(items: Sequence[Any]) -> List[Param]:
    """Params and lists of params (groups) in order; a later param of the same ``dest`` replaces an earlier."""
    out: Dict[str, Param] = {}
    for item in items:
        for p in flatten(item) if isinstance(item, (list, tuple)) else [item]:
            out[p.dest] = p
    return list(out.values())


def _resolve(params: List[Param], kwargs: Dict[str, Any]) -> Values:
    """The canonical value of every parameter from what click parsed (aliases merged, inversions applied)."""
    values = Values()
    for p in params:
        value = kwargs.pop(p.dest)
        for alias, hidden in zip(p.aliases, p.alias_params()):
            given = kwargs.pop(hidden.dest)
            if given not in (None, False, [], ()):
                deprecated(alias, p.flags[0].split("/")[0])
                value = given
        if p.replaced_by is not None and value not in (None, False, [], ()):
            deprecated(p.flags[0], p.replaced_by)
        if p.invert:
            value = not value
        values[p.dest] = value
    return values


class _Command:
    """The callback Typer registers: its signature is built from the params when Typer first asks
    (``typer.main.get_command``), so a command whose options class cannot be imported here (the
    training side on a device's Python 3.8) costs nothing until it is run, and is then one line
    saying why (:func:`edgefer.cli.main` maps the error), not a broken CLI."""

    def __init__(self, body: Callable[[Values], Any], params: Sequence[Any], settings: Dict[str, Any]) -> None:
        self.body = body
        self.params = params
        self.settings = settings
        self.__doc__ = body.__doc__
        self.__name__ = body.__name__
        self.__qualname__ = body.__qualname__
        self.__module__ = body.__module__
        self.__annotations__: Dict[str, Any] = {}
        self._declared: Optional[List[Param]] = None
        self._failed: Optional[BaseException] = None

    def declared(self) -> List[Param]:
        """The command's params (groups flattened, lazy lists called)."""
        if self._declared is None:
            try:
                self._declared = flatten([p() if callable(p) else p for p in self.params])
            except (ImportError, EdgeferError) as exc:  # e.g. the training side on Python 3.8
                from edgefer.extras import missing_extra

                if isinstance(exc, ImportError) and (
                    not isinstance(exc, ModuleNotFoundError) or missing_extra(exc) is None
                ):
                    raise  # not a missing optional package: a bug, reported as one
                self._failed = exc
                self.settings.update(ignore_unknown_options=True, allow_extra_args=True)
                self._declared = [Param("args", (), str, None, argument=True, multiple=True, hidden=True)]
        return self._declared

    @property
    def __signature__(self) -> inspect.Signature:
        every = [q for p in self.declared() for q in (p, *p.alias_params())]
        kind = inspect.Parameter.KEYWORD_ONLY
        return inspect.Signature(
            [inspect.Parameter(p.dest, kind, default=p.typer_default(), annotation=p.annotation()) for p in every]
        )

    def __call__(self, **kwargs: Any) -> Any:
        declared = self.declared()
        if self._failed is not None:
            raise self._failed
        return self.body(_resolve(declared, dict(kwargs)))


def callback(app: typer.Typer, *params: Any) -> Callable[[Callable[..., Any]], Any]:
    """Register ``body(values)`` as the callback of ``app`` (its global options) with ``params``."""

    def decorate(body: Callable[[Values], Any]) -> Any:
        app.callback()(_Command(body, params, {}))
        return body

    return decorate


def command(app: typer.Typer, name: str, *params: Any, **settings: Any) -> Callable[[Callable[..., Any]], Any]:
    """Register ``body(values)`` as ``edgefer <name>`` with ``params`` in help order: Params, groups
    (lists of Params) and zero-argument functions returning either (built when the CLI is parsed).

    ``body`` receives a :class:`Values`; its docstring is the command's help. ``settings`` go to
    ``app.command`` (e.g. ``hidden=True``).
    """

    def decorate(body: Callable[[Values], Any]) -> Any:
        context: Dict[str, Any] = dict(settings.pop("context_settings", {}) or {})
        app.command(name, context_settings=context, **settings)(_Command(body, params, context))
        return body

    return decorate


def flag_names(params: Sequence[Any]) -> List[str]:
    """Every visible long spelling of ``params`` (for docs and tests)."""
    out = []
    for p in flatten(params):
        for spelling in p.flags:
            out += [s for s in spelling.split("/") if s.startswith("--")]
    return out


__all__ = [
    "Param",
    "Path",
    "Values",
    "callback",
    "command",
    "deprecated",
    "flag_names",
    "flatten",
    "from_field",
    "unset",
]
