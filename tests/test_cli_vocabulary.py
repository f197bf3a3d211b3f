"""The vocabulary of ``docs/cli.md`` is the CLI's: checked against the real commands.

The table is parsed; each spelling must be a visible flag of every command its row lists, no
command may show a table spelling its rows leave out (so the table is complete), and each
deprecated spelling must be a hidden flag of the commands it names that maps onto the new one and
prints one deprecation line. A static check keeps Typer options in ``edgefer/cli/params.py``: a
flag declared anywhere else would be a second declaration the options and the docs do not know.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from edgefer.cli import app
from edgefer.cli.params import _resolve

ROOT = Path(__file__).resolve().parents[1]
FLAG = re.compile(r"`(--[a-z0-9-]+)`")
ALIAS = re.compile(r"`(--[a-z0-9-]+)` \(([^)]*)\)")


def _table() -> list[dict[str, Any]]:
    """The rows of the vocabulary table: spellings, commands and {alias: commands}."""
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    section = text.split("## Vocabulary", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or cells[0] in ("concept", "---"):
            continue
        rows.append(
            {
                "spellings": FLAG.findall(cells[1]),
                "commands": [c.strip() for c in cells[2].split(",")],
                "aliases": {a: [c.strip() for c in cmds.split(",")] for a, cmds in ALIAS.findall(cells[3])},
            }
        )
    assert len(rows) >= 25, "the vocabulary table was not found in docs/cli.md"
    return rows


def _commands() -> dict[str, Any]:
    """Every click command by the words typed after ``edgefer`` (``"edgefer"``: the global options)."""
    root = typer.main.get_command(app)
    found = {"edgefer": root}

    def walk(group: Any, prefix: str) -> None:
        for name, cmd in group.commands.items():
            full = f"{prefix} {name}".strip()
            if hasattr(cmd, "commands"):
                walk(cmd, full)
            else:
                found[full] = cmd

    walk(root, "")
    return found


def _flags(cmd: Any, hidden: bool) -> set[str]:
    return {
        o
        for p in cmd.params
        if bool(getattr(p, "hidden", False)) == hidden
        for o in (*p.opts, *p.secondary_opts)
        if o.startswith("--")
    }


ROWS = _table()
COMMANDS = _commands()


def test_every_listed_spelling_is_a_visible_flag_of_its_commands() -> None:
    missing = [
        f"{cmd}: {flag}"
        for row in ROWS
        for cmd in row["commands"]
        for flag in row["spellings"]
        if cmd not in COMMANDS or flag not in _flags(COMMANDS[cmd], hidden=False)
    ]
    assert not missing, "docs/cli.md lists flags the commands lack:\n  " + "\n  ".join(missing)


def test_no_command_shows_a_table_spelling_its_row_leaves_out() -> None:
    where: dict[str, set[str]] = {}
    for row in ROWS:
        for flag in row["spellings"]:
            where.setdefault(flag, set()).update(row["commands"])
    extra = [
        f"{name}: {flag}"
        for name, cmd in COMMANDS.items()
        for flag in _flags(cmd, hidden=False)
        if flag in where and name not in where[flag]
    ]
    assert not extra, "commands with a table flag docs/cli.md does not list for them:\n  " + "\n  ".join(extra)


def test_deprecated_spellings_are_hidden_where_listed() -> None:
    wrong = []
    for row in ROWS:
        for alias, cmds in row["aliases"].items():
            for name in cmds:
                cmd = COMMANDS[name]
                if alias not in _flags(cmd, hidden=True) or alias in _flags(cmd, hidden=False):
                    wrong.append(f"{name}: {alias}")
    assert not wrong, "deprecated spellings must be hidden flags:\n  " + "\n  ".join(wrong)


def _aliases() -> list[tuple[str, str, str]]:
    return [
        (name, alias, row["spellings"][0]) for row in ROWS for alias, cmds in row["aliases"].items() for name in cmds
    ]


@pytest.mark.parametrize(("name", "alias", "canonical"), _aliases(), ids=[f"{n}{a}" for n, a, _ in _aliases()])
def test_each_deprecated_spelling_sets_the_new_one_and_says_so(name, alias, canonical, capsys) -> None:
    """The alias's value reaches the setting the new spelling sets, with one line on stderr."""
    command = COMMANDS[name].callback.__wrapped__  # the edgefer command behind typer's wrapper
    declared = command.declared()
    kwargs = {q.dest: (False if q.is_flag else None) for p in declared for q in (p, *p.alias_params())}
    hit = [
        (p, q)
        for p in declared
        for q in ([p] if p.replaced_by else p.alias_params())
        if q.flags[0] == alias and (p.replaced_by or p.aliases[int(q.dest.rsplit("alias", 1)[1])] == alias)
    ]
    assert len(hit) == 1, (name, alias)
    param, hidden = hit[0]
    kwargs[hidden.dest] = True if hidden.is_flag else "7"
    values = _resolve(declared, kwargs)
    err = capsys.readouterr().err
    assert err.strip() == f"warning: {alias} is deprecated; use {canonical}", err
    expected = True if hidden.is_flag else "7"
    got = values[param.dest]
    if param.replaced_by is None:
        assert got == (not expected if param.invert else expected)


