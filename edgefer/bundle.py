"""Bundles: everything a device needs to run *and re-verify* a model, in one directory or archive.

A bundle holds the artifact(s) (ONNX, Q/DQ ONNX, OpenVINO IR with its ``.bin``, TensorRT engine
with its sidecar), ``reference.npz`` (the FP32 predictions every artifact is compared with), the
workstation's benchmark report, and ``bundle.json``::

    {"schema": 2, "kind": "edgefer-bundle", "created": "...", "edgefer_version": "...",
     "metadata": ModelMetadata.to_dict() of the FP32 model,
     "artifacts": [{"path": "model_int8.xml", "backend": "openvino", "precision": "int8",
                    "files": [{"path": "model_int8.xml", "sha256": "...", "bytes": 123}, ...]}],
     "reference": {"path": "reference.npz", "sha256": "..."} | null,
     "report": {"path": "report/report.json", "sha256": "...",
                "files": [{"path": "report/report.md", "sha256": "..."}, ...]} | null,
     "gate": {"rule": "max-drop=0.5,...", "passed": true, "failures": []} | null}

``gate`` is the workstation gate's verdict copied from the bundled report (null when the report
ran no gate or no report was bundled). A report whose gate failed is bundled only when asked to
(``allow_failed_gate`` / ``--allow-failed-gate``), and then ``passed`` is false.

``bundle.json.sha256`` beside the manifest holds its sha256 (``sha256sum -c`` format), so the
manifest is checked like every file it lists. Every path in the manifest must stay inside the
bundle (no absolute paths, no ``..``, no symlink out), and an archive member that would land
outside it is refused.

On the device, ``edgefer benchmark BUNDLE --data RAF-DB/`` verifies every sha256 first (a copy cut
short by a full SD card is caught before any number is computed), then benchmarks each artifact
against the bundled reference. :func:`edgefer.metadata.read_metadata` reads ``bundle.json["metadata"]``.
Torch-free.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from edgefer.errors import EdgeferError
from edgefer.formats import DEPLOYABLE_SUFFIXES, UnknownFormatError, format_of
from edgefer.metadata import ModelMetadata, read_metadata, sidecar_path
from edgefer.utils.compat import is_within, utc_now_iso
from edgefer.utils.io import atomic_path, ensure_writable_dir, sha256_file, write_json, write_text

#: 2: the manifest has a ``bundle.json.sha256`` and records the gate's verdict.
BUNDLE_SCHEMA = 2
BUNDLE_KIND = "edgefer-bundle"
MANIFEST = "bundle.json"
MANIFEST_SHA = MANIFEST + ".sha256"
REFERENCE_NAME = "reference.npz"
#: Suffixes of the artifacts a bundle holds (from :data:`edgefer.formats.FORMATS`).
ARTIFACT_SUFFIXES = DEPLOYABLE_SUFFIXES


class BundleError(EdgeferError):
    """A bundle that is incomplete, corrupted in transit, or not a bundle."""


def artifact_files(path: str | os.PathLike) -> list[Path]:
    """The files that make up one artifact: an IR's ``.xml`` + ``.bin``, an ONNX + its external
    data, an engine + its JSON sidecar (:meth:`edgefer.formats.Format.files`). Used for size on
    disk and for bundling. A file of unknown format counts with its sidecar, if any: the size of
    a file a backend is forced onto (``backend=...``) is still measured."""
    p = Path(path)
    try:
        return format_of(p).files(p)
    except UnknownFormatError:
        return [f for f in (p, sidecar_path(p)) if f.is_file()]


def artifact_size(path: str | os.PathLike) -> int:
    """Bytes on disk of an artifact and the files it needs (weights, sidecar)."""
    return sum(f.stat().st_size for f in artifact_files(path))


def is_bundle(path: str | os.PathLike) -> bool:
    p = Path(path)
    return (p.is_dir() and (p / MANIFEST).is_file()) or p.name.endswith((".tar.gz", ".tgz"))


def _is_bundle_dir(path: Path) -> bool:
    """True for a directory holding a ``bundle.json`` of kind edgefer-bundle (checksum or not, so
    a damaged bundle can still be replaced)."""
    try:
        data = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("kind") == BUNDLE_KIND


def _confined(root: Path, rel: Any, what: str) -> Path:
    """``root / rel`` for a manifest path that stays inside ``root``; :class:`BundleError` otherwise.

    Refuses non-strings, absolute paths (POSIX or Windows), drive letters, backslashes, ``..`` and
    a path that resolves (through symlinks) outside the bundle.
    """
    bad = not isinstance(rel, str) or not rel.strip() or "\\" in rel or "\x00" in rel
    if not bad:
        pp = PurePosixPath(rel)
        bad = (
            pp.is_absolute()
            or PureWindowsPath(rel).is_absolute()
            or bool(PureWindowsPath(rel).drive)
            or ".." in pp.parts
        )
    if not bad:
        bad = not is_within((root / rel).resolve(), root.resolve())
    if bad:
        raise BundleError(
            f"{MANIFEST} names {what} {rel!r} outside the bundle: refused (a bundle only holds files "
            "inside its own folder)"
        )
    return root / rel


def _manifest_from_bytes(raw: bytes, sha_text: bytes | None, where: str) -> dict[str, Any]:
    """Parse a manifest after checking it against its ``bundle.json.sha256``."""
    if sha_text is None:
        raise BundleError(
            f"{where} has no {MANIFEST_SHA}: the manifest cannot be checked (a bundle from an older "
            "edgefer, or an incomplete copy); make the bundle again"
        )
    recorded = sha_text.decode("ascii", "replace").split()[:1]
    if not recorded or recorded[0].lower() != hashlib.sha256(raw).hexdigest():
        raise BundleError(f"{where}: {MANIFEST} does not match {MANIFEST_SHA} (corrupted or modified)")
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{where}: {MANIFEST} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("kind") != BUNDLE_KIND or "metadata" not in manifest:
        raise BundleError(f"{where}: {MANIFEST} is not an edgefer bundle manifest")
    try:
        schema = int(manifest.get("schema", 0))
    except (TypeError, ValueError):
        raise BundleError(f"{where}: {MANIFEST} has a bad schema {manifest.get('schema')!r}") from None
    if schema > BUNDLE_SCHEMA:
        raise BundleError(f"bundle schema {schema} is newer than this edgefer ({BUNDLE_SCHEMA})")
    return manifest


def _read_dir_manifest(root: Path) -> dict[str, Any]:
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"{root} is not an edgefer bundle (no {MANIFEST})")
    sha_path = root / MANIFEST_SHA
    return _manifest_from_bytes(
        manifest_path.read_bytes(), sha_path.read_bytes() if sha_path.is_file() else None, str(root)
    )


def _check_member(archive: Path, m: tarfile.TarInfo) -> None:
    """Refuse an archive member that would land outside the extraction folder, or is not a plain
    file or folder (links, devices): a bundle archive written by :func:`make_bundle` has neither."""
    name = m.name
    pp = PurePosixPath(name)
    if (
        not name
        or pp.is_absolute()
        or PureWindowsPath(name).is_absolute()
        or PureWindowsPath(name).drive
        or ".." in pp.parts
        or "\\" in name
    ):
        raise BundleError(f"{archive}: archive member {name!r} escapes the bundle: refused")
    if not (m.isfile() or m.isdir()):
        raise BundleError(f"{archive}: archive member {name!r} is a link or special file: refused")


def _read_archive_manifest(archive: Path) -> dict[str, Any]:
    """The manifest of a bundle archive (checked against its sha256) without extracting the rest."""
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for m in tar:
                parts = PurePosixPath(m.name).parts
                if m.isfile() and len(parts) <= 2 and parts[-1] in (MANIFEST, MANIFEST_SHA):
                    fh = tar.extractfile(m)
                    if fh is not None:
                        found.setdefault(parts[-1], fh.read())
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BundleError(f"{archive} is not a readable bundle archive: {exc}") from exc
    if MANIFEST not in found:
        raise BundleError(f"{archive} holds no {MANIFEST}: not an edgefer bundle")
    return _manifest_from_bytes(found[MANIFEST], found.get(MANIFEST_SHA), str(archive))


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The checked manifest of a bundle directory or ``.tar.gz`` (nothing else is read or verified)."""
    p = Path(path)
    if not p.exists():
        raise BundleError(f"bundle {p} does not exist")
    return _read_archive_manifest(p) if p.is_file() else _read_dir_manifest(p)


