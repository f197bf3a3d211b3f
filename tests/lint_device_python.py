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
#: Training-side modules inside those folders (they import torch, so they never run on an old interpreter).
TRAINING_ONLY = ("edgefer/data/torch_dataset.py",)
#: Where annotations are evaluated at run time (typer reads the command signatures).
EVALUATED_ANNOTATIONS = ("edgefer/cli",)
#: Builtins whose subscription (``list[int]``) is 3.9+ at run time.
GENERIC_BUILTINS = {"list", "dict", "tuple", "set", "frozenset", "type"}
#: Methods that exist only on newer Pythons' objects (``Path.is_relative_to`` is 3.9). vermin cannot see these:
#: it does not know that the object is a Path or a str. Names no 3.8 object has, so a call is always wrong.
NEW_METHODS = {
    "is_relative_to": "3.9 (Path; use edgefer.utils.compat.is_within)",
    "removeprefix": "3.9 (str/bytes)",
    "removesuffix": "3.9 (str/bytes)",
    "with_stem": "3.9 (Path)",
    "hardlink_to": "3.10 (Path)",
    "bit_count": "3.10 (int)",
}
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


def _is_generic(node: ast.Subscript, abc_names: frozenset[str] = frozenset()) -> bool:
    """``list[...]``, ``collections.abc.Callable[...]`` (or a name imported from there), ``os.PathLike[...]``:
    subscriptable at run time only from Python 3.9."""
    value = node.value
    if isinstance(value, ast.Name):
        return value.id in GENERIC_BUILTINS or value.id in abc_names
    if isinstance(value, ast.Attribute):
        owner = ast.unparse(value.value)
        return owner in ("collections.abc", "abc") or (owner, value.attr) in {("os", "PathLike"), ("re", "Pattern")}
    return False


def _abc_imports(tree: ast.AST) -> frozenset[str]:
    """Names a module imports from ``collections.abc`` (``from collections.abc import Callable``)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "collections.abc":
            names |= {a.asname or a.name for a in node.names}
    return frozenset(names)


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
    abc_names = _abc_imports(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            if _is_typeish(node.left) and _is_typeish(node.right):
                yield f"{path}:{node.lineno}: `X | Y` evaluated at run time needs Python 3.10 (typing.Optional/Union)"
        elif isinstance(node, ast.Attribute) and node.attr in NEW_METHODS:
            yield f"{path}:{node.lineno}: `.{node.attr}` needs Python {NEW_METHODS[node.attr]}"
        elif isinstance(node, ast.Subscript) and _is_generic(node, abc_names):
            name = ast.unparse(node.value)
            yield f"{path}:{node.lineno}: `{name}[...]` evaluated at run time needs Python 3.9 (use the typing name)"


def _files(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        path = ROOT / p if not Path(p).is_absolute() else Path(p)
        out += sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.exists() else []
    return [f for f in out if not any(f.as_posix().endswith(t) for t in TRAINING_ONLY)]


def check(root: Path | None = None, only: list[Path] | None = None) -> list[str]:
    """Every finding of vermin and of the run-time typing check over the device side under ``root`` (this
    checkout by default); with ``only``, over those of its files alone (the rest of the tree is not read)."""
    base = root or ROOT
    device = _files([str(base / p) for p in DEVICE_SIDE])
    cli = _files([str(base / p) for p in EVALUATED_ANNOTATIONS])
    if only is not None:
        keep = {Path(f).resolve() for f in only}
        device = [f for f in device if f.resolve() in keep]
        cli = [f for f in cli if f.resolve() in keep]
    problems = [f for path in device for f in findings(path)]
    problems += [f for path in cli for f in findings(path, evaluated_annotations=True)]
    vermin = [
        str(Path(sys.executable).parent / "vermin"),
        "-t=3.8-",
        "--violations",
        "--no-tips",
        "--no-parse-comments",
    ]
    runs = [
        vermin + [str(f) for f in device],
        [*vermin, "--eval-annotations", "--feature", "union-types"] + [str(f) for f in cli],
    ]
    for cmd, files in zip(runs, (device, cli), strict=True):
        if not files:
            continue
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