def test_deprecated_spellings_work_on_the_real_command_line(tmp_path: Path) -> None:
    """Old spellings parse and run to the same first check as the new ones: a bad gate refused
    before any stage, after one deprecation line per old flag."""
    res = CliRunner().invoke(
        app,
        ["pipeline", "--out", str(tmp_path / "run"), "--force", "--batch-size", "8", "--model", "msff_mobilenetv3",
         "--gate", "max-drop=abc", "--no-progress"],
    )  # fmt: skip
    assert res.exit_code != 0 and "gate" in str(res.exception), res.output
    for alias, new in (("--force", "--overwrite"), ("--batch-size", "--train-batch"), ("--model", "--arch")):
        assert f"warning: {alias} is deprecated; use {new}" in res.output
    assert not (tmp_path / "run").exists()


def test_typer_options_are_declared_only_in_the_params_module() -> None:
    """Every flag is a field's metadata or a group/Param: no ``typer.Option(`` elsewhere in the CLI."""
    pattern = re.compile(r"\b(typer\.(Option|Argument)|click\.(option|argument|Option|Argument))\(")
    offenders = [
        f"{path.relative_to(ROOT)}:{i}"
        for path in sorted((ROOT / "edgefer").rglob("*.py"))
        if path.name != "params.py" or path.parent.name != "cli"
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert not offenders, "Typer options outside edgefer/cli/params.py:\n  " + "\n  ".join(offenders)


def test_the_global_options_log_through_logging(tmp_path: Path, capsys) -> None:
    """``--log-file`` gets the command run and the reason behind a one-line error, at debug level."""
    from edgefer.cli import main

    log = tmp_path / "logs" / "edgefer.log"
    with pytest.raises(SystemExit) as exit_:
        main(["-v", "--log-file", str(log), "data", "info", str(tmp_path / "missing")])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.startswith("error: ")
    text = log.read_text(encoding="utf-8")
    assert "DEBUG edgefer.cli: edgefer " in text and " on Python " in text, text
    assert "user error in edgefer -v --log-file" in text and "does not exist" in text, text


def _runner() -> CliRunner:
    """A runner whose ``stdout`` is stdout alone (click 8.1 mixes stderr in unless told not to)."""
    try:
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:  # click >= 8.2: stdout and stderr are always apart
        return CliRunner()


def test_benchmark_json_and_csv(tmp_path: Path) -> None:
    """``--json`` is one JSON document on stdout; ``--csv`` has the table's columns and one row per
    model and batch size."""
    import csv
    import json

    from test_faults import make_folders, tiny_onnx

    from edgefer.bench.report import COLUMNS

    model, data = tiny_onnx(tmp_path / "m.onnx"), make_folders(tmp_path / "data", n_per_class=1)
    table = tmp_path / "out" / "rows.csv"
    args = ["benchmark", str(model), "--data", str(data), "--batch", "1,2", "--warmup", "0", "--iters", "1"]
    res = _runner().invoke(app, [*args, "--no-e2e", "--no-plots", "--json", "--csv", str(table)])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["settings"]["batches"] == [1, 2] and len(report["rows"]) == 1
    rows = list(csv.reader(table.open(encoding="utf-8")))
    assert rows[0] == list(COLUMNS) and len(rows) == 3
    assert [r[COLUMNS.index("Batch")] for r in rows[1:]] == ["1", "2"]
