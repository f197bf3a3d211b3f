"""``make lint``'s check that the device side still runs on the device's Python (3.8, JetPack 5).

Three tools, each for what the others miss:

* ruff, with ``per-file-target-version = "py38"`` on the device-side paths (pyproject.toml): syntax a
  3.8 parser rejects, and no "upgrade" that would rewrite the code into 3.9+ forms;
* vermin (``vermin -t=3.8-``): standard-library names and arguments newer than 3.8 (``datetime.UTC``,
  ``zip(strict=)``, ``str.removeprefix``, ``importlib.resources.files``), with annotations evaluated in
  ``edgefer/cli`` because typer evaluates the command functions' signatures at run time;
* this module: PEP 604 unions (``int | None``) and PEP 585 generics (``list[int]``) *evaluated at run time*
  -- a type alias, ``isinstance``, ``cast`` -- which raise ``TypeError`` on 3.8. vermin cannot see these:
  it flags every ``X | Y``, also in the annotations that ``from __future__ import annotations`` keeps as
  strings, so it would drown them. Annotations are skipped here, except in the CLI (see above).

Run as ``python tests/lint_device_python.py [PATH ...]``; exit 1 with ``file:line: message`` per finding.
``tests/test_device_python.py`` plants a violation in a copy of a module and checks that the whole
``make lint`` check fails on it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: What a device runs: everything but the training side (which needs PyTorch, and so Python >= 3.10).
DEVICE_SIDE = (
    "edgefer/__init__.py",
    "edgefer/bundle.py",
    "edgefer/deploy.py",
    "edgefer/doctor.py",
    "edgefer/engine_sidecar.py",
    "edgefer/errors.py",
    "edgefer/extras.py",
    "edgefer/formats.py",
    "edgefer/labels.py",
    "edgefer/metadata.py",
    "edgefer/metrics.py",
    "edgefer/preprocess.py",
    "edgefer/reference.py",
    "edgefer/backends",
    "edgefer/bench",
    "edgefer/data",
    "edgefer/export",
    "edgefer/runtime",
    "edgefer/utils",
)
#: Where annotations are evaluated at run time (typer reads the command signatures).
EVALUATED_ANNOTATIONS = ("edgefer/cli",)
#: Builtins whose subscription (``list[int]``) is 3.9+ at run time.
GENERIC_BUILTINS = {"list", "dict", "tuple", "set", "frozenset", "type"}
#: Names that are types when they stand beside ``|`` (besides None and subscripted generics).
TYPE_NAMES = GENERIC_BUILTINS | {"int", "float", "str", "bytes", "bool", "complex", "object", "Path", "PathLike"}


def _is_typeish(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant) and node.value is None:
        return True
    if isinstance(node, ast.Name):
        return node.id in TYPE_NAMES
    if isinstance(node, ast.Attribute):
        return node.attr in TYPE_NAMES or node.attr == "ndarray"
    if isinstance(node, ast.Subscript):
        return _is_generic(node) or _is_typeish(node.value)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _is_typeish(node.left) or _is_typeish(node.right)
    return False


def _is_generic(node: ast.Subscript) -> bool:
    return isinstance(node.value, ast.Name) and node.value.id in GENERIC_BUILTINS


def _annotation_nodes(tree: ast.AST) -> set[int]:
    """ids of every node inside an annotation (arguments, returns, annotated assignments)."""
    roots: list[ast.AST] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
                if a is not None and a.annotation is not None:
                    roots.append(a.annotation)
            if node.returns is not None:
                roots.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            roots.append(node.annotation)
    return {id(n) for root in roots for n in ast.walk(root)}


def findings(path: Path, evaluated_annotations: bool = False) -> Iterator[str]:
    """``file:line: message`` for each run-time PEP 604 union or PEP 585 generic in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    skip = set() if evaluated_annotations else _annotation_nodes(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            if _is_typeish(node.left) and _is_typeish(node.right):
                yield f"{path}:{node.lineno}: `X | Y` evaluated at run time needs Python 3.10 (typing.Optional/Union)"
        elif isinstance(node, ast.Subscript) and _is_generic(node):
            name = node.value.id  # type: ignore[attr-defined]
            yield (
                f"{path}:{node.lineno}: `{name}[...]` evaluated at run time needs Python 3.9 "
                f"(use typing.{name.capitalize()})"
            )


def _files(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        path = ROOT / p if not Path(p).is_absolute() else Path(p)
        out += sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.exists() else []
    return out


def check(root: Path | None = None) -> list[str]:
    """Every finding of the three checks over the device side under ``root`` (this checkout by default)."""
    base = root or ROOT
    device = [str(base / p) for p in DEVICE_SIDE]
    cli = [str(base / p) for p in EVALUATED_ANNOTATIONS]
    problems = [f for path in _files(device) for f in findings(path)]
    problems += [f for path in _files(cli) for f in findings(path, evaluated_annotations=True)]
    vermin = [
        str(Path(sys.executable).parent / "vermin"),
        "-t=3.8-",
        "--violations",
        "--no-tips",
        "--no-parse-comments",
    ]
    runs = [
        [*vermin, *[str(f) for f in _files(device)]],
        [*vermin, "--eval-annotations", "--feature", "union-types", *[str(f) for f in _files(cli)]],
    ]
    for cmd in runs:
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            lines = [
                ln for ln in res.stdout.splitlines() if ln.strip() and not ln.startswith(("Detecting", "Analyzing"))
            ]
            problems.append("vermin (minimum Python 3.8):\n  " + "\n  ".join(lines))
    return problems


def main(argv: list[str]) -> int:
    root = Path(argv[0]).resolve() if argv else None
    problems = check(root)
    for p in problems:
        print(p)
    if problems:
        print(
            f"{len(problems)} problem(s): the device side must run on Python 3.8 (JetPack 5); "
            "see edgefer/utils/compat.py"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
