"""Bundles: everything a device needs to run *and re-verify* a model, in one directory or archive.

A bundle holds the artifact(s) (ONNX, Q/DQ ONNX, OpenVINO IR with its ``.bin``, TensorRT engine
with its sidecar), ``reference.npz`` (the FP32 predictions every artifact is compared with), the
workstation's benchmark report, and ``bundle.json``::

    {"schema": 1, "kind": "edgefer-bundle", "created": "...", "edgefer_version": "...",
     "metadata": ModelMetadata.to_dict() of the FP32 model,
     "artifacts": [{"path": "model_int8.xml", "backend": "openvino", "precision": "int8",
                    "files": [{"path": "model_int8.xml", "sha256": "...", "bytes": 123}, ...]}],
     "reference": {"path": "reference.npz", "sha256": "..."} | null,
     "report": {"path": "report/report.json", "sha256": "..."} | null}

On the device, ``edgefer benchmark BUNDLE --data RAF-DB/`` verifies every sha256 first (a copy cut
short by a full SD card is caught before any number is computed), then benchmarks each artifact
against the bundled reference. :func:`edgefer.metadata.read_metadata` reads ``bundle.json["metadata"]``.
Torch-free.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgefer.errors import EdgeferError
from edgefer.metadata import ModelMetadata, read_metadata, sidecar_path
from edgefer.utils.io import atomic_path, ensure_writable_dir, sha256_file, write_json

BUNDLE_SCHEMA = 1
MANIFEST = "bundle.json"
REFERENCE_NAME = "reference.npz"
ARTIFACT_SUFFIXES = (".onnx", ".xml", ".engine", ".plan", ".trt")


class BundleError(EdgeferError):
    """A bundle that is incomplete, corrupted in transit, or not a bundle."""


def artifact_files(path: str | os.PathLike) -> list[Path]:
    """The files that make up one artifact: an IR's ``.xml`` + ``.bin``, an ONNX + its external
    data, an engine + its JSON sidecar. Used for size on disk and for bundling."""
    p = Path(path)
    files = [p]
    suffix = p.suffix.lower()
    if suffix == ".xml":
        files.append(p.with_suffix(".bin"))
    elif suffix == ".onnx":
        files += [p.with_name(p.name + ".data"), p.with_suffix(".data")]
    if suffix != ".pt":
        files.append(sidecar_path(p))
    seen: list[Path] = []
    for f in files:
        if f.is_file() and f not in seen:
            seen.append(f)
    return seen


def artifact_size(path: str | os.PathLike) -> int:
    """Bytes on disk of an artifact and the files it needs (weights, sidecar)."""
    return sum(f.stat().st_size for f in artifact_files(path))


def is_bundle(path: str | os.PathLike) -> bool:
    p = Path(path)
    return (p.is_dir() and (p / MANIFEST).is_file()) or p.name.endswith((".tar.gz", ".tgz"))


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
        return [self.root / a["path"] for a in self.manifest.get("artifacts", [])]

    @property
    def reference(self) -> Path | None:
        ref = self.manifest.get("reference")
        return self.root / ref["path"] if ref else None

    def verify(self) -> list[str]:
        """Check that every listed file exists with its recorded sha256; raise :class:`BundleError`
        naming every bad file. Returns the list of verified relative paths."""
        entries: list[dict[str, Any]] = [f for a in self.manifest.get("artifacts", []) for f in a.get("files", [])]
        for key in ("reference", "report"):
            if self.manifest.get(key):
                entries.append(self.manifest[key])
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
                tar.extractall(tmp.name, filter="data")  # refuses absolute paths, '..', devices
        except (tarfile.TarError, OSError, EOFError) as exc:
            tmp.cleanup()
            raise BundleError(f"{p} is not a readable bundle archive: {exc}") from exc
        found = list(Path(tmp.name).glob(f"*/{MANIFEST}")) + list(Path(tmp.name).glob(MANIFEST))
        if not found:
            tmp.cleanup()
            raise BundleError(f"{p} holds no {MANIFEST}: not an edgefer bundle")
        root = found[0].parent
    else:
        root = p
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"{p} is not an edgefer bundle (no {MANIFEST})")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BundleError(f"{manifest_path} is not valid JSON: {exc}") from exc
    if manifest.get("kind") != "edgefer-bundle" or "metadata" not in manifest:
        raise BundleError(f"{manifest_path} is not an edgefer bundle manifest")
    if int(manifest.get("schema", 0)) > BUNDLE_SCHEMA:
        raise BundleError(f"bundle schema {manifest['schema']} is newer than this edgefer ({BUNDLE_SCHEMA})")
    return Bundle(root, manifest, tmp)


def _backend_for(path: Path) -> str:
    return {".onnx": "onnxruntime", ".xml": "openvino"}.get(path.suffix.lower(), "tensorrt")


def make_bundle(
    artifacts: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    reference: str | os.PathLike | None = None,
    report: str | os.PathLike | None = None,
    archive: bool = False,
    overwrite: bool = False,
) -> Path:
    """Pack ``artifacts`` (+ ``reference.npz`` + a report directory or file) into the directory ``out``.

    The bundle's ``metadata`` is the FP32 artifact's (the first one when none is FP32); all
    artifacts must describe the same classes and model. Built in a temporary directory and renamed
    into place, so a failed bundle leaves nothing behind. With ``archive=True`` also writes
    ``out.tar.gz`` (atomically) and returns its path.
    """
    from edgefer import __version__

    out = Path(out)
    if not artifacts:
        raise BundleError("nothing to bundle: give at least one artifact (.onnx, .xml, .engine)")
    if out.exists() and not overwrite:
        raise BundleError(f"{out} already exists (pass overwrite=True / --overwrite to replace it)")
    metas: list[tuple[Path, ModelMetadata]] = []
    for a in artifacts:
        p = Path(a)
        if not p.is_file() or p.suffix.lower() not in ARTIFACT_SUFFIXES:
            raise BundleError(f"{p} is not an artifact file (expected one of {', '.join(ARTIFACT_SUFFIXES)})")
        metas.append((p, read_metadata(p)))
    classes = {m.class_names for _, m in metas}
    if len(classes) > 1:
        raise BundleError("the artifacts disagree on the class names; bundle one model at a time")
    if reference is not None and not Path(reference).is_file():
        raise BundleError(f"reference file {reference} does not exist")
    if report is not None and not Path(report).exists():
        raise BundleError(f"report {report} does not exist")
    main_meta = next((m for _, m in metas if m.precision == "fp32"), metas[0][1])
    ensure_writable_dir(out.parent)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
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
            entries.append({
                "path": p.name, "backend": _backend_for(p), "precision": meta.precision,
                "model_name": meta.model_name, "input_size": meta.preprocessing.input_size, "files": files,
            })
        manifest: dict[str, Any] = {
            "schema": BUNDLE_SCHEMA,
            "kind": "edgefer-bundle",
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "edgefer_version": __version__,
            "metadata": main_meta.to_dict(),
            "artifacts": entries,
            "reference": None,
            "report": None,
        }
        if reference is not None:
            shutil.copy2(reference, staging / REFERENCE_NAME)
            manifest["reference"] = {"path": REFERENCE_NAME, "sha256": sha256_file(staging / REFERENCE_NAME)}
        if report is not None:
            rp = Path(report)
            if rp.is_dir():
                shutil.copytree(rp, staging / "report")
                main = next((f for f in (staging / "report").rglob("report.json")), None)
            else:
                (staging / "report").mkdir()
                shutil.copy2(rp, staging / "report" / rp.name)
                main = staging / "report" / rp.name
            if main is not None:
                manifest["report"] = {"path": main.relative_to(staging).as_posix(), "sha256": sha256_file(main)}
        write_json(staging / MANIFEST, manifest)
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if archive:
        target = out.with_name(out.name + ".tar.gz")
        with atomic_path(target, suffix=".tar.gz") as tmp, tarfile.open(tmp, "w:gz") as tar:
            tar.add(out, arcname=out.name)
        return target
    return out


@contextlib.contextmanager
def opened_bundle(path: str | os.PathLike):
    """Context manager around :func:`open_bundle` that cleans up an extracted archive."""
    b = open_bundle(path)
    try:
        yield b
    finally:
        b.close()
