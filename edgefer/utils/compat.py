"""What the device's Python lacks, in one place.

The device side (runtime, benchmark, bundles, backends, engine builds, doctor) runs on the
interpreter a Jetson ships: Python 3.8 on JetPack 5, 3.10 on JetPack 6 (TensorRT's bindings exist
for no other). Python 3.10 added ``zip(strict=True)`` and 3.11 the ``UTC`` alias of ``datetime``; these stand-ins
behave the same on 3.8 through 3.13, so device-side code says what it means without a version
check. ``make lint`` runs ``vermin`` over the device side so that a 3.9+ construct fails there.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Iterable, Iterator
from pathlib import PurePath
from typing import Any

_SENTINEL = object()


def zip_strict(*iterables: Iterable[Any]) -> Iterator[tuple[Any, ...]]:
    """``zip(*iterables, strict=True)`` on any Python: a ValueError when the lengths differ."""
    iterators = [iter(it) for it in iterables]
    if not iterators:
        return
    while True:
        items = [next(it, _SENTINEL) for it in iterators]
        done = [item is _SENTINEL for item in items]
        if all(done):
            return
        if any(done):
            first = done.index(True)
            raise ValueError(f"zip_strict: argument {first + 1} is shorter than the others")
        yield tuple(items)


def utc_now_iso() -> str:
    """The current UTC time as ISO 8601 to the second (``2026-12-06T02:21:00+00:00``)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def is_within(path: PurePath, root: str | os.PathLike) -> bool:
    """``path.is_relative_to(root)`` (Python 3.9+) on any Python: True when ``path`` is ``root`` or below it."""
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True
