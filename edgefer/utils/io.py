"""Atomic file writing and hashing (docs/architecture.md invariant 3: nothing half-written).

Checkpoints, engines, reports and reference files are written to a temporary file in the
destination directory and renamed over the target, so a crash or Ctrl-C leaves either the old
file or the new one, never a truncated one.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from edgefer.errors import EdgeferError


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and parents) and check that files can be written there."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgeferError(f"cannot create output directory {p}: {exc.strerror or exc}") from exc
    if not os.access(p, os.W_OK):
        raise EdgeferError(f"output directory {p} is not writable")
    return p


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it over ``target`` on success.

    Use for writers that want a file name (``torch.save``, ``onnx.save``, TensorRT engines).
    On an exception (KeyboardInterrupt included) the temporary file is removed.
    """
    target = Path(target)
    ensure_writable_dir(target.parent)
    # the pid in the name lets a later run remove it if this process is killed (utils.outputs)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.pid{os.getpid()}.", suffix=suffix + ".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600; give the file the permissions a normal open() would (umask applied)
        umask = os.umask(0)
        os.umask(umask)
        with contextlib.suppress(OSError):
            os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_open(target: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file for writing; it replaces ``target`` when the block ends cleanly."""
    with atomic_path(target) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


def write_json(target: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically and return the path."""
    with atomic_open(target, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=2, sort_keys=False, default=str)
        fh.write("\n")
    return Path(target)


def write_text(target: str | os.PathLike, text: str) -> Path:
    with atomic_open(target, "w", encoding="utf-8") as fh:
        fh.write(text)
    return Path(target)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def dir_size(path: str | os.PathLike) -> int:
    """Bytes on disk of a file, or of every file below a directory."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def save_figure(fig: Any, target: str | os.PathLike, **savefig_kwargs: Any) -> Path:
    """Write a matplotlib figure as PNG atomically, then close it (figures are not freed otherwise)."""
    import matplotlib.pyplot as plt

    target = Path(target)
    try:
        with atomic_path(target, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=110, **savefig_kwargs)
    finally:
        plt.close(fig)
    return target


# -- a full disk, a file-size limit, a read-only folder -------------------------------------------

#: errno values that mean "the storage refused the write", not a bug: no space, file too large
#: (RLIMIT_FSIZE or the filesystem's own limit), quota, read-only filesystem, permission.
STORAGE_ERRNOS = frozenset(
    getattr(errno, name) for name in ("ENOSPC", "EFBIG", "EDQUOT", "EROFS", "EACCES", "EPERM") if hasattr(errno, name)
)
#: what libraries that wrap the OS error say instead (OpenVINO's serializer: "basic_ios::clear:
#: iostream error"; torch's zip writer: "PytorchStreamWriter failed writing file")
_STORAGE_TEXT = ("no space left", "file too large", "disk quota", "read-only file system", "iostream error",
                 "failed writing file")  # fmt: skip


class StorageError(EdgeferError):
    """An output could not be written: the disk is full, a file-size limit was reached, or the
    folder is read-only. One line for the user (exit status 2), never an internal error."""


def storage_error(exc: BaseException) -> StorageError | None:
    """The :class:`StorageError` that ``exc`` (or an exception it was raised from) stands for, or
    None when it is something else. Follows ``__cause__`` / ``__context__``: writers wrap the
    ``OSError`` (torch, OpenVINO, ONNX Runtime)."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, StorageError):
            return e
        if isinstance(e, OSError) and e.errno in STORAGE_ERRNOS:
            name = e.filename2 or e.filename  # a copy names its source first, the file it writes second
            where = f" {name}" if name else ""
            if e.errno in (errno.EACCES, errno.EPERM):  # reading or writing: say only what happened
                return StorageError(f"permission denied:{where} ({e.strerror or e})")
            return StorageError(
                f"cannot write{where}: {e.strerror or e} (the disk is full, a file-size limit was reached, or the "
                "filesystem is read-only)"
            )
        if isinstance(e, RuntimeError) and any(t in str(e).lower() for t in _STORAGE_TEXT):
            return StorageError(
                f"cannot write the output: {str(e).strip().splitlines()[0][:200]} (the disk is full, a file-size "
                "limit was reached, or the filesystem is read-only)"
            )
        e = e.__cause__ or e.__context__
    return None


def check_can_create(path: str | os.PathLike) -> None:
    """Raise :class:`StorageError` when no file can be created where ``path`` will be written: the
    nearest existing folder above it refuses a test file (a read-only folder or filesystem;
    ``os.access`` says yes to root even there). Nothing is left behind."""
    folder = Path(os.path.abspath(path)).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {folder} is not writable ({exc.strerror or exc})") from None
