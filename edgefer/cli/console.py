"""The console the CLI prints its tables to.

Rich lays tables out for an 80-column terminal when stdout is not a terminal (``make demo | tee
log``, CI logs), which wraps an 11-column results table into unreadable slivers. Piped output has
no width limit, so it gets 200 columns (or ``$COLUMNS``); a real terminal keeps its own width.
"""

from __future__ import annotations

import os
import sys

from rich.console import Console

PIPED_WIDTH = 200


def table_console(stderr: bool = False) -> Console:
    """A stdout (``stderr``: stderr) console that does not wrap tables when the output is piped or logged."""
    if (sys.stderr if stderr else sys.stdout).isatty():
        return Console(stderr=stderr)
    try:
        width = int(os.environ.get("COLUMNS", PIPED_WIDTH))
    except ValueError:
        width = PIPED_WIDTH
    return Console(width=max(width, 80), stderr=stderr)
