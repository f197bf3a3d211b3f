"""A make-like stage runner: skip what is up to date, say how to reproduce what failed.

A :class:`Stage` declares its input and output files and the equivalent ``edgefer`` command. It
is *fresh* when every output exists and the oldest output is newer than the newest input; fresh
stages are skipped, so re-running a pipeline after a crash continues where it stopped, and
deleting one artifact reruns exactly the stages downstream of it (their inputs became newer).
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgefer.errors import EdgeferError


class StageError(EdgeferError):
    """A stage failed; the message names the stage and the command that reproduces it."""

    def __init__(self, stage: str, cause: BaseException, command: str) -> None:
        super().__init__(
            f"stage '{stage}' failed: {type(cause).__name__}: {cause}\n  reproduce with: {command}"
        )
        self.stage = stage
        self.command = command


@dataclass
class Stage:
    """One step of the pipeline.

    ``run`` does the work and writes ``outputs``; ``command`` is the CLI line a user can run to
    reproduce the stage alone. ``inputs`` may include outputs of earlier stages. A stage with
    ``enabled=False`` is reported as skipped with ``skip_reason`` (e.g. tensorrt not installed).
    """

    name: str
    run: Callable[[], Any]
    outputs: Sequence[Path]
    inputs: Sequence[Path] = ()
    command: Sequence[str] = ()
    enabled: bool = True
    skip_reason: str = ""

    def command_line(self) -> str:
        return shlex.join([str(c) for c in self.command]) if self.command else "(no CLI equivalent)"

    def is_fresh(self) -> bool:
        outs = [Path(p) for p in self.outputs]
        if not outs or not all(p.exists() for p in outs):
            return False
        ins = [Path(p) for p in self.inputs if Path(p).exists()]
        if not ins:
            return True
        return min(_mtime(p) for p in outs) >= max(_mtime(p) for p in ins)


def _mtime(path: Path) -> float:
    """Modification time of a file, or the newest file below a directory."""
    if path.is_dir():
        times = [f.stat().st_mtime for f in path.rglob("*") if f.is_file()]
        return max(times) if times else path.stat().st_mtime
    return path.stat().st_mtime


@dataclass
class StageOutcome:
    name: str
    status: str  # "ran", "skipped (up to date)", "skipped: <reason>"
    seconds: float = 0.0
    result: Any = None
    command: str = ""


@dataclass
class StageRunner:
    """Runs stages in order; ``force`` reruns everything; ``on_event`` receives progress lines."""

    force: bool = False
    on_event: Callable[[str], None] = print
    outcomes: list[StageOutcome] = field(default_factory=list)

    def run(self, stage: Stage) -> StageOutcome:
        if not stage.enabled:
            outcome = StageOutcome(stage.name, f"skipped: {stage.skip_reason}", command=stage.command_line())
            self.on_event(f"[skip] {stage.name}: {stage.skip_reason}")
        elif not self.force and stage.is_fresh():
            outcome = StageOutcome(stage.name, "skipped (up to date)", command=stage.command_line())
            self.on_event(f"[up to date] {stage.name}")
        else:
            self.on_event(f"[run] {stage.name}")
            start = time.perf_counter()
            try:
                result = stage.run()
            except KeyboardInterrupt:
                raise
            except Exception as exc:
                raise StageError(stage.name, exc, stage.command_line()) from exc
            missing = [str(p) for p in stage.outputs if not Path(p).exists()]
            if missing:
                raise StageError(stage.name, EdgeferError(f"did not write {', '.join(missing)}"), stage.command_line())
            outcome = StageOutcome(stage.name, "ran", time.perf_counter() - start, result, stage.command_line())
            self.on_event(f"[done] {stage.name} ({outcome.seconds:.1f} s)")
        self.outcomes.append(outcome)
        return outcome
