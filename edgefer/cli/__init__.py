"""The ``edgefer`` command: a thin layer over the library API.

Each area registers its commands from its own module (``edgefer/cli/<area>.py`` with a
``register(app)`` function). Command modules import only typer and the standard library at
module level; the library (and torch) is imported inside the command, so the whole CLI starts
on a device without PyTorch (``pip install edgefer[runtime]``) and ``edgefer benchmark`` /
``predict`` / ``run`` work there. A command that needs torch (train, export, quantize, ...)
fails on its first import, and :func:`main` turns that into one line naming the extra.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import List, NoReturn, Optional

import typer

from edgefer.cli.logs import setup_logging
from edgefer.cli.params import Param, Values, callback
from edgefer.errors import EdgeferError

log = logging.getLogger(__name__)

app = typer.Typer(
    name="edgefer",
    help="Facial-expression recognition from training to the camera.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    pretty_exceptions_enable=False,
)


def _usage_error_type() -> type:
    """The exception typer raises for a usage error: ``typer.TyperException`` where typer vendors
    click (recent typer), ``click.ClickException`` with the typer that Python 3.8 gets (0.20,
    which depends on click and has no TyperException)."""
    found = getattr(typer, "TyperException", None)
    if found is not None:
        return found
    import click

    return click.ClickException


#: CLI areas, in help order; each is edgefer/cli/<name>.py with register(app).
AREAS = ("doctor", "data", "models", "train", "export", "importer", "quantize", "debug", "bench", "runtime", "pipeline")


def _print_version(value: bool) -> None:
    """Eager ``--version`` handler: prints and exits before any command is parsed."""
    if value:
        from edgefer import __version__

        typer.echo(f"edgefer {__version__}")
        raise typer.Exit()


#: the options every command shares, given before the command (``edgefer -v --log-file x.log train ...``)
GLOBAL = [
    Param("version", ("--version",), bool, False, "Print the version and exit.", eager=_print_version),
    Param(
        "debug", ("--debug",), bool, False, "Show the full traceback of an unexpected error (or set EDGEFER_DEBUG=1)."
    ),
    Param("verbose", ("--verbose", "-v"), int, 0, "More diagnostics on stderr (-v info, -vv debug).", count=True),
    Param("log_file", ("--log-file",), Path, None, "Also write every diagnostic (debug level) to this file."),
]


@callback(app, GLOBAL)
def _root(v: Values) -> None:
    if v.debug:
        os.environ["EDGEFER_DEBUG"] = "1"
    setup_logging(v.verbose, v.log_file)
    log.debug("edgefer %s on Python %s", _version(), sys.version.split()[0])


def _version() -> str:
    from edgefer import __version__

    return __version__


def _register_all() -> None:
    for area in AREAS:
        name = f"edgefer.cli.{area}"
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(app)


_register_all()


def _debug_enabled(argv: List[str]) -> bool:
    return "--debug" in argv or os.environ.get("EDGEFER_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


def main(argv: Optional[List[str]] = None) -> None:
    """Console entry point with three exit paths a script can rely on.

    * 0: success (or ``--help`` / ``--version``);
    * 2: the user's mistake: a usage error (typer's own message) or an :class:`EdgeferError`
      (bad data, a missing file, a failed check), printed as one line, never a traceback; a
      command whose optional package is missing (torch on a device) names the extra to install
      (:func:`edgefer.extras.missing_extra`);
    * 1: an unexpected exception, printed as one line naming its type; the traceback only with
      ``--debug`` or ``EDGEFER_DEBUG=1`` (a bug report then has what it needs).

    Command-specific codes (the benchmark gate's 3, ``run``'s 4 for a lost live source, Ctrl-C's
    130) pass through unchanged. A full disk or a read-only output folder is a user error (2), not
    a bug (:func:`edgefer.utils.io.storage_error`).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        rc = app(args=args, prog_name="edgefer", standalone_mode=False)
        if isinstance(rc, int) and rc != 0:  # click returns typer.Exit(code) instead of raising it
            sys.exit(rc)
    except EdgeferError as exc:
        _user_error(exc, args)
    except ModuleNotFoundError as exc:  # an optional package this command needs is not installed
        from edgefer.extras import missing_extra

        missing = missing_extra(exc, feature=_command_of(args))
        if missing is None:  # not a module an extra provides: a bug, reported as one
            _internal_error(exc, args)
        _user_error(missing, args)
    except KeyboardInterrupt:
        typer.secho("interrupted", fg=typer.colors.YELLOW, err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.secho("aborted", fg=typer.colors.YELLOW, err=True)
        sys.exit(1)
    except _usage_error_type() as exc:  # usage errors (recent typer vendors click: no ``import click``)
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            typer.echo(f"Error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except Exception as exc:
        from edgefer.utils.io import storage_error

        full = storage_error(exc)  # a full disk or a read-only folder is not a bug
        if full is not None:
            _user_error(full, args)
        _internal_error(exc, args)


def _command_of(args: List[str]) -> str:
    """``"edgefer <command>"`` for the command in ``args`` (the first word that is not an option)."""
    word = next((a for a in args if not a.startswith("-")), "")
    return f"`edgefer {word}`" if word else ""


def _user_error(exc: EdgeferError, args: Optional[List[str]] = None) -> NoReturn:
    """The user's mistake or a missing extra: one line and exit status 2 (the traceback in the log, at debug)."""
    log.debug("user error in edgefer %s: %s", " ".join(args or []), exc, exc_info=exc)
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    sys.exit(2)


def _internal_error(exc: BaseException, args: List[str]) -> NoReturn:
    """A bug: one line naming the exception, exit status 1; the traceback with --debug (and in the log)."""
    log.debug("internal error in edgefer %s", " ".join(args), exc_info=exc)
    if _debug_enabled(args):
        traceback.print_exc()
    else:
        typer.secho(
            f"internal error: {type(exc).__name__}: {exc} (run again with --debug for the traceback)",
            fg=typer.colors.RED,
            err=True,
        )
    sys.exit(1)
