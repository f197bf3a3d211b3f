"""The CLI's exit paths, through the installed console script (not typer's test runner).

A user typing a command wrong must get typer's message and exit 2, never a traceback; an
unexpected exception is one line and exit 1, with the traceback only under ``--debug`` or
``EDGEFER_DEBUG=1``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import edgefer


def _console_script() -> list[str]:
    exe = Path(sys.executable).with_name("edgefer")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("edgefer")
    assert found, "the edgefer console script is not installed (pip install -e .)"
    return [found]


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "EDGEFER_DEBUG"}
    full_env.update(env or {})
    return subprocess.run([*_console_script(), *args], capture_output=True, text=True, timeout=120, env=full_env)


def test_version_prints_the_package_version() -> None:
    proc = _run("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"edgefer {edgefer.__version__}"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["nosuchcommand"], "No such command"),
        (["train", "--epochs", "abc"], "Invalid value for '--epochs'"),
        (["train", "--resume"], "requires an argument"),
        (["benchmark", "--no-such-flag"], "No such option"),
        (["export"], "exactly one of a checkpoint or an ONNX model"),
    ],
)
def test_usage_errors_exit_2_with_typers_message(args: list[str], needle: str) -> None:
    proc = _run(*args)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_user_error_is_one_line_exit_2(tmp_path: Path) -> None:
    proc = _run("data", "info", str(tmp_path / "missing"))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error:")


def _crash(tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    """An unexpected exception: a sitecustomize that makes the data command's library call raise."""
    (tmp_path / "sitecustomize.py").write_text(
        "import edgefer.data.readers as r\n"
        "def _boom(*a, **k):\n"
        "    raise RuntimeError('synthetic crash for the exit-path test')\n"
        "r.dataset_info = _boom\n"
    )
    return ["data", "info", str(tmp_path)], {"PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def test_unexpected_error_is_one_line_exit_1_and_traceback_only_with_debug(tmp_path: Path) -> None:
    args, env = _crash(tmp_path)
    plain = _run(*args, env={**env, "EDGEFER_DEBUG": ""})
    assert plain.returncode == 1, (plain.returncode, plain.stderr)
    assert "Traceback" not in plain.stderr
    assert "synthetic crash" in plain.stderr and "--debug" in plain.stderr
    for extra_args, extra_env in ((["--debug", *args], {}), (args, {"EDGEFER_DEBUG": "1"})):
        debug = _run(*extra_args, env={**env, **extra_env})
        assert debug.returncode == 1, debug.stderr
        assert "Traceback" in debug.stderr and "synthetic crash" in debug.stderr


def test_piped_tables_are_not_wrapped_to_80_columns() -> None:
    """``make demo | tee log`` and CI logs are not terminals: rich wraps tables to 80 columns there
    (the demo's 11-column results table became slivers of 4 characters). Through a pipe, in a
    subprocess, an 11-column table of 12-character cells must keep each row on one line."""
    code = (
        "from rich.table import Table\n"
        "from edgefer.cli.console import table_console\n"
        "t = Table()\n"
        "for i in range(11): t.add_column(f'column_{i:03d}')\n"
        "t.add_row(*[f'value_{i:06d}' for i in range(11)])\n"
        "table_console().print(t)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    row = [line for line in proc.stdout.splitlines() if "value_000000" in line]
    assert len(row) == 1 and "value_000010" in row[0], proc.stdout


def test_help_shows_the_defaults_written_in_square_brackets() -> None:
    """Rich reads ``[default: test]`` in a help string as a markup tag and prints nothing of it; the CLI
    escapes it (``\\[``), so every default written in a help text reaches the reader."""
    import re

    from typer.testing import CliRunner

    from edgefer.cli import app

    res = CliRunner().invoke(app, ["benchmark", "--help"], env={"COLUMNS": "250"})
    assert res.exit_code == 0
    shown = set(re.findall(r"\[default: ([^\]]+)\]", res.output))
    # benchmark's flags have no default of their own (a --suite file may set them): the help text says it
    assert {"test", "1,8", "latency", "10", "cpu"} <= shown, shown
    assert "\\[" not in res.output
