"""The ``edgefer`` command: a thin layer over the library API.

Each area registers its commands from its own module (``edgefer/cli/<area>.py`` with a
``register(app)`` function). Command modules import only typer and the standard library at
module level; the library (and torch) is imported inside the command, so ``edgefer benchmark``
and ``edgefer run`` work on a device without PyTorch.
"""

from __future__ import annotations

import importlib
import sys

import typer

from edgefer.errors import EdgeferError

app = typer.Typer(
    name="edgefer",
    help="Facial-expression recognition from training to the camera.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: CLI areas, in help order; each is edgefer/cli/<name>.py with register(app).
AREAS = ("data", "models", "train", "export", "quantize", "bench", "runtime", "pipeline")


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True),
) -> None:
    if version:
        from edgefer import __version__

        typer.echo(__version__)
        raise typer.Exit()


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


def main() -> None:
    """Console entry point: user errors print a clear message and exit 2, not a traceback."""
    try:
        rc = app(standalone_mode=False)
        if isinstance(rc, int) and rc != 0:  # click returns typer.Exit(code) instead of raising it
            sys.exit(rc)
    except EdgeferError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.secho("interrupted", fg=typer.colors.YELLOW, err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(1)
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
