"""Layer rules of docs/architecture.md, checked on the source with ``ast``.

Every module under ``edgefer/`` is parsed and every import in it is collected, at any depth:
module level, inside functions and methods, under ``if TYPE_CHECKING``, inside ``try``. Relative
imports are resolved. The rules (docs/architecture.md, "Layers"):

1. ``edgefer.export`` never imports ``edgefer.quantize`` (quantize sits above export; the INT8
   export that needs both is ``edgefer.deploy``), nor ``deploy``, ``pipeline`` or ``cli``.
2. ``edgefer.quantize`` never imports ``deploy``, ``pipeline`` or ``cli``.
3. The device side (``backends``, ``bench``, ``runtime``, ``bundle``, ``metadata``,
   ``engine_sidecar``, ``formats``) never imports the builders (``export``, ``quantize``,
   ``deploy``), training (``training``, ``models``), ``pipeline`` or ``cli``; and neither it nor
   any edgefer module it reaches through its imports imports torch, torchvision, nncf or
   matplotlib -- except the allowed edges in :data:`ALLOWED`, each with its reason.
4. The data readers (``edgefer.data``) are torch-free (only ``torch_dataset`` imports torch) and
   import no builder, training or top-level package: the benchmark reads datasets on the device.
5. Only ``edgefer.cli`` imports ``edgefer.cli``; only ``cli`` and ``pipeline`` import ``pipeline``.
6. The base layer (:data:`BASE`) imports only the base layer, and no torch, torchvision or nncf.
7. No import cycle inside ``edgefer/`` (imports under ``if TYPE_CHECKING:`` never run, and a
   module's own parent packages are imported before it, so neither closes a cycle).

A violation fails with the module, the line and the import, e.g.
``edgefer.backends.tensorrt:117 imports edgefer.export.tensorrt``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "edgefer"

DEVICE = (
    "edgefer.backends",
    "edgefer.bench",
    "edgefer.runtime",
    "edgefer.bundle",
    "edgefer.doctor",
    "edgefer.metadata",
    "edgefer.engine_sidecar",
    "edgefer.formats",
)
BUILDERS = ("edgefer.export", "edgefer.quantize", "edgefer.deploy")
TRAINING = ("edgefer.training", "edgefer.models")
TOP = ("edgefer.pipeline", "edgefer.cli")
HEAVY = ("torch", "torchvision", "nncf", "matplotlib")
BASE = (
    "edgefer.errors",
    "edgefer.extras",
    "edgefer.labels",
    "edgefer.preprocess",
    "edgefer.metadata",
    "edgefer.engine_sidecar",
    "edgefer.formats",
    "edgefer.reference",
    "edgefer.metrics",
    "edgefer.utils",
)

#: (importing module, imported top-level name or edgefer package) -> why the edge is allowed.
#: The walk of rule 3 does not follow these edges.
ALLOWED: dict[tuple[str, str], str] = {
    ("edgefer.backends.torch", "torch"): "the PyTorch backend runs .pt checkpoints; it imports torch when one loads",
    ("edgefer.backends.torch", "edgefer.training"): "it rebuilds the model from the checkpoint, only when one loads",
    ("edgefer.bench.plots", "matplotlib"): "optional plots: skipped with a note when matplotlib is missing",
    ("edgefer.utils.io", "matplotlib"): "save_figure, called by bench.plots only after matplotlib imported",
}


@dataclass(frozen=True)
class Import:
    """One import statement's target as seen from ``module`` (line ``line``)."""

    module: str
    target: str
    line: int
    typing_only: bool = False  # under ``if TYPE_CHECKING:``: read by type checkers, never run

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.target}"


