"""The README's commands are the CLI's commands: a renamed or removed flag breaks the build, not the user.

Every ``edgefer ...`` line in a fenced code block of README.md and docs/*.md (continuation lines
joined, comments dropped), and the Makefile's demo line, is given to the real CLI with ``--help``
appended: click parses the whole line -- the command path, every option name and whether it takes
a value -- before the eager ``--help`` prints and exits 0, so an unknown command or option, or a
flag that lost its value, exits 2 here. The values themselves (paths to RAF-DB, checkpoints) are not
needed, which is what lets this cover the blocks that need external data. A deprecated spelling
(a hidden alias kept for old scripts) parses too, so each line is also checked for the hidden
options of its command: the docs must teach the current spelling.

The blocks that need no data run for real: ``edgefer doctor`` (its exit says whether a backend
works here) and ``edgefer models``.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from edgefer.cli import app

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([\w-]*)\s*$")


def _blocks(text: str) -> list[str]:
    """The shell code blocks (bash, sh, console or unlabelled) of a Markdown text."""
    blocks, current, lang = [], None, ""
    for line in text.splitlines():
        m = FENCE.match(line.strip())
        if m and current is None:
            current, lang = [], m.group(1)
        elif line.strip() == "```" and current is not None:
            if lang in ("", "bash", "sh", "shell", "console"):
                blocks.append("\n".join(current))
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def _argv(line: str) -> list[str] | None:
    """The arguments after ``edgefer`` of one shell line, or None when it runs something else."""
    try:
        words = shlex.split(line, comments=True)
    except ValueError:
        return None
    if words[:1] == ["edgefer"]:
        words = words[1:]
    elif "edgefer.cli" in words:  # torchrun ... -m edgefer.cli train ...
        words = words[words.index("edgefer.cli") + 1 :]
    elif ".venv/bin/edgefer" in words[:1] or "$(VENV)/bin/edgefer" in words[:1]:
        words = words[1:]
    else:
        return None
    return [w for w in words if w != "..."]  # "edgefer export ... --target trt": elided arguments


def documented_commands() -> list[tuple[str, list[str]]]:
    """(where, argv) of every edgefer command line in the docs' code blocks and the Makefile."""
    found = []
    for doc in DOCS:
        for block in _blocks(doc.read_text(encoding="utf-8")):
            for line in block.replace("\\\n", " ").splitlines():
                argv = _argv(line.strip())
                if argv:
                    found.append((f"{doc.name}: {line.strip()[:60]}", argv))
    for line in (ROOT / "Makefile").read_text(encoding="utf-8").splitlines():
        argv = _argv(line.strip())
        if argv:
            found.append((f"Makefile: {line.strip()[:60]}", argv))
    return found


COMMANDS = documented_commands()


def test_the_docs_have_commands_to_check() -> None:
    # the extraction itself can break (a new fence style): this fails instead of checking nothing
    assert len(COMMANDS) >= 30, [w for w, _ in COMMANDS]
    assert any(w.startswith("Makefile") for w, _ in COMMANDS)


@pytest.mark.parametrize(("where", "argv"), COMMANDS, ids=[w for w, _ in COMMANDS])
def test_documented_command_parses(where: str, argv: list[str]) -> None:
    result = CliRunner().invoke(app, [*argv, "--help"])
    assert result.exit_code == 0, f"{where}\n  edgefer {' '.join(argv)}\n{result.output}"


def _hidden_flags(argv: list[str]) -> set[str]:
    """The hidden (deprecated) option names of the command ``argv`` runs, and of the root."""
    cmd = typer.main.get_command(app)
    hidden = set()
    for word in [None, *argv]:
        if word is not None:
            sub = getattr(cmd, "commands", {}).get(word)
            if sub is None:
                break
            cmd = sub
        hidden |= {o for p in cmd.params if getattr(p, "hidden", False) for o in (*p.opts, *p.secondary_opts)}
    return hidden


@pytest.mark.parametrize(("where", "argv"), COMMANDS, ids=[w for w, _ in COMMANDS])
def test_documented_command_uses_current_spellings(where: str, argv: list[str]) -> None:
    old = sorted({w.split("=")[0] for w in argv} & _hidden_flags(argv))
    assert not old, f"{where}: deprecated spelling(s) {old} -- see docs/cli.md"


def test_a_deprecated_spelling_is_caught() -> None:
    assert "--batch-size" in _hidden_flags(["train", "--data", "x"])


def test_an_unknown_flag_is_caught() -> None:
    # the check above is only worth something if a wrong flag fails it
    assert CliRunner().invoke(app, ["export", "--no-such-flag", "1", "--help"]).exit_code == 2
    assert CliRunner().invoke(app, ["exprt", "--help"]).exit_code == 2


def test_doctor_runs() -> None:
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    assert "onnxruntime" in result.output.lower()


def test_models_runs() -> None:
    pytest.importorskip("torch")
    result = CliRunner().invoke(app, ["models", "--img-size", "112"])
    assert result.exit_code == 0, result.output
    assert "msff_mobilenetv3_lite" in result.output
