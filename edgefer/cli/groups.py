"""The flags several commands share, as groups a command lists (one spelling, one help text each).

A group is a function returning its :class:`~edgefer.cli.params.Param` list. Given an options class,
the group takes each flag from that class's field (its default and help, :func:`from_field`), so
``export --out`` defaults to ``ExportOptions.out_dir``'s default; without one (commands that have no
options class, e.g. ``debug`` or ``predict``) it uses the group's own definition. The vocabulary
these spell is in ``docs/cli.md`` (a test checks every command's ``--help`` against it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional, Sequence

from edgefer.cli.params import Param, from_field, unset


def _pick(standard: Sequence[Param], cls: Optional[type], only: Optional[Sequence[str]], **changes: Any) -> List[Param]:
    """``standard``'s params (those whose dest is in ``only``), each from ``cls``'s field of that
    name where it has one; ``changes`` maps a dest to a dict of changes for that param."""
    out = []
    for p in standard:
        if only is not None and p.dest not in only:
            continue
        if cls is not None and p.dest in getattr(cls, "__dataclass_fields__", {}):
            field = from_field(cls, p.dest)
            p = field.but(aliases=tuple(dict.fromkeys(field.aliases + p.aliases)))
        out.append(p.but(**changes[p.dest]) if p.dest in changes else p)
    return out


def json_output() -> List[Param]:
    """``--json``: the command's result as one JSON document on stdout (nothing else there)."""
    return [Param("as_json", ("--json",), bool, False, "Print the result as JSON.")]


def progress(cls: Optional[type] = None) -> List[Param]:
    """``--quiet/-q``: no progress bars or status lines (``--no-progress`` is its old spelling)."""
    std = [Param("progress", ("--quiet", "-q"), bool, False, "No progress bars or status lines.", invert=True)]
    return [p.but(aliases=("--no-progress",)) for p in _pick(std, cls, None)]


def output(cls: Optional[type] = None, *, dest: str = "out", only_out: bool = False, **changes: Any) -> List[Param]:
    """``--out/-o`` (the folder or file the command writes) and ``--overwrite`` (replace an earlier
    output of edgefer's; never a file edgefer did not write); ``only_out``: a command that replaces
    nothing (its outputs are always rewritten whole) has no ``--overwrite``."""
    std = [
        Param(dest, ("--out", "-o"), Path, None, "Output directory."),
        Param("overwrite", ("--overwrite",), bool, False, "Replace earlier outputs of the same name."),
    ]
    return _pick(std, cls, [dest] if only_out else None, **changes)


def data(cls: Optional[type] = None, only: Optional[Sequence[str]] = None, **changes: Any) -> List[Param]:
    """``--data`` (dataset root), ``--split``, ``--allow-missing-classes``, ``--on-error``."""
    std = [
        Param("data", ("--data",), Path, None, "Dataset root (RAF-DB, FER2013 csv, image folders, synthetic)."),
        Param("split", ("--split",), str, "test", "Split name the images come from."),
        Param(
            "allow_missing_classes",
            ("--allow-missing-classes",),
            bool,
            False,
            "Accept a split that lacks some class.",
        ),
        Param("on_error", ("--on-error",), str, "skip", "Unreadable images: skip (counted) or raise."),
    ]
    return _pick(std, cls, only, **changes)


def calibration(cls: Optional[type] = None, only: Optional[Sequence[str]] = None, **changes: Any) -> List[Param]:
    """``--calib-size`` and ``--calib-split``: which images INT8 calibration sees."""
    std = [
        Param("calib_size", ("--calib-size",), int, 300, "Calibration images (deterministic subset)."),
        Param("calib_split", ("--calib-split",), str, "train", "Split the calibration images come from."),
    ]
    return _pick(std, cls, only, **changes)


def seed(cls: Optional[type] = None, **changes: Any) -> List[Param]:
    """``--seed``: every random draw of the command (same seed, same result)."""
    return _pick(
        [Param("seed", ("--seed",), int, 0, "Random seed (the same seed gives the same result).")], cls, None, **changes
    )


def shape(cls: Optional[type] = None, only: Optional[Sequence[str]] = None, **changes: Any) -> List[Param]:
    """``--batch`` (one batch size) and ``--img-size`` (square input side)."""
    std = [
        Param("batch", ("--batch",), int, None, "Batch size.", aliases=("--batch-size",)),
        Param("img_size", ("--img-size",), int, None, "Square input size in pixels."),
    ]
    return _pick(std, cls, only, **changes)


def batches(cls: Optional[type] = None, **changes: Any) -> List[Param]:
    """``--batch 1,8``: the batch sizes measured (a comma list)."""
    std = [Param("batches", ("--batch",), str, "1,8", "Batch sizes measured, comma-separated.")]
    return _pick(std, cls, None, **changes)


def device(cls: Optional[type] = None, only: Optional[Sequence[str]] = None, **changes: Any) -> List[Param]:
    """``--device`` and ``--threads``: where inference runs and on how many CPU threads."""
    std = [
        Param("device", ("--device",), str, "cpu", "Inference device (cpu, gpu, cuda:N, npu, tensorrt)."),
        Param("threads", ("--threads",), int, None, "Inference threads (the backend's default if unset)."),
    ]
    return _pick(std, cls, only, **changes)


def timing(cls: Optional[type] = None, **changes: Any) -> List[Param]:
    """``--warmup``, ``--iters``, ``--seconds``, ``--mode``, ``--streams``: how each latency is measured."""
    std = [
        Param("warmup", ("--warmup",), int, 10, "Untimed warm-up calls."),
        Param("iters", ("--iters",), int, None, "Timed calls per measurement.", show_default="50"),
        Param("seconds", ("--seconds",), float, None, "Time budget per measurement instead of --iters."),
        Param(
            "mode", ("--mode",), str, "latency", "latency (one request at a time) or throughput (requests in flight)."
        ),
        Param("streams", ("--streams",), int, None, "Throughput mode: requests in flight (default: the engine's)."),
    ]
    return _pick(std, cls, None, **changes)


def recipe_overridable(params: Sequence[Param]) -> List[Param]:
    """``params`` without defaults of their own, for a command whose recipe/suite file supplies them."""
    return [unset(p) for p in params]