def module_name(path: Path, root: Path) -> str:
    """``root/edgefer/export/api.py`` -> ``edgefer.export.api`` (``__init__`` names the package)."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path, root: Path, modules: set[str]) -> list[Import]:
    """Every import in the file at any depth, relative ones resolved. ``from a import b`` yields
    ``a`` and, when ``a.b`` is a module of the package, ``a.b`` too (importing it runs both)."""
    name = module_name(path, root)
    is_pkg = path.name == "__init__.py"
    out: list[Import] = []
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    typing_only = {
        id(n)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for stmt in block.body
        for n in ast.walk(stmt)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [Import(name, a.name, node.lineno, id(node) in typing_only) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            flag = id(node) in typing_only
            out.append(Import(name, target, node.lineno, flag))
            out += [
                Import(name, f"{target}.{a.name}", node.lineno, flag)
                for a in node.names
                if f"{target}.{a.name}" in modules
            ]
    return out


def scan(root: Path = PACKAGE) -> dict[str, list[Import]]:
    """{module name: its imports} for every ``.py`` file under ``root`` (a package folder)."""
    files = sorted(root.rglob("*.py"))
    modules = {module_name(f, root) for f in files}
    return {module_name(f, root): imports_of(f, root, modules) for f in files}


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    """Whether module ``name`` is one of ``prefixes`` or inside one of them."""
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def allowed(imp: Import) -> bool:
    return any(imp.module == m and within(imp.target, (t,)) for (m, t) in ALLOWED)


def layer_violations(graph: dict[str, list[Import]]) -> list[str]:
    """Rules 1, 2, 4, 5 and 6 (direct imports) and the direct part of rule 3."""
    bad: list[str] = []
    for module, imports in graph.items():
        for imp in imports:
            t = imp.target
            if within(module, ("edgefer.export",)) and within(t, ("edgefer.quantize", "edgefer.deploy", *TOP)):
                bad.append(f"{imp}  [rule 1: export/ imports no quantize, deploy, pipeline or cli]")
            if within(module, ("edgefer.quantize",)) and within(t, ("edgefer.deploy", *TOP)):
                bad.append(f"{imp}  [rule 2: quantize/ imports no deploy, pipeline or cli]")
            if within(module, DEVICE) and within(t, (*BUILDERS, *TRAINING, *TOP)) and not allowed(imp):
                bad.append(f"{imp}  [rule 3: the device side imports no builder, training, pipeline or cli]")
            if (
                within(module, ("edgefer.data",))
                and module != "edgefer.data.torch_dataset"
                and within(t, (*BUILDERS, *TRAINING, *TOP, *HEAVY))
            ):
                bad.append(f"{imp}  [rule 4: the data readers are torch-free and import no builder]")
            if within(t, ("edgefer.cli",)) and not within(module, ("edgefer.cli",)):
                bad.append(f"{imp}  [rule 5: only the CLI imports the CLI]")
            if within(t, ("edgefer.pipeline",)) and not within(module, TOP):
                bad.append(f"{imp}  [rule 5: only the CLI and the pipeline import the pipeline]")
            if within(module, BASE) and not allowed(imp):
                above = t.startswith("edgefer.") and not within(t, BASE)
                if above or t.split(".")[0] in HEAVY:
                    bad.append(f"{imp}  [rule 6: the base layer imports only the base layer, no torch or nncf]")
    return bad


def device_heavy_imports(graph: dict[str, list[Import]]) -> list[str]:
    """Rule 3, transitively: from every device-side module, follow its edgefer imports (not the
    :data:`ALLOWED` edges) and report any reached module that imports torch, torchvision, nncf or
    matplotlib, or any builder/training/top package, with the path that reaches it."""
    bad: set[str] = set()
    starts = [m for m in graph if within(m, DEVICE)]
    for start in starts:
        seen = {start: [start]}
        todo = [start]
        while todo:
            module = todo.pop()
            for imp in graph.get(module, []):
                if allowed(imp):
                    continue
                via = " -> ".join(seen[module])
                if imp.target.split(".")[0] in HEAVY or within(imp.target, (*BUILDERS, *TRAINING, *TOP)):
                    bad.add(f"{imp}  [rule 3: reached from the device side via {via}]")
                elif imp.target in graph and imp.target not in seen:
                    seen[imp.target] = [*seen[module], imp.target]
                    todo.append(imp.target)
    return sorted(bad)


def test_layer_rules() -> None:
    bad = layer_violations(scan())
    assert not bad, "layer rules of docs/architecture.md broken:\n  " + "\n  ".join(bad)


def test_device_side_reaches_no_torch_nncf_matplotlib_or_builders() -> None:
    bad = device_heavy_imports(scan())
    assert not bad, "the device side reaches heavy or builder imports:\n  " + "\n  ".join(bad)


def test_allowed_edges_exist() -> None:
    """An allowance whose import is gone is stale: drop it, so it cannot hide a new import later."""
    graph = scan()
    used = {(m, t) for (m, t) in ALLOWED if any(within(i.target, (t,)) for i in graph.get(m, []))}
    assert set(ALLOWED) == used, f"stale allowances: {sorted(set(ALLOWED) - used)}"


def test_scanner_sees_imports_at_any_depth(tmp_path: Path) -> None:
    """The checker itself: an import hidden in a method, a relative import and a ``try`` import are
    all found, and each rule reports the module, line and import."""
    pkg = tmp_path / "edgefer"
    for sub in ("export", "backends", "quantize", "utils"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "quantize" / "api.py").write_text("def quantize():\n    pass\n")
    (pkg / "export" / "api.py").write_text(
        "class A:\n    def f(self):\n        if True:\n            from ..quantize.api import quantize\n"
    )
    helpers = "def g():\n    try:\n        import torch\n    except ImportError:\n        pass\n"
    (pkg / "utils" / "helpers.py").write_text(helpers)
    (pkg / "backends" / "x.py").write_text("from edgefer.utils import helpers\n")
    graph = scan(pkg)
    assert "edgefer.export.api:4 imports edgefer.quantize.api" in "\n".join(layer_violations(graph))
    heavy = device_heavy_imports(graph)
    assert any(h.startswith("edgefer.utils.helpers:3 imports torch") and "edgefer.backends.x" in h for h in heavy)


def test_int8_export_without_a_quantizer_is_refused(tmp_path: Path) -> None:
    """edgefer.export builds no INT8 by itself (it may not import quantize): without ``int8`` the
    export refuses up front with a message naming edgefer.deploy.export, and writes nothing."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from edgefer.errors import ExportError
    from edgefer.export import export
    from edgefer.metadata import ModelMetadata, set_onnx_metadata

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3, 8, 8])
    model = helper.make_model(helper.make_graph([helper.make_node("Identity", ["input"], ["logits"])], "g", [x], [y]))
    set_onnx_metadata(model, ModelMetadata(model_name="tiny"))
    src = tmp_path / "tiny.onnx"
    onnx.save(model, str(src))
    out = tmp_path / "out"
    with pytest.raises(ExportError, match=r"needs a quantizer: call edgefer\.deploy\.export"):
        export(onnx=src, target="onnx", precision="int8", calib_data=tmp_path, out_dir=out)
    assert not out.exists()