def gate_line(manifest: dict[str, Any], name: str = "bundle") -> str:
    """One line saying what the workstation gate decided about the bundled report."""
    gate = manifest.get("gate")
    if gate is None:
        if manifest.get("report") is None:
            return f"{name}: no workstation report was bundled, so there is no gate verdict"
        return f"{name}: the bundled workstation report ran no gate"
    rule = gate.get("rule") or "?"
    if gate.get("passed"):
        return f"{name}: workstation gate passed ({rule})"
    failures = "; ".join(gate.get("failures") or []) or "no failure recorded"
    return f"{name}: workstation gate FAILED ({rule}), bundled with --allow-failed-gate: {failures}"


@dataclass
class Bundle:
    """An opened (and, after :meth:`verify`, checked) bundle directory."""

    root: Path
    manifest: dict[str, Any]
    _tmp: tempfile.TemporaryDirectory | None = field(default=None, repr=False)

    @property
    def metadata(self) -> ModelMetadata:
        return ModelMetadata.from_dict(self.manifest["metadata"])

    @property
    def artifacts(self) -> list[Path]:
        return [_confined(self.root, a["path"], "the artifact") for a in self.manifest.get("artifacts", [])]

    @property
    def reference(self) -> Path | None:
        ref = self.manifest.get("reference")
        return _confined(self.root, ref["path"], "the reference") if ref else None

    @property
    def gate(self) -> dict[str, Any] | None:
        """The workstation gate's verdict: ``{"rule", "passed", "failures"}`` or None."""
        return self.manifest.get("gate")

    def gate_line(self, name: str = "bundle") -> str:
        return gate_line(self.manifest, name)

    def _entries(self) -> list[dict[str, Any]]:
        """Every file entry of the manifest ({"path", "sha256"}), each checked to stay inside the bundle."""
        entries: list[dict[str, Any]] = []
        for a in self.manifest.get("artifacts") or []:
            if not isinstance(a, dict) or not isinstance(a.get("files"), list):
                raise BundleError(f"{MANIFEST}: an artifact entry has no file list")
            files = [f for f in a["files"] if isinstance(f, dict)]
            if a.get("path") not in [f.get("path") for f in files]:
                raise BundleError(f"{MANIFEST}: artifact {a.get('path')!r} is not among its own checksummed files")
            entries += files
        for key in ("reference", "report"):
            if self.manifest.get(key):
                entries.append(self.manifest[key])
        for e in entries:
            _confined(self.root, e.get("path"), "the file")
            if not isinstance(e.get("sha256"), str):
                raise BundleError(f"{MANIFEST}: {e.get('path')!r} has no sha256")
        return entries

    def verify(self) -> list[str]:
        """Check that every listed file exists with its recorded sha256; raise :class:`BundleError`
        naming every bad file. Returns the list of verified relative paths."""
        entries = self._entries()
        problems: list[str] = []
        for entry in entries:
            f = self.root / entry["path"]
            if not f.is_file():
                problems.append(f"{entry['path']}: missing")
            elif sha256_file(f) != entry["sha256"]:
                problems.append(f"{entry['path']}: sha256 differs (corrupted or modified)")
        if problems:
            raise BundleError(f"bundle {self.root} failed verification: " + "; ".join(problems))
        return [e["path"] for e in entries]

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def open_bundle(path: str | os.PathLike) -> Bundle:
    """Open a bundle directory or ``.tar.gz`` (extracted safely to a temporary directory)."""
    p = Path(path)
    if not p.exists():
        raise BundleError(f"bundle {p} does not exist")
    tmp = None
    if p.is_file():
        tmp = tempfile.TemporaryDirectory(prefix="edgefer-bundle-")
        try:
            with tarfile.open(p, "r:gz") as tar:
                members = tar.getmembers()
                for m in members:
                    _check_member(p, m)
                tar.extractall(tmp.name, members=members, filter="data")  # and the stdlib's own checks
            found = list(Path(tmp.name).glob(f"*/{MANIFEST}")) + list(Path(tmp.name).glob(MANIFEST))
            if not found:
                raise BundleError(f"{p} holds no {MANIFEST}: not an edgefer bundle")
        except (tarfile.TarError, OSError, EOFError) as exc:
            tmp.cleanup()
            raise BundleError(f"{p} is not a readable bundle archive: {exc}") from exc
        except BaseException:
            tmp.cleanup()
            raise
        root = found[0].parent
    else:
        root = p
    try:
        bundle = Bundle(root, _read_dir_manifest(root), tmp)
        bundle._entries()  # every path inside the bundle before anything is opened
    except BaseException:
        if tmp is not None:
            tmp.cleanup()
        raise
    return bundle


