"""Upper bounds of the size-like options, in one place (issue 26: a typo must not take all memory).

A user-sized number that multiplies an allocation is checked against these before anything is
allocated: ``predict --margin 1000`` once asked for a 21.7 GB face crop, and ``debug --samples
100000`` held 9.25 GB of activations. Each bound is far above any useful value and low enough
that the largest allowed value runs on a small device (``tests/test_faults.py`` runs each one
under an address-space limit). Device side: Python 3.8.
"""

from __future__ import annotations

import os

#: ``--margin``: border around a landmark-less face box, as a fraction of its side. 1.0 gives a
#: crop twice the box's side (four times its area); more only adds black border.
MAX_MARGIN = 1.0
#: every batch size a user chooses (benchmark ``--batch``, ``export --batch/--max-batch/--opt-batch``,
#: ``evaluate`` / ``train --batch``, ``deepstream --batch``).
MAX_BATCH = 256
#: ``run --queue-size``: decoded frames held between capture and inference (a 4K frame is 25 MB).
MAX_QUEUE = 64
#: ``debug --samples``: images compared layer by layer (the memory also has its own budget below).
MAX_DEBUG_SAMPLES = 10000
#: the share of the memory available now that ``debug`` may fill with activations
DEBUG_MEMORY_SHARE = 0.5
#: the memory assumed available where the system does not say (no ``/proc/meminfo``)
FALLBACK_AVAILABLE = 4 * 1024**3
#: ``--threads`` (inference threads of a backend): each thread reserves its stack, and more threads
#: than cores only wait on each other
MAX_THREADS = 64
#: ``--streams`` (requests in flight in throughput mode): each holds its own buffers, and on a GPU its
#: own execution context and engine copy; trtexec and benchmark_app users go to a few dozen at most
MAX_STREAMS = 64
#: ``--img-size`` of train / export / quantize / models (and ``data synth --img-size``).
MAX_IMG_SIZE = 1024


def check_at_most(what: str, value: float | None, most: float, error: type[Exception], why: str = "") -> None:
    """Raise ``error`` naming ``what`` when ``value`` is above ``most`` (None passes: not given)."""
    if value is not None and not value <= most:  # `not <=` also refuses NaN
        reason = f" ({why})" if why else ""
        raise error(f"{what} must be at most {most:g}, got {value!r}{reason}")


def memory_budget(share: float = DEBUG_MEMORY_SHARE) -> int:
    """Bytes this process may still allocate for one job: ``share`` of the memory available now
    (``MemAvailable``), and never more than what its own address-space limit (``RLIMIT_AS``, as a
    service or a test sets it) leaves above what it already maps."""
    budget = int((_meminfo_available() or FALLBACK_AVAILABLE) * share)
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            budget = min(budget, max(0, soft - _mapped_bytes()))
    except (ImportError, OSError, ValueError):
        pass
    return budget


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _mapped_bytes() -> int:
    """The address space this process maps now (``/proc/self/statm``; 0 where unknown)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
