"""A make-like stage runner: skip what is up to date, say how to reproduce what failed.

A :class:`Stage` declares its input and output files, the parameters that determine its result
and the equivalent ``edgefer`` command. Its outputs are *current* when every one exists and the
oldest is newer than the newest input. A runner with a ``state_dir`` also records, after a
stage succeeds, the stage's parameters and a stable hash of them in ``<state_dir>/<stage>.json``;
the stage is then *fresh* only when its outputs are current **and** the recorded hash equals the
hash of its parameters now. Fresh stages are skipped, so re-running a pipeline after a crash
continues where it stopped; deleting one artifact, or changing a parameter of one stage (another
``--calib-size``), reruns that stage, and the files it rewrites make the stages downstream of it
stale in turn.

The record is cleared (``incomplete``) before a stage runs and written only when it succeeded,
so a stage that failed or was interrupted halfway never counts as fresh, whatever its half-written
outputs' times say. A record without a hash (written by an older edgefer, or unreadable) counts as
stale, never as an error.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgefer.errors import EdgeferError
from edgefer.utils.io import write_json

#: Keys the runner owns in a stage's record; a stage may keep its own keys in the same file.
PARAMS_KEY = "params"
HASH_KEY = "params_hash"
INCOMPLETE_KEY = "incomplete"


class StageError(EdgeferError):
    """A stage failed; the message names the stage and the command that reproduces it."""

    def __init__(self, stage: str, cause: BaseException, command: str) -> None:
        super().__init__(f"stage '{stage}' failed: {type(cause).__name__}: {cause}\n  reproduce with: {command}")
        self.stage = stage
        self.command = command


def canonical_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` as plain JSON values (tuples become lists, paths and other objects strings).

    This is what is recorded and compared, so a value read back from a record equals the value
    that was written.
    """
    return json.loads(json.dumps(dict(params), default=str))


def params_hash(params: Mapping[str, Any]) -> str:
    """A stable hash of ``params``: SHA-256 of their canonical JSON with sorted keys.

    Independent of the mapping's order, the process and the Python version (unlike ``hash()``).
    """
    text = json.dumps(canonical_params(params), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


_UNSET = object()


def _show(value: Any, width: int = 40) -> str:
    if value is _UNSET:
        return "(unset)"
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def describe_changes(old: Mapping[str, Any], new: Mapping[str, Any], limit: int = 4) -> str:
    """``"epochs 14 -> 3, lr 0.001 -> 0.01"``: the parameters that differ, in ``new``'s order."""
    keys = list(new) + [k for k in old if k not in new]
    changed = [k for k in keys if old.get(k, _UNSET) != new.get(k, _UNSET)]
    parts = [f"{k} {_show(old.get(k, _UNSET))} -> {_show(new.get(k, _UNSET))}" for k in changed[:limit]]
    if len(changed) > limit:
        parts.append(f"and {len(changed) - limit} more")
    return ", ".join(parts)


@dataclass
class Stage:
    """One step of the pipeline.

    ``run`` does the work and writes ``outputs``; ``command`` is the CLI line a user can run to
    reproduce the stage alone. ``inputs`` may include outputs of earlier stages. ``params`` are
    the options that determine the stage's result (not those that only change how it reports
    progress or how fast it runs); a change of any of them reruns the stage. A stage with
    ``enabled=False`` is reported as skipped with ``skip_reason`` (e.g. tensorrt not installed).
    """

    name: str
    run: Callable[[], Any]
    outputs: Sequence[Path]
    inputs: Sequence[Path] = ()
    command: Sequence[str] = ()
    enabled: bool = True
    skip_reason: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)

    def command_line(self) -> str:
        return shlex.join([str(c) for c in self.command]) if self.command else "(no CLI equivalent)"

    def outputs_stale(self) -> str | None:
        """Why the outputs are not current (``"x.onnx is missing"``, ``"a is newer than b"``), or None."""
        outs = [Path(p) for p in self.outputs]
        if not outs:
            return "it declares no outputs"
        missing = [p for p in outs if not p.exists()]
        if missing:
            return f"{missing[0].name} is missing"
        ins = [Path(p) for p in self.inputs if Path(p).exists()]
        if not ins:
            return None
        oldest = min(outs, key=_mtime)
        newest = max(ins, key=_mtime)
        return None if _mtime(oldest) >= _mtime(newest) else f"{newest.name} is newer than {oldest.name}"

    def is_fresh(self) -> bool:
        """Outputs current (existence and times only; the runner also compares the parameters)."""
        return self.outputs_stale() is None


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
    reason: str = ""  # why a stage that ran was not fresh ("" on its first run or under --overwrite)