# -- parameter limit (docs/architecture.md, "Options"): settings travel as one options object ----

#: The most parameters a library function outside ``edgefer/cli/`` may take. Typer commands list
#: one parameter per flag; everything below them takes options objects (``ExportOptions``,
#: ``QuantizeOptions``, ``TrainConfig``, ``Gate``) instead of threading settings one by one.
MAX_PARAMS = 12


def too_many_params(root: Path = PACKAGE, limit: int = MAX_PARAMS) -> list[str]:
    """``module:line function (N parameters)`` for every function or method under ``root``
    (outside ``cli/``) with more than ``limit`` named parameters; ``self``/``cls`` do not count,
    nor ``*args``/``**kwargs``."""
    bad = []
    for path in sorted(root.rglob("*.py")):
        if "cli" in path.relative_to(root).parts[:1]:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                names = [x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs) if x.arg not in ("self", "cls")]
                if len(names) > limit:
                    bad.append(f"{module_name(path, root)}:{node.lineno} {node.name} ({len(names)} parameters)")
    return bad


def test_no_library_function_takes_more_than_twelve_parameters() -> None:
    bad = too_many_params()
    assert not bad, "pass an options object instead:\n" + "\n".join(bad)


def test_the_parameter_check_counts_every_kind(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "cli").mkdir(parents=True)
    many = ", ".join(f"a{i}" for i in range(7))
    kw = ", ".join(f"k{i}=None" for i in range(6))
    (pkg / "lib.py").write_text(
        f"def f({many}, *, {kw}):\n    pass\n\n"  # 13: flagged
        f"class C:\n    def m(self, {many}, *args, {', '.join(f'k{i}=1' for i in range(5))}, **kw):\n        pass\n"
    )
    (pkg / "cli" / "cmd.py").write_text(f"def command({many}, {kw}):\n    pass\n")  # the CLI is exempt
    assert too_many_params(pkg) == ["pkg.lib:1 f (13 parameters)"]