def _backend_for(path: Path) -> str:
    """The backend recorded for an artifact in ``bundle.json``; :class:`BundleError` for a file that
    is not a deployable artifact (a checkpoint, an unknown suffix), never a guess."""
    try:
        fmt = format_of(path)
    except UnknownFormatError as exc:
        raise BundleError(str(exc)) from None
    if not fmt.deployable:
        raise BundleError(
            f"{path.name} is a {fmt.name} file, not a deployable artifact "
            f"(a bundle holds {', '.join(ARTIFACT_SUFFIXES)}): export it first"
        )
    return fmt.backend


def _check_target(target: Path, shown: Path, overwrite: bool) -> None:
    """Refuse an ``--out`` that is a file, a link, holds the current folder, or (even with
    ``overwrite``) an existing folder that is not an edgefer bundle or holds anything its
    ``bundle.json`` does not list: only what edgefer wrote is ever replaced."""
    if not (target.exists() or target.is_symlink()):
        return
    if target.is_symlink() or not target.is_dir():
        kind = "a symbolic link" if target.is_symlink() else "a file"
        raise BundleError(f"bundle output {shown} exists and is {kind}, not a bundle folder: choose a new --out folder")
    if not overwrite:
        raise BundleError(f"{shown} already exists (pass overwrite=True / --overwrite to replace it)")
    if not _is_bundle_dir(target) and any(target.iterdir()):
        raise BundleError(
            f"refusing to replace {shown}: it is not an edgefer bundle (no {MANIFEST} of kind "
            f"{BUNDLE_KIND}), and --overwrite only ever replaces a bundle; choose a new --out folder"
        )
    if is_within(Path.cwd().resolve(), target.resolve()):
        raise BundleError(f"refusing to replace {shown}: it holds the current folder; choose another --out")
    foreign = _not_written_by_edgefer(target)
    if foreign:
        shown_names = ", ".join(foreign[:5]) + (f" (+{len(foreign) - 5} more)" if len(foreign) > 5 else "")
        raise BundleError(
            f"refusing to replace {shown}: it holds files the old {MANIFEST} does not list, or listed "
            f"files you changed: {shown_names}; --overwrite replaces only what edgefer wrote, so move "
            "them out or choose a new --out folder"
        )


