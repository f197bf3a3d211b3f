"""The make-like stage runner behind `edgefer pipeline`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edgefer.pipeline.stages import Stage, StageError, StageRunner, describe_changes, params_hash


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


# -- parameters -----------------------------------------------------------------------------


def _param_chain(tmp_path: Path, calls: list[str], cfg: dict[str, Any]) -> list[Stage]:
    """a <- size, b <- scale (reads a), c (reads b); ``verbose`` is an option no stage depends on."""
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"

    def run_a() -> None:
        calls.append("a")
        a.write_text(str(cfg["size"]))

    def run_b() -> None:
        calls.append("b")
        b.write_text(str(int(a.read_text()) * cfg["scale"]))

    def run_c() -> None:
        calls.append("c")
        c.write_text(b.read_text())

    return [
        Stage("a", run_a, outputs=[a], params={"size": cfg["size"]}),
        Stage("b", run_b, outputs=[b], inputs=[a], params={"scale": cfg["scale"]}),
        Stage("c", run_c, outputs=[c], inputs=[b]),
    ]


def _run_all(tmp_path: Path, cfg: dict[str, Any], events: list[str] | None = None) -> list[str]:
    """Run the chain once with a fresh runner (a new pipeline invocation); the stages that ran."""
    calls: list[str] = []
    runner = StageRunner(
        on_event=(events.append if events is not None else lambda _: None), state_dir=tmp_path / "stages"
    )
    for s in _param_chain(tmp_path, calls, cfg):
        runner.run(s)
    for i, name in enumerate("abc"):  # later runs rewrite files with a strictly newer time
        _age(tmp_path / name, 30 - 10 * i)
    return calls


def test_changed_parameters_rerun_the_stage_and_downstream(tmp_path: Path) -> None:
    cfg = {"size": 3, "scale": 2, "verbose": True}
    assert _run_all(tmp_path, cfg) == ["a", "b", "c"]
    record = json.loads((tmp_path / "stages" / "a.json").read_text())
    assert record["params"] == {"size": 3} and record["params_hash"] == params_hash({"size": 3})

    assert _run_all(tmp_path, cfg) == []  # same parameters: everything is up to date
    assert _run_all(tmp_path, {**cfg, "verbose": False}) == []  # an option no stage depends on

    events: list[str] = []
    assert _run_all(tmp_path, {**cfg, "size": 4}, events) == ["a", "b", "c"]
    assert "[run] a: parameters changed (size 3 -> 4)" in events, events
    assert (tmp_path / "c").read_text() == "8"
    assert _run_all(tmp_path, {**cfg, "size": 4}) == []

    events.clear()
    assert _run_all(tmp_path, {**cfg, "size": 4, "scale": 5}, events) == ["b", "c"]  # a is upstream of b
    assert (tmp_path / "c").read_text() == "20"
    assert any(e.startswith("[up to date] a") for e in events)
    assert "[run] b: parameters changed (scale 2 -> 5)" in events


def test_params_hash_is_stable_and_order_free() -> None:
    p = {"epochs": 3, "batches": (1, 8), "data": Path("d"), "gate": {"max-drop": 1.0}}
    h = params_hash(p)
    assert h == params_hash(dict(reversed(list(p.items()))))
    assert h == params_hash({"epochs": 3, "batches": [1, 8], "data": "d", "gate": {"max-drop": 1.0}})
    assert h != params_hash({**p, "epochs": 4})
    assert params_hash({"max_drop": None}) != params_hash({})
    # not Python's randomised hash(): another process with another hash seed agrees
    code = (
        "from pathlib import Path; from edgefer.pipeline.stages import params_hash; "
        "print(params_hash({'gate': {'max-drop': 1.0}, 'data': Path('d'), 'batches': (1, 8), 'epochs': 3}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "123"},
    ).stdout.strip()
    assert out == h


def test_describe_changes_names_each_difference() -> None:
    assert describe_changes({"epochs": 14, "lr": 0.001}, {"epochs": 3, "lr": 0.001}) == "epochs 14 -> 3"
    assert describe_changes({"a": 1}, {"b": "x"}) == "b (unset) -> x, a 1 -> (unset)"
    many = describe_changes({k: 0 for k in "abcdef"}, {k: 1 for k in "abcdef"})
    assert many.endswith("and 2 more") and many.count("->") == 4


def test_old_or_unreadable_record_is_stale_not_an_error(tmp_path: Path) -> None:
    out = tmp_path / "x"
    out.write_text("old")
    state = tmp_path / "stages"
    state.mkdir()
    calls: list[str] = []
    runner = StageRunner(on_event=lambda _: None, state_dir=state)
    # a manifest written before parameters were recorded: the stage's own keys, no hash
    (state / "x.json").write_text(json.dumps({"artifact": str(out), "files": [str(out)]}))
    outcome = runner.run(Stage("x", _writer(out, calls, "x"), outputs=[out], params={"n": 1}))
    assert calls == ["x"] and "no record of its parameters" in outcome.reason
    record = json.loads((state / "x.json").read_text())
    assert record["artifact"] == str(out) and record["params"] == {"n": 1}  # the stage's keys are kept
    assert runner.run(Stage("x", _writer(out, calls, "x"), outputs=[out], params={"n": 1})).status.startswith("skipped")
    for garbage in ("{not json", "[1, 2]"):
        (state / "x.json").write_text(garbage)
        assert runner.run(Stage("x", _writer(out, calls, "x"), outputs=[out], params={"n": 1})).status == "ran"
    assert calls == ["x", "x", "x"]


def test_a_failed_run_leaves_the_stage_stale(tmp_path: Path) -> None:
    out = tmp_path / "x"
    calls: list[str] = []
    state = tmp_path / "stages"
    StageRunner(on_event=lambda _: None, state_dir=state).run(
        Stage("x", _writer(out, calls, "x"), outputs=[out], params={"n": 1})
    )

    def half_then_crash() -> None:
        out.write_text("half")  # the output exists and is newer than every input, yet is not valid
        raise RuntimeError("killed")

    with pytest.raises(StageError):  # e.g. a --force rerun that crashed halfway
        StageRunner(force=True, on_event=lambda _: None, state_dir=state).run(
            Stage("x", half_then_crash, outputs=[out], params={"n": 1})
        )
    assert json.loads((state / "x.json").read_text()).get("incomplete") is True
    outcome = StageRunner(on_event=lambda _: None, state_dir=state).run(
        Stage("x", _writer(out, calls, "x"), outputs=[out], params={"n": 1})
    )
    assert outcome.status == "ran" and outcome.reason == "its last run did not finish"
    assert out.read_text() == "x" and "incomplete" not in json.loads((state / "x.json").read_text())


def test_without_a_state_dir_only_files_count(tmp_path: Path) -> None:
    out = tmp_path / "x"
    calls: list[str] = []
    runner = StageRunner(on_event=lambda _: None)
    runner.run(Stage("x", _writer(out, calls, "x"), outputs=[out], params={"n": 1}))
    runner.run(Stage("x", _writer(out, calls, "x"), outputs=[out], params={"n": 2}))
    assert calls == ["x"] and not list(tmp_path.glob("*.json"))
