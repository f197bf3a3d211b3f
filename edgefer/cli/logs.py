"""The CLI's diagnostics through Python's :mod:`logging` (``-v/--verbose`` and ``--log-file``).

edgefer modules log with ``logging.getLogger(__name__)``, under the ``edgefer`` logger. What a
command prints as its result and its progress stays on stdout/stderr as before; logging is for
diagnostics: the command line run, deprecated flags, the traceback behind a one-line error. By
default only warnings reach stderr; ``-v`` adds info, ``-vv`` debug; ``--log-file PATH`` gets
everything at debug level whatever ``-v`` says, so a bug report can attach it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: marks the handlers set here, so a second call (tests run many commands in one process) replaces them
_MARK = "_edgefer_cli"


def level_of(verbose: int) -> int:
    """The stderr level for ``-v`` given ``verbose`` times: warning, info, then debug."""
    return {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)


def setup_logging(verbose: int = 0, log_file: Optional[Path] = None) -> logging.Logger:
    """Configure the ``edgefer`` logger: stderr at :func:`level_of` ``verbose``, and ``log_file`` at debug."""
    logger = logging.getLogger("edgefer")
    for handler in [h for h in logger.handlers if getattr(h, _MARK, False)]:
        logger.removeHandler(handler)
        handler.close()
    console = logging.StreamHandler()
    console.setLevel(level_of(verbose))
    console.setFormatter(logging.Formatter("%(levelname)s: %(name)s: %(message)s"))
    handlers = [console]
    if log_file is not None:
        from edgefer.utils.io import ensure_writable_dir

        ensure_writable_dir(Path(log_file).parent)
        to_file = logging.FileHandler(log_file, encoding="utf-8")
        to_file.setLevel(logging.DEBUG)
        to_file.setFormatter(logging.Formatter(FORMAT))
        handlers.append(to_file)
    for handler in handlers:
        setattr(handler, _MARK, True)
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if log_file is not None else level_of(verbose))
    logger.propagate = False
    return logger
