"""`edgefer data synth` and `edgefer data info`, through the real CLI app."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgefer.cli import app, main

runner = CliRunner()


def test_synth_then_info(tmp_path: Path) -> None:
    out = tmp_path / "s"
    result = runner.invoke(
        app,
        [
            "data",
            "synth",
            "--out",
            str(out),
            "--n-train",
            "21",
            "--n-test",
            "14",
            "--img-size",
            "32",
            "--seed",
            "1",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (out / "basic" / "EmoLabel" / "list_patition_label.txt").is_file()
    table = runner.invoke(app, ["data", "info", str(out)])
    assert table.exit_code == 0, table.output
    for text in ("rafdb", "Happiness", "train", "test", "21", "14", "no val split"):
        assert text in table.output
    as_json = runner.invoke(app, ["data", "info", str(out), "--json", "--validate"])
    report = json.loads(as_json.output)
    assert report["format"] == "rafdb" and report["splits"]["train"]["size"] == 21
    assert sum(report["splits"]["test"]["histogram"].values()) == 14 and report["skipped"] == 0


def test_bad_path_exits_2_with_a_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", ["edgefer", "data", "info", str(tmp_path)])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "no known dataset layout" in err and "list_patition_label.txt" in err
