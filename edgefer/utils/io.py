"""Atomic file writing and hashing (docs/architecture.md invariant 3: nothing half-written).

Checkpoints, engines, reports and reference files are written to a temporary file in the
destination directory and renamed over the target, so a crash or Ctrl-C leaves either the old
file or the new one, never a truncated one.
"""

from __future__ import annotations

import contextlib
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
