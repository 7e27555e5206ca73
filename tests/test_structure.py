"""The shape of the package (issue 16's acceptance check): every module imports, no import
cycle among kgtest modules, no module over 600 lines, no function over 80 lines.

What is measured, and why:

- **Import cycles**: the graph has an edge A -> B for every ``import B`` / ``from B import
  x`` written in A, at module level *and* inside functions. A function-level import that
  closes a cycle is still a layer pointing back up (it only defers the failure to call
  time), so it counts. Imports under ``if TYPE_CHECKING:`` are left out: they never run.
  ``from pkg import name`` is an edge to ``pkg.name`` when that is a module, to ``pkg``
  otherwise; a package's ``__init__`` that a submodule's import runs implicitly is not an
  edge (re-exporting submodules from ``__init__`` is the usual pattern).
- **Module length**: physical lines of the file.
- **Function length**: from the ``def`` line to the last line of the body (docstring and
  comments included: what a reader has to hold in view), for every function and method,
  nested ones included.

The allowlists name the offenders still being fixed on other branches, each with its
owner. They may only shrink: an entry that is no longer an offender fails the test, so
whoever fixes one deletes its line in the same commit.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import sys
from pathlib import Path

import networkx as nx

import kgtest

ROOT = Path(kgtest.__file__).resolve().parent
REPO = ROOT.parent
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80

#: path (relative to the repository) -> owner, for modules still over MAX_MODULE_LINES
LONG_MODULES: dict[str, str] = {}
#: "path:Qualified.name" -> owner, for functions still over MAX_FUNCTION_LINES
LONG_FUNCTIONS: dict[str, str] = {}
#: (importer, imported) -> owner: import edges that close a cycle today (the edge that
#: points back up a layer); removing all of them must leave the graph acyclic
CYCLE_EDGES: dict[tuple[str, str], str] = {}


def _files() -> list[Path]:
    return sorted(ROOT.rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Every Import/ImportFrom node that can run (``if TYPE_CHECKING:`` bodies skipped)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node):
            yield from (n for child in node.orelse for n in _imports_in(child))
        else:
            yield from _imports(node)


def _imports_in(node: ast.AST):
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    else:
        yield from _imports(node)


def import_graph() -> nx.DiGraph:
    """kgtest module -> the kgtest modules it imports (see the module docstring)."""
    paths = {_module_name(p): p for p in _files()}
    graph = nx.DiGraph()
    graph.add_nodes_from(paths)

    def known(name: str) -> str | None:
        while name and name not in paths:
            name = name.rpartition(".")[0]
        return name or None

    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in paths else base
                           for a in node.names]
            for target in filter(None, map(known, targets)):
                if target != name:
                    graph.add_edge(name, target)
    return graph


def long_functions() -> dict[str, int]:
    """``path:Qualified.name`` -> lines, for every function over MAX_FUNCTION_LINES."""
    out = {}

    def visit(node: ast.AST, prefix: str, path: Path) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                qual = prefix + child.name
                if not isinstance(child, ast.ClassDef):
                    lines = child.end_lineno - child.lineno + 1
                    if lines > MAX_FUNCTION_LINES:
                        out[f"{_rel(path)}:{qual}"] = lines
                visit(child, qual + ".", path)
            else:
                visit(child, prefix, path)

    for path in _files():
        visit(ast.parse(path.read_text(), str(path)), "", path)
    return out


def long_modules() -> dict[str, int]:
    """path -> lines, for every module over MAX_MODULE_LINES."""
    lines = {_rel(p): len(p.read_text().splitlines()) for p in _files()}
    return {p: n for p, n in lines.items() if n > MAX_MODULE_LINES}


def test_every_module_imports():
    def fail(name: str) -> None:  # walk_packages would skip a package that fails to import
        raise AssertionError(f"cannot import {name}") from sys.exc_info()[1]

    names = [m.name for m in pkgutil.walk_packages(kgtest.__path__, "kgtest.", onerror=fail)]
    assert len(names) == len(_files()) - 1  # every file is reached (kgtest/__init__ aside)
    for name in names:
        if not name.endswith(".__main__"):  # `python -m kgtest`: importing it runs the CLI
            importlib.import_module(name)


def test_the_graph_sees_imports_at_every_level():
    graph = import_graph()
    assert graph.has_edge("kgtest.pipeline", "kgtest.config")  # module level
    assert graph.has_edge("kgtest.model", "kgtest.pretrained")  # inside a function
    # under `if TYPE_CHECKING:` only: never runs, so no edge
    assert not graph.has_edge("kgtest.worlds.samplers", "kgtest.worlds.spec")


def test_no_import_cycle():
    graph = import_graph()
    stale = {e: o for e, o in CYCLE_EDGES.items()
             if not graph.has_edge(*e) or not nx.has_path(graph, e[1], e[0])}
    assert not stale, f"no longer an edge on a cycle: delete from CYCLE_EDGES: {stale}"
    graph.remove_edges_from(CYCLE_EDGES)
    cycles = sorted(nx.simple_cycles(graph), key=len)[:5]
    assert not cycles, f"import cycles among kgtest modules: {cycles}"


def test_no_module_over_600_lines():
    found = long_modules()
    stale = sorted(set(LONG_MODULES) - set(found))
    assert not stale, f"now short enough: delete from LONG_MODULES: {stale}"
    assert set(found) <= set(LONG_MODULES), {p: n for p, n in found.items()
                                              if p not in LONG_MODULES}


def test_no_function_over_80_lines():
    found = long_functions()
    stale = sorted(set(LONG_FUNCTIONS) - set(found))
    assert not stale, f"now short enough: delete from LONG_FUNCTIONS: {stale}"
    assert set(found) <= set(LONG_FUNCTIONS), {f: n for f, n in found.items()
                                                if f not in LONG_FUNCTIONS}
