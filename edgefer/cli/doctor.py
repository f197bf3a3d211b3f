"""``edgefer doctor``: the first command on a new device -- what runs here and what is missing."""

from __future__ import annotations

import json

import typer

from edgefer.cli import groups
from edgefer.cli.params import Values, command


def register(app: typer.Typer) -> None:
    @command(app, "doctor", groups.json_output())
    def doctor(v: Values) -> None:
        """What this machine can run: Python, backends and their devices, OpenCV, CUDA, Jetson facts.

        Exit status 0 when at least one backend can run artifacts here, 1 when none can.
        """
        from edgefer.doctor import diagnose, render_text

        found = diagnose()
        typer.echo(json.dumps(found.to_dict(), indent=2) if v.as_json else render_text(found))
        if not found.usable:
            raise typer.Exit(1)
