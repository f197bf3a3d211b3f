"""The output policy (edgefer.utils.outputs): confinement, ownership, overwrite, staging, stale cleanup."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgefer.utils.outputs import (
    MANIFEST_NAME,
    OutputError,
    check_outputs,
    clean_stale_staging,
    remove_outputs,
    safe_child,
    safe_name,
    staged_output,
)


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.lists(st.sampled_from(["..", ".", "a", "b", "", "/", "\\", "x.jpg", "~"]), min_size=1, max_size=5).map(
        "/".join
    )
    | st.text(max_size=12)
)
def test_safe_child_never_leaves_the_folder(tmp_path: Path, name: str) -> None:
    root = tmp_path / "out"
    root.mkdir(exist_ok=True)
    try:
        target = safe_child(root, name, subdirs=True)
    except OutputError:
        return
    assert target.resolve().is_relative_to(root.resolve()), (name, target)


def test_safe_child_refuses_a_symlink_out_and_plain_names_refuse_folders(tmp_path: Path) -> None:
    root = tmp_path / "out"
    root.mkdir()
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(OutputError, match="symbolic link"):
        safe_child(root, "link/x.jpg", subdirs=True)
    for bad in ("../x", "a/b", "..", "", "/abs"):
        with pytest.raises(OutputError, match="plain file name"):
            safe_name(bad)
    assert safe_child(root, "model") == root / "model"


def test_staged_output_commits_refuses_repairs_and_never_touches_foreign_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with staged_output(out, "evaluate") as stage:
        stage.path("a.json").write_text("1")
        stage.path("sub/b.txt", subdirs=True).write_text("2")
    assert _tree(out).keys() == {"a.json", "sub/b.txt", MANIFEST_NAME}
    before = _tree(out)
    # a complete earlier output: refused without overwrite, and nothing changes
    with pytest.raises(OutputError, match="pass --overwrite"), staged_output(out, "evaluate") as stage:
        stage.path("a.json").write_text("new")
    assert _tree(out) == before
    # an incomplete one (b.txt deleted) may be regenerated
    (out / "sub" / "b.txt").unlink()
    with staged_output(out, "evaluate") as stage:
        stage.path("a.json").write_text("3")
        stage.path("sub/b.txt", subdirs=True).write_text("4")
    assert (out / "a.json").read_text() == "3"
    # with overwrite: replaced
    with staged_output(out, "evaluate", overwrite=True) as stage:
        stage.path("a.json").write_text("5")
    assert (out / "a.json").read_text() == "5"
    # a file edgefer did not write is never replaced, overwrite or not
    (out / "mine.txt").write_text("user data")
    for overwrite in (False, True):
        with (
            pytest.raises(OutputError, match="not written by edgefer"),
            staged_output(out, "evaluate", overwrite=overwrite) as stage,
        ):
            stage.path("mine.txt").write_text("x")
    assert (out / "mine.txt").read_text() == "user data"
    assert remove_outputs(out, ["mine.txt", "a.json"]) == [out / "a.json"]
    assert (out / "mine.txt").exists()


def test_a_failure_inside_the_block_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "new"
    with pytest.raises(RuntimeError), staged_output(out, "export") as stage:
        stage.path("model.onnx").write_bytes(b"x" * 100)
        raise RuntimeError("conversion failed")
    assert not out.exists()
    existing = tmp_path / "old"
    existing.mkdir()
    (existing / "keep.txt").write_text("k")
    with pytest.raises(KeyboardInterrupt), staged_output(existing, "export") as stage:
        stage.path("model.onnx").write_bytes(b"x")
        raise KeyboardInterrupt
    assert _tree(existing) == {"keep.txt": b"k"}


def test_check_outputs_refuses_a_folder_where_a_file_goes(tmp_path: Path) -> None:
    (tmp_path / "video.mp4").mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        check_outputs(tmp_path, ["video.mp4"], overwrite=True)
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="not a folder"):
        check_outputs(tmp_path / "file", ["x"])


def test_stale_staging_of_a_killed_process_is_cleaned_and_a_live_ones_kept(tmp_path: Path) -> None:
    # a real process that is gone: its pid is free (or reused by something we then keep: the safe side)
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(proc.stdout)
    stale_dir = tmp_path / f".edgefer-stage-export-pid{dead}-abcd"
    stale_dir.mkdir()
    (stale_dir / "model.onnx").write_bytes(b"x" * 1000)
    stale_tmp = tmp_path / f".model.onnx.pid{dead}.xyz.tmp"
    stale_tmp.write_bytes(b"x")
    legacy = tmp_path / ".edgefer-export-k3j4h5"
    legacy.mkdir()
    live = tmp_path / f".edgefer-stage-pid{os.getpid()}-abcd"
    live.mkdir()
    user = tmp_path / ".my.pid1.notes"
    user.write_text("not ours")
    removed = set(clean_stale_staging(tmp_path))
    if not _alive(dead):
        assert stale_dir in removed and stale_tmp in removed
        assert not stale_dir.exists() and not stale_tmp.exists()
    assert legacy in removed and not legacy.exists()
    assert live.exists() and user.exists()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True