@dataclass
class StageRunner:
    """Runs stages in order; ``force`` reruns everything; ``on_event`` receives progress lines.

    With ``state_dir`` the runner records each stage's parameters in ``<state_dir>/<stage>.json``
    and reruns a stage whose parameters changed; without it only files and their times count.
    """

    force: bool = False
    on_event: Callable[[str], None] = print
    state_dir: Path | None = None
    outcomes: list[StageOutcome] = field(default_factory=list)

    def record_path(self, stage: Stage) -> Path | None:
        return None if self.state_dir is None else Path(self.state_dir) / f"{stage.name}.json"

    def stale_reason(self, stage: Stage) -> str | None:
        """Why ``stage`` must run ("" when it never ran), or None when it is fresh."""
        path = self.record_path(stage)
        record = _read_record(path) if path is not None else None
        recorded = record.get(HASH_KEY) if record is not None else None
        if isinstance(recorded, str) and recorded != params_hash(stage.params):
            old = record.get(PARAMS_KEY) if record is not None else None
            diff = describe_changes(old, canonical_params(stage.params)) if isinstance(old, dict) else ""
            return f"parameters changed ({diff})" if diff else "parameters changed"
        outputs = stage.outputs_stale()
        if path is None:
            return outputs
        if record is None and path.exists():
            return "its record is unreadable"
        if record is None:
            return "" if outputs is not None else "no record of its parameters"
        if outputs is not None:
            return outputs
        if record.get(INCOMPLETE_KEY):
            return "its last run did not finish"
        if HASH_KEY not in record:
            return "no record of its parameters (an older edgefer ran it)"
        return None

    def run(self, stage: Stage) -> StageOutcome:
        if not stage.enabled:
            outcome = StageOutcome(stage.name, f"skipped: {stage.skip_reason}", command=stage.command_line())
            self.on_event(f"[skip] {stage.name}: {stage.skip_reason}")
            self.outcomes.append(outcome)
            return outcome
        reason = "" if self.force else self.stale_reason(stage)
        if reason is None:
            outcome = StageOutcome(stage.name, "skipped (up to date)", command=stage.command_line())
            self.on_event(f"[up to date] {stage.name}")
            self.outcomes.append(outcome)
            return outcome
        self.on_event(f"[run] {stage.name}" + (f": {reason}" if reason else ""))
        self._update_record(stage, done=False)
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
        self._update_record(stage, done=True)
        outcome = StageOutcome(stage.name, "ran", time.perf_counter() - start, result, stage.command_line(), reason)
        self.on_event(f"[done] {stage.name} ({outcome.seconds:.1f} s)")
        self.outcomes.append(outcome)
        return outcome

    def _update_record(self, stage: Stage, done: bool) -> None:
        """Before a run, mark an existing record incomplete; after it, store the parameters.

        Keys other than the runner's (a stage's own manifest in the same file) are kept.
        """
        path = self.record_path(stage)
        if path is None:
            return
        record = _read_record(path)
        if not done:
            if record is None:
                return
            record = {k: v for k, v in record.items() if k not in (PARAMS_KEY, HASH_KEY)}
            record[INCOMPLETE_KEY] = True
        else:
            record = {k: v for k, v in (record or {}).items() if k != INCOMPLETE_KEY}
            record[PARAMS_KEY] = canonical_params(stage.params)
            record[HASH_KEY] = params_hash(stage.params)
        write_json(path, record)


def _read_record(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; None when it is missing, unreadable or not an object."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None
