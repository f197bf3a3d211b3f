"""The make-like stage runner behind `edgefer pipeline`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgefer.pipeline.stages import Stage, StageError, StageRunner


def _writer(path: Path, calls: list[str], name: str):
    def run() -> None:
        calls.append(name)
        path.write_text(name)

    return run


def _chain(tmp_path: Path, calls: list[str]) -> list[Stage]:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    return [
        Stage("a", _writer(a, calls, "a"), outputs=[a]),
        Stage("b", _writer(b, calls, "b"), outputs=[b], inputs=[a]),
        Stage("c", _writer(c, calls, "c"), outputs=[c], inputs=[b]),
    ]


def _age(path: Path, seconds: float) -> None:
    st = path.stat()
    os.utime(path, (st.st_atime - seconds, st.st_mtime - seconds))


def test_skips_fresh_and_reruns_downstream_of_deleted(tmp_path: Path) -> None:
    calls: list[str] = []
    runner = StageRunner(on_event=lambda _: None)
    for s in _chain(tmp_path, calls):
        runner.run(s)
    assert calls == ["a", "b", "c"]
    for i, name in enumerate("abc"):  # make mtimes strictly ordered
        _age(tmp_path / name, 30 - 10 * i)
    calls.clear()
    for s in _chain(tmp_path, calls):
        runner.run(s)
    assert calls == []
    (tmp_path / "b").unlink()
    for s in _chain(tmp_path, calls):
        runner.run(s)
    assert calls == ["b", "c"]  # a is untouched, c depends on b


def test_force_and_disabled(tmp_path: Path) -> None:
    calls: list[str] = []
    out = tmp_path / "x"
    runner = StageRunner(force=True, on_event=lambda _: None)
    s = Stage("x", _writer(out, calls, "x"), outputs=[out])
    runner.run(s)
    runner.run(s)
    assert calls == ["x", "x"]
    off = Stage("trt", _writer(out, calls, "t"), outputs=[out], enabled=False, skip_reason="tensorrt not installed")
    assert runner.run(off).status == "skipped: tensorrt not installed"
    assert calls == ["x", "x"]


def test_failure_names_stage_and_command(tmp_path: Path) -> None:
    def boom() -> None:
        raise ValueError("calibration set is empty")

    s = Stage("quantize", boom, outputs=[tmp_path / "q.xml"], command=["edgefer", "quantize", "--data", "d d"])
    with pytest.raises(StageError) as info:
        StageRunner(on_event=lambda _: None).run(s)
    msg = str(info.value)
    assert "stage 'quantize' failed" in msg and "calibration set is empty" in msg
    assert "edgefer quantize --data 'd d'" in msg
    lazy = Stage("lazy", lambda: None, outputs=[tmp_path / "never"])
    with pytest.raises(StageError, match="did not write"):
        StageRunner(on_event=lambda _: None).run(lazy)
