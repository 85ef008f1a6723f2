"""The import graph of the installed ``robustness_harness`` package flows one way.

Every module's imports are read with ``ast`` (imports inside functions included, the
body of ``if TYPE_CHECKING:`` excluded, since it never runs). The test fails on an
import cycle, naming its modules, and on an import of a private module (``_name``) from
outside the package that holds it. Nothing is imported, so it takes milliseconds.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterator
from functools import cache
from pathlib import Path

PACKAGE = "robustness_harness"


def _root() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    assert spec is not None and spec.submodule_search_locations, f"{PACKAGE} is not installed"
    return Path(next(iter(spec.submodule_search_locations)))


def _modules(root: Path) -> dict[str, Path]:
    """Dotted module name → file, for every ``.py`` file of the package."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = [PACKAGE, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements anywhere below ``node`` that can run (not under TYPE_CHECKING)."""
    if isinstance(node, ast.If) and _is_type_checking(node.test):
        children: list[ast.AST] = list(node.orelse)
    else:
        children = list(ast.iter_child_nodes(node))
    for child in children:
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child
        yield from _runtime_imports(child)


def _targets(
    node: ast.Import | ast.ImportFrom, name: str, is_pkg: bool, mods: set[str]
) -> set[str]:
    """The package's modules an import statement of module ``name`` loads."""
    if isinstance(node, ast.Import):
        found = {alias.name for alias in node.names}
    else:
        base = node.module or ""
        if node.level:
            here = name.split(".") if is_pkg else name.split(".")[:-1]
            up = here[: len(here) - node.level + 1]
            base = ".".join(up + ([base] if base else []))
        found = {f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names}
    return {t for t in found if t in mods and t != name}


@cache
def import_graph() -> dict[str, set[str]]:
    """Module → the package modules it imports at runtime."""
    mods = _modules(_root())
    names = set(mods)
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_pkg = path.name == "__init__.py"
        graph[name] = set()
        for node in _runtime_imports(tree):
            graph[name] |= _targets(node, name, is_pkg, names)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, successors = work[-1]
            w = next(successors, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def private_imports(graph: dict[str, set[str]]) -> list[str]:
    """``importer -> module`` for each private module imported from outside its package."""
    out = []
    for name, targets in graph.items():
        for target in sorted(targets):
            parts = target.split(".")
            private = [i for i, p in enumerate(parts) if p.startswith("_")]
            if not private:
                continue
            owner = ".".join(parts[: private[0]])  # the package holding the private part
            if name != owner and not name.startswith(owner + "."):
                out.append(f"{name} -> {target}")
    return out


def test_no_import_cycles() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_no_private_module_imported_across_packages() -> None:
    found = private_imports(import_graph())
    assert not found, "private modules imported from outside their package: " + "; ".join(found)


def test_the_graph_sees_function_level_imports_and_skips_type_checking() -> None:
    graph = import_graph()
    assert len(graph) > 50
    # session reads predictions through the package, measure names session only for types
    assert f"{PACKAGE}.run.session" not in graph[f"{PACKAGE}.run.measure"]
    # session runs each gate through measure
    assert f"{PACKAGE}.run.measure" in graph[f"{PACKAGE}.run.session"]
    found = cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
    assert found == [["a", "b", "c"]]
    assert private_imports({"p.x": {"q._y"}, "q.z": {"q._y"}}) == ["p.x -> q._y"]


FLAT_LIMIT = 6
"""At most this many modules directly in the package; the rest live in layer packages."""
SHARED_NAMES = {"__init__", "base"}
"""File names allowed in several packages: each package's ``base`` says what its plug-in
kind is (a metric, a compression method)."""


def test_modules_live_in_layer_packages() -> None:
    root = _root()
    flat = sorted(p.stem for p in root.glob("*.py") if p.stem != "__init__")
    assert len(flat) <= FLAT_LIMIT, f"{len(flat)} flat modules in {PACKAGE}: {flat}"
    by_name: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*.py")):
        by_name.setdefault(path.stem, []).append(str(path.relative_to(root)))
    repeated = {n: ps for n, ps in by_name.items() if len(ps) > 1 and n not in SHARED_NAMES}
    assert not repeated, f"one file name in several packages: {repeated}"