# -- import cycles (docs/architecture.md, "Layers"): the house drawn from imports has no cycle -----


def import_groups(graph: dict[str, list[Import]]) -> list[list[str]]:
    """Every strongly connected group of two or more edgefer modules in the import graph (edges:
    imports of edgefer modules at any depth, module level and inside functions, not the type-only
    ones of :func:`_edges`), sorted; Tarjan's
    algorithm, iterative, in module-name order."""
    edges = _edges(graph)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = len(index)
                stack.append(v)
                on_stack.add(v)
            if i < len(edges[v]):
                work.append((v, i + 1))
                w = edges[v][i]
                if w not in index:
                    work.append((w, 0))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            if work:  # v is done: its caller's low link takes v's
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                group = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    group.append(w)
                    if w == v:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return sorted(groups)


def _edges(graph: dict[str, list[Import]]) -> dict[str, list[str]]:
    """{module: the edgefer modules it imports when run}. Imports under ``if TYPE_CHECKING:`` never
    run, so they close no cycle (they are how an annotation names a class from above); nor does a
    module's import of its own parent package (``from edgefer.models import msff`` in
    ``edgefer.models.zoo``): Python imports the package before the module, and the edge to the
    submodule it names is kept."""
    return {
        m: sorted(
            {
                i.target
                for i in imps
                if i.target in graph and i.target != m and not i.typing_only and not m.startswith(i.target + ".")
            }
        )
        for m, imps in graph.items()
    }


def cycle_through(group: list[str], graph: dict[str, list[Import]]) -> list[str]:
    """One import cycle inside a strongly connected ``group``, from its first module back to it
    (breadth first, so the shortest), e.g. ``[a, b, a]``."""
    edges = _edges(graph)
    start, members = group[0], set(group)
    paths = {start: [start]}
    todo = [start]
    while todo:
        v = todo.pop(0)
        for w in edges[v]:
            if w == start:
                return [*paths[v], start]
            if w in members and w not in paths:
                paths[w] = [*paths[v], w]
                todo.append(w)
    raise AssertionError(f"{group} is not strongly connected")  # pragma: no cover - Tarjan's groups are


def test_no_import_cycles() -> None:
    """No edgefer module reaches itself through its imports; a failure names one cycle per group,
    e.g. ``edgefer.engine_sidecar -> edgefer.metadata -> edgefer.engine_sidecar``."""
    graph = scan()
    cycles = [" -> ".join(cycle_through(group, graph)) for group in import_groups(graph)]
    assert not cycles, "import cycles inside edgefer/:\n  " + "\n  ".join(cycles)


def test_cycle_check_finds_function_level_and_relative_cycles(tmp_path: Path) -> None:
    """The checker itself: a cycle closed by an import inside a function and a relative import is
    found and named; a one-way chain is not a cycle, nor one closed only under ``if TYPE_CHECKING:``
    or by a module naming its own package (``from edgefer.q import peer`` in a module the package imports)."""
    pkg = tmp_path / "edgefer"
    (pkg / "q").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "q" / "__init__.py").write_text("from edgefer.q.leaf import z\n")  # q -> leaf -> (q) peer
    (pkg / "q" / "api.py").write_text("from edgefer.q.peer import g\n")
    (pkg / "q" / "peer.py").write_text("def g():\n    from .api import f\n")
    (pkg / "q" / "leaf.py").write_text("from edgefer.q import peer, typed\n")
    typed = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from edgefer.q.leaf import x\n"
    (pkg / "q" / "typed.py").write_text(typed)  # leaf -> typed -> leaf, but the way back never runs
    graph = scan(pkg)
    assert import_groups(graph) == [["edgefer.q.api", "edgefer.q.peer"]]
    assert cycle_through(["edgefer.q.api", "edgefer.q.peer"], graph) == [
        "edgefer.q.api",
        "edgefer.q.peer",
        "edgefer.q.api",
    ]