def _listed_files(manifest: dict[str, Any]) -> dict[str, str | None]:
    """Relative path -> sha256 of every file an old manifest says edgefer wrote (artifact files,
    reference, report folder); the manifest and its checksum map to None (checked by each other)."""
    listed: dict[str, str | None] = {MANIFEST: None, MANIFEST_SHA: None}
    entries: list[Any] = []
    for a in manifest.get("artifacts") or []:
        if isinstance(a, dict) and isinstance(a.get("files"), list):
            entries += a["files"]
    for key in ("reference", "report"):
        e = manifest.get(key)
        if isinstance(e, dict):
            entries.append(e)
            if isinstance(e.get("files"), list):
                entries += e["files"]
    for e in entries:
        if isinstance(e, dict) and isinstance(e.get("path"), str) and isinstance(e.get("sha256"), str):
            listed[PurePosixPath(e["path"]).as_posix()] = e["sha256"]
    return listed


def _not_written_by_edgefer(target: Path) -> list[str]:
    """What in the bundle folder ``target`` edgefer did not write: a file (or empty folder, or link)
    its ``bundle.json`` does not list, or a listed file whose sha256 no longer matches. Empty when
    the folder holds only the old bundle (or is empty), so replacing it loses nothing of yours."""
    try:
        manifest = json.loads((target / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = {}
    listed = _listed_files(manifest if isinstance(manifest, dict) else {})
    foreign: list[str] = []
    for dirpath, dirnames, filenames in os.walk(target):
        here = Path(dirpath)
        for name in sorted(dirnames):
            d = here / name
            if d.is_symlink() or not any(d.iterdir()):
                foreign.append(d.relative_to(target).as_posix() + ("" if d.is_symlink() else "/"))
        dirnames[:] = sorted(n for n in dirnames if not (here / n).is_symlink())
        for name in sorted(filenames):
            f = here / name
            rel = f.relative_to(target).as_posix()
            if rel not in listed or f.is_symlink():
                foreign.append(rel)
            elif listed[rel] is not None and sha256_file(f) != listed[rel]:
                foreign.append(f"{rel} (changed since edgefer wrote it)")
    return foreign


def _check_archive_target(target: Path, overwrite: bool) -> None:
    """The same rule for ``OUT.tar.gz``: a new path, or (with ``overwrite``) an existing bundle archive."""
    if not (target.exists() or target.is_symlink()):
        return
    if target.is_symlink() or not target.is_file():
        raise BundleError(f"{target} exists and is not a file: move it away before writing the bundle archive there")
    if not overwrite:
        raise BundleError(f"{target} already exists (pass overwrite=True / --overwrite to replace it)")
    try:
        _read_archive_manifest(target)
    except BundleError:
        raise BundleError(f"refusing to replace {target}: it is not an edgefer bundle archive") from None


def _report_verdict(report: Path, allow_failed_gate: bool) -> tuple[Path, bytes, dict[str, Any] | None]:
    """The report's ``report.json`` (path, bytes) and its gate verdict; refuses a failed gate unless allowed."""
    if report.is_dir():
        main = report / "report.json"
        if not main.is_file():
            main = next(iter(sorted(report.rglob("report.json"))), main)
        if not main.is_file():
            raise BundleError(f"report folder {report} holds no report.json (give edgefer benchmark's --out folder)")
    else:
        main = report
    raw = main.read_bytes()
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BundleError(f"{main} is not a benchmark report.json (not JSON)") from None
    if not isinstance(data, dict) or data.get("kind") != "edgefer-benchmark":
        raise BundleError(f"{main} is not an edgefer benchmark report (kind edgefer-benchmark)")
    gate = data.get("gate")
    if gate is None:
        return main, raw, None
    failures = [str(f) for f in data.get("gate_failures") or []]
    verdict = {
        "rule": ",".join(f"{k}={v:g}" for k, v in gate.items()),
        "passed": data.get("gate_passed") is True and not failures,
        "failures": failures,
    }
    if not verdict["passed"] and not allow_failed_gate:
        first = failures[0] if failures else "no failure recorded"
        more = f" (+{len(failures) - 1} more)" if len(failures) > 1 else ""
        raise BundleError(
            f"the report {main} records a FAILED gate ({verdict['rule']}): {first}{more}; refusing to "
            "bundle it (pass allow_failed_gate=True / --allow-failed-gate to bundle it anyway, "
            "recorded as failed)"
        )
    return main, raw, verdict


def _place(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``; an existing (already checked) bundle there is moved aside
    first and deleted only once the new one is in place, or moved back if the rename fails."""
    if not target.exists():
        os.replace(staging, target)
        return
    trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    old = trash / "old"
    os.replace(target, old)
    try:
        os.replace(staging, target)
    except BaseException:
        os.replace(old, target)
        shutil.rmtree(trash, ignore_errors=True)
        raise
    shutil.rmtree(trash, ignore_errors=True)


def make_bundle(
    artifacts: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    reference: str | os.PathLike | None = None,
    report: str | os.PathLike | None = None,
    archive: bool = False,
    overwrite: bool = False,
    allow_failed_gate: bool = False,
) -> Path:
    """Pack ``artifacts`` (+ ``reference.npz`` + a report directory or file) into the directory ``out``.

    The bundle's ``metadata`` is the FP32 artifact's (the first one when none is FP32); all
    artifacts must describe the same classes and model. The report's gate verdict is recorded in
    ``bundle.json["gate"]``; a report whose gate failed is refused unless ``allow_failed_gate``.
    Built in a staging folder beside ``out`` and renamed into place, so a failed bundle leaves
    nothing behind; ``overwrite`` replaces an existing *bundle* only (never another folder or a
    file), and only when that folder holds nothing but the files its ``bundle.json`` lists, with
    their recorded checksums: a file you added or changed there is named and refused. With
    ``archive=True`` also writes ``out.tar.gz`` (atomically) and returns its path.
    """
    from edgefer import __version__

    shown = Path(out)
    target = Path(os.path.abspath(shown))  # '.' and 'a/..' have a name and a parent to stage beside
    if not artifacts:
        raise BundleError("nothing to bundle: give at least one artifact (.onnx, .xml, .engine)")
    _check_target(target, shown, overwrite)
    archive_target = target.with_name(target.name + ".tar.gz")
    if archive:
        _check_archive_target(archive_target, overwrite)
    metas: list[tuple[Path, ModelMetadata]] = []
    for a in artifacts:
        p = Path(a)
        if not p.is_file():
            raise BundleError(f"{p} is not an artifact file (expected one of {', '.join(ARTIFACT_SUFFIXES)})")
        backend = _backend_for(p)  # an unknown suffix or a checkpoint: refused, naming the known suffixes
        if backend == "openvino" and not p.with_suffix(".bin").is_file():
            raise BundleError(
                f"{p} is an OpenVINO IR without its weights: {p.with_suffix('.bin')} does not exist "
                "(the .xml and .bin are made and shipped together)"
            )
        try:
            metas.append((p, read_metadata(p)))
        except EdgeferError:
            raise
        except Exception as exc:  # a backend's own parser failing on a broken file
            raise BundleError(f"cannot read the edgefer metadata of {p}: {exc}") from exc
    classes = {m.class_names for _, m in metas}
    if len(classes) > 1:
        raise BundleError("the artifacts disagree on the class names; bundle one model at a time")
    if reference is not None and not Path(reference).is_file():
        raise BundleError(f"reference file {reference} does not exist")
    if report is not None and not Path(report).exists():
        raise BundleError(f"report {report} does not exist")
    verdict = None
    if report is not None:
        report_main, report_raw, verdict = _report_verdict(Path(report), allow_failed_gate)
    main_meta = next((m for _, m in metas if m.precision == "fp32"), metas[0][1])
    ensure_writable_dir(target.parent)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.new-", dir=target.parent))
    try:
        entries = []
        names: set[str] = set()
        for p, meta in metas:
            files = []
            for f in artifact_files(p):
                if f.name in names:
                    raise BundleError(f"two artifacts share the file name {f.name}; rename one")
                names.add(f.name)
                shutil.copy2(f, staging / f.name)
                files.append({"path": f.name, "sha256": sha256_file(staging / f.name), "bytes": f.stat().st_size})
            entries.append(
                {
                    "path": p.name,
                    "backend": _backend_for(p),
                    "precision": meta.precision,
                    "model_name": meta.model_name,
                    "input_size": meta.preprocessing.input_size,
                    "files": files,
                }
            )
        manifest: dict[str, Any] = {
            "schema": BUNDLE_SCHEMA,
            "kind": BUNDLE_KIND,
            "created": utc_now_iso(),
            "edgefer_version": __version__,
            "metadata": main_meta.to_dict(),
            "artifacts": entries,
            "reference": None,
            "report": None,
            "gate": verdict,
        }
        if reference is not None:
            shutil.copy2(reference, staging / REFERENCE_NAME)
            manifest["reference"] = {"path": REFERENCE_NAME, "sha256": sha256_file(staging / REFERENCE_NAME)}
        if report is not None:
            rp = Path(report)
            if rp.is_dir():
                shutil.copytree(rp, staging / "report")
                main = staging / "report" / report_main.relative_to(rp)
            else:
                (staging / "report").mkdir()
                shutil.copy2(rp, staging / "report" / rp.name)
                main = staging / "report" / rp.name
            sha = sha256_file(main)
            if sha != hashlib.sha256(report_raw).hexdigest():
                raise BundleError(f"{report_main} changed while it was being bundled; try again")
            manifest["report"] = {
                "path": main.relative_to(staging).as_posix(),
                "sha256": sha,
                # every file of the report folder, so a later --overwrite knows they are edgefer's
                "files": [
                    {"path": f.relative_to(staging).as_posix(), "sha256": sha256_file(f)}
                    for f in sorted((staging / "report").rglob("*"))
                    if f.is_file()
                ],
            }
        write_json(staging / MANIFEST, manifest)
        write_text(staging / MANIFEST_SHA, f"{sha256_file(staging / MANIFEST)}  {MANIFEST}\n")
        _place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if archive:
        with atomic_path(archive_target, suffix=".tar.gz") as tmp, tarfile.open(tmp, "w:gz") as tar:
            tar.add(target, arcname=target.name)
        return shown.with_name(archive_target.name) if shown.name not in ("", ".", "..") else archive_target
    return shown
