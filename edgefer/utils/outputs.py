"""The one output policy every edgefer writer follows: nothing lost, nothing half-written, nothing outside.

Every command that writes files (train, export, quantize, evaluate, predict, run, data synth) goes
through these helpers, so the rules below hold everywhere and are tested once
(``tests/test_faults.py``, ``tests/test_outputs.py``):

1. **Never outside the output.** A name that comes from the user or from a file (``--name``, a
   relative image path) is joined with :func:`safe_child`, which refuses absolute paths, ``..``
   and symlinks that lead out of the output folder.
2. **Never replace what is not ours.** Each output folder holds a manifest
   (:data:`MANIFEST_NAME`) listing the files edgefer wrote there, in groups (one group = the files
   of one output, e.g. an IR's ``.xml`` + ``.bin`` + report). :func:`check_outputs` refuses to
   replace a file the manifest does not list, even with ``overwrite``.
3. **Never replace a previous result silently.** A complete earlier output is replaced only with
   ``overwrite=True`` (CLI ``--overwrite``). An *incomplete* one (a file of its group was deleted)
   may be regenerated: what is left of it is unusable alone, so nothing of value is lost.
4. **Nothing half-written.** :func:`staged_output` stages every file in a pid-named folder inside
   the output and moves them into place only when the whole command succeeded; a failure leaves
   the output exactly as it was. Staging folders and temporary files of dead processes
   (``kill -9``) are removed by :func:`clean_stale_staging` at the next start.
5. **Check before work.** Callers call :func:`check_outputs` with the names they will write before
   the expensive part, so a refusal costs nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgefer.errors import EdgeferError
from edgefer.utils.compat import is_within, utc_now_iso, zip_strict

#: The manifest edgefer keeps in every output folder it writes to.
MANIFEST_NAME = ".edgefer-manifest.json"
MANIFEST_SCHEMA = 1
#: Prefix of the staging folders :func:`staged_output` creates (followed by ``<pid>-<random>``).
STAGE_PREFIX = ".edgefer-stage-"
#: Staging folders written by earlier edgefer versions (no pid in the name): always stale at start.
_LEGACY_STAGING = (".edgefer-export-", ".edgefer-fp32-", ".edgefer-quantize-")
_PID_NAME = re.compile(r"(?:^|[.-])pid(\d+)(?:[.-]|$)")


class OutputError(EdgeferError):
    """An output that would escape its folder or replace something it must not."""


# -- paths ----------------------------------------------------------------------------------------


def safe_name(name: str, what: str = "name") -> str:
    """``name`` as a plain file name (no folder part, not ``.``/``..``, no NUL); else :class:`OutputError`."""
    text = str(name)
    if not text or text in (".", "..") or "\x00" in text or "/" in text or "\\" in text:
        raise OutputError(f"{what} {name!r} must be a plain file name (no folders, not '.' or '..')")
    return text


def safe_child(out: str | os.PathLike, name: str | os.PathLike, *, subdirs: bool = False) -> Path:
    """``out / name``, refusing any ``name`` that would land outside ``out``.

    Absolute names, ``..`` components and (after resolving symlinks) paths that leave ``out`` are
    an :class:`OutputError`. With ``subdirs`` a relative path such as ``a/x.jpg`` is allowed;
    without it ``name`` must be a plain file name.
    """
    base = Path(out)
    text = str(name)
    if not subdirs:
        return base / safe_name(text)
    rel = Path(text)
    if not text or "\x00" in text or rel.is_absolute() or rel.drive or ".." in rel.parts or "\\" in text:
        raise OutputError(f"output path {text!r} would be written outside {base}")
    target = base / rel
    root = base.resolve()
    if not is_within(target.resolve(), root):
        raise OutputError(f"output path {text!r} leads outside {base} (through a symbolic link)")
    return target


# -- the manifest ---------------------------------------------------------------------------------


def read_manifest(root: str | os.PathLike) -> dict[str, Any]:
    """The manifest of ``root`` (``{"files": {relpath: {...}}, "groups": {id: [relpaths]}}``).

    A missing manifest is empty; an unreadable one is treated as empty too (so its files count as
    not written by edgefer: the safe side).
    """
    path = Path(root) / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"schema": MANIFEST_SCHEMA, "files": {}, "groups": {}}
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("files"), dict)
        or not isinstance(data.get("groups"), dict)
    ):
        return {"schema": MANIFEST_SCHEMA, "files": {}, "groups": {}}
    return data


def _rel(root: Path, target: Path) -> str:
    try:
        return target.relative_to(root).as_posix()
    except ValueError:
        raise OutputError(f"{target} is not inside {root}") from None


def record_outputs(
    root: str | os.PathLike, names: Sequence[str | os.PathLike], kind: str, *, grouped: bool = True
) -> None:
    """Add ``names`` (paths relative to ``root``) to ``root``'s manifest as one output group
    (``grouped=False``: each file its own group, e.g. the files of a training run, which is
    complete at every epoch)."""
    from edgefer.utils.io import write_json

    root_p = Path(root)
    rels = [Path(n).as_posix() for n in names]
    if not rels:
        return
    manifest = read_manifest(root_p)
    files: dict[str, Any] = manifest["files"]
    groups: dict[str, list[str]] = manifest["groups"]
    for rel in rels:  # a file belongs to one group: leave its old group
        old = files.get(rel, {}).get("group")
        if old in groups:
            groups[old] = [r for r in groups[old] if r != rel]
            if not groups[old]:
                del groups[old]
    when = utc_now_iso()
    for members in [rels] if grouped else [[r] for r in rels]:
        group = members[0]
        k = 2
        while group in groups:
            group, k = f"{members[0]}#{k}", k + 1
        groups[group] = members
        for rel in members:
            files[rel] = {"group": group, "kind": kind, "written": when}
    manifest["schema"] = MANIFEST_SCHEMA
    manifest["about"] = "files edgefer wrote here; edgefer replaces only these (and only with --overwrite)"
    write_json(root_p / MANIFEST_NAME, manifest)


def check_outputs(
    root: str | os.PathLike,
    names: Iterable[str | os.PathLike],
    *,
    overwrite: bool = False,
    flag: str = "--overwrite",
    hint: str | None = None,
) -> None:
    """Refuse (:class:`OutputError`) when writing ``names`` under ``root`` would lose something.

    For every name that already exists: a folder where a file goes, or a file the manifest does
    not list, is always refused; a file of a complete earlier output is refused unless
    ``overwrite``; a file of an incomplete earlier output (part of it deleted) may be replaced.
    ``flag`` is how the caller spells the overwrite switch in the message (``hint`` replaces the
    whole "pass --overwrite" advice).
    """
    root_p = Path(root)
    if root_p.exists() and not root_p.is_dir():
        raise OutputError(f"output folder {root_p} exists and is not a folder")
    manifest: dict[str, Any] | None = None
    for name in names:
        target = root_p / Path(name)
        if not (target.exists() or target.is_symlink()):
            continue
        if target.is_dir() and not target.is_symlink():
            raise OutputError(f"{target} exists and is a folder; a file would be written there")
        if manifest is None:
            manifest = read_manifest(root_p)
        rel = _rel(root_p, target)
        entry = manifest["files"].get(rel)
        if entry is None:
            raise OutputError(
                f"{target} exists and was not written by edgefer (it is not in {root_p / MANIFEST_NAME}); "
                "refusing to replace it: move it away or choose another output"
            )
        if overwrite:
            continue
        group = manifest["groups"].get(entry.get("group"), [rel])
        if all((root_p / g).exists() for g in group):
            advice = hint or f"pass {flag} to replace it, or choose another output"
            raise OutputError(
                f"{target} already holds an earlier edgefer {entry.get('kind', 'output')} output; {advice}"
            )


def remove_outputs(root: str | os.PathLike, names: Iterable[str | os.PathLike]) -> list[Path]:
    """Delete the listed files that the manifest of ``root`` says edgefer wrote; returns what was removed.

    Used by ``overwrite`` runs that must not mix old and new files (a fresh training run must not
    keep the previous run's ``best.pt``). Files not in the manifest are never touched.
    """
    root_p = Path(root)
    files = read_manifest(root_p)["files"]
    removed = []
    for name in names:
        target = root_p / Path(name)
        rel = Path(name).as_posix()
        if rel in files and target.is_file():
            target.unlink()
            removed.append(target)
    return removed


# -- staging --------------------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's) or cannot tell: keep it
    return True


def _stale(name: str) -> bool:
    if name.startswith(_LEGACY_STAGING):
        return True
    pids = _PID_NAME.findall(name)  # the last one: the one edgefer appended
    return bool(pids) and not _pid_alive(int(pids[-1]))


def clean_stale_staging(root: str | os.PathLike) -> list[Path]:
    """Remove staging folders and temporary files in ``root`` left by processes that no longer run.

    Recognised: :data:`STAGE_PREFIX` folders, the older ``.edgefer-export-*`` style folders, the
    ``.<name>.pid<N>.*.tmp`` files of :func:`edgefer.utils.io.atomic_path` and the
    ``.<name>.pid<N>.partial.*`` files of a video being written. Those of live processes (a
    concurrent run) are kept.
    """
    root_p = Path(root)
    if not root_p.is_dir():
        return []
    removed = []
    for entry in root_p.iterdir():
        name = entry.name
        if not name.startswith("."):
            continue
        is_stage = name.startswith((STAGE_PREFIX, *_LEGACY_STAGING)) and entry.is_dir() and not entry.is_symlink()
        is_tmp = (name.endswith(".tmp") or ".partial." in name) and entry.is_file() and ".pid" in name
        if (is_stage or is_tmp) and _stale(name):
            if is_stage:
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    entry.unlink()
            removed.append(entry)
    return removed


def staging_name(tag: str = "") -> str:
    """A staging folder name that records this process id (so a later run can tell it is stale)."""
    return f"{STAGE_PREFIX}{tag + '-' if tag else ''}pid{os.getpid()}-{secrets.token_hex(4)}"


@contextlib.contextmanager
def staging_dir(parent: str | os.PathLike, tag: str = "") -> Iterator[Path]:
    """A scratch folder inside ``parent`` (same file system, so ``os.replace`` out of it is atomic),
    removed afterwards whatever happens; stale ones of dead processes are cleaned first."""
    from edgefer.utils.io import ensure_writable_dir

    parent_p = ensure_writable_dir(parent)
    clean_stale_staging(parent_p)
    d = parent_p / staging_name(tag)
    d.mkdir()
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@dataclass
class StagedOutput:
    """The staging folder of :func:`staged_output` and what will be committed from it."""

    root: Path
    dir: Path
    kind: str
    overwrite: bool
    flag: str
    #: False: each file is its own output (annotated images), so each existing one needs ``overwrite``
    grouped: bool = True
    #: files moved last (the primary artifact: a reader sees it only once its companions are in place)
    last: list[Path] = field(default_factory=list)
    committed: list[Path] = field(default_factory=list)

    def path(self, name: str | os.PathLike, *, subdirs: bool = False) -> Path:
        """Where to write ``name`` now (inside the staging folder; checked like :func:`safe_child`)."""
        target = safe_child(self.dir, name, subdirs=subdirs)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def final(self, staged: Path) -> Path:
        """The place a staged file will have after the commit."""
        return self.root / staged.relative_to(self.dir)

    def commit(self) -> list[Path]:
        staged = sorted((p for p in self.dir.rglob("*") if p.is_file()), key=lambda p: (p in self.last, str(p)))
        rels = [p.relative_to(self.dir).as_posix() for p in staged]
        check_outputs(self.root, rels, overwrite=self.overwrite, flag=self.flag)
        for src, rel in zip_strict(staged, rels):
            dst = self.root / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
            self.committed.append(dst)
        record_outputs(self.root, rels, self.kind, grouped=self.grouped)
        return self.committed


@contextlib.contextmanager
def staged_output(
    out: str | os.PathLike, kind: str, *, overwrite: bool = False, flag: str = "--overwrite", grouped: bool = True
) -> Iterator[StagedOutput]:
    """Stage the files of one output inside ``out`` and move them into place when the block succeeds.

    Write every file to ``stage.path(name)``; when the block ends cleanly the files are checked
    against the policy (:func:`check_outputs`), moved into ``out`` and recorded in its manifest.
    On any exception (Ctrl-C included) nothing in ``out`` changes; a folder ``out`` that this call
    created is removed again.
    """
    from edgefer.utils.io import ensure_writable_dir

    root = Path(out)
    if root.exists() and not root.is_dir():
        raise OutputError(f"output folder {root} exists and is not a folder")
    created = not root.exists()
    ensure_writable_dir(root)
    try:
        with staging_dir(root, kind) as d:
            stage = StagedOutput(root, d, kind, overwrite, flag, grouped)
            yield stage
            stage.commit()
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                root.rmdir()  # only if still empty
        raise
