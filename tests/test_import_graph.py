"""The package's layers: imports run downwards only and form no cycle.

Every module under ``src/anomalysynth`` is parsed with ``ast`` (nothing is imported),
and each ``import`` / ``from ... import`` of an ``anomalysynth`` module becomes an
edge, wherever it sits (module level or inside a function: a deferred import is still
a dependency). Imports inside ``if TYPE_CHECKING:`` blocks are left out: they never
run. A package's ``__init__`` counts as the module named like the package; importing
``a.b.c`` is an edge to ``a.b.c`` only, not to the packages ``a`` and ``a.b`` that
Python initialises on the way (re-exporting ``__init__`` files would otherwise make
every package a cycle with its own modules).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "anomalysynth"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((SRC / PACKAGE).rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, skipping the bodies of ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                yield from _imports(ast.Module(body=[child], type_ignores=[]))
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from _imports(node)


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The ``anomalysynth`` modules that module ``name`` imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _imports(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from pkg import mod`` imports the module ``pkg.mod``; ``from mod import name`` only ``mod``
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for target in targets:
            # ``import a.b.c`` of a name that is no module (a typo) still points at its nearest module
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target.startswith(PACKAGE) and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imported_modules(name, path, known) for name, path in found.items()}


def _inside(module: str, package: str) -> bool:
    full = f"{PACKAGE}.{package}"
    return module == full or module.startswith(full + ".")


def violations(graph: dict[str, set[str]], importer: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{source} -> {target}"
        for source, targets in graph.items()
        if _inside(source, importer)
        for target in targets
        if any(_inside(target, f) for f in forbidden)
    )


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_the_graph_sees_the_package(graph):
    # guards against a parser that silently finds nothing (every check below would pass)
    assert len(graph) > 30
    assert "anomalysynth.synth.base" in graph["anomalysynth.synth"]
    assert "anomalysynth.seeding" in graph["anomalysynth.synth.base"]


def test_models_do_not_import_callbacks(graph):
    assert violations(graph, "models", ("callbacks",)) == []


def test_callbacks_import_neither_datamodules_nor_preview(graph):
    assert violations(graph, "callbacks", ("datamodules", "preview")) == []


def test_synth_imports_no_datamodules_callbacks_or_models(graph):
    assert violations(graph, "synth", ("datamodules", "callbacks", "models")) == []


def test_selection_is_below_models_and_callbacks(graph):
    assert violations(graph, "selection", ("models", "callbacks", "datamodules", "preview")) == []


def test_no_import_cycles(graph):
    assert cycles(graph) == []


def test_the_checks_catch_what_they_guard_against():
    graph = {
        "anomalysynth.models.a": {"anomalysynth.callbacks.b"},
        "anomalysynth.callbacks.b": {"anomalysynth.models.a"},
        "anomalysynth.synth.c": {"anomalysynth.seeding"},
    }
    assert violations(graph, "models", ("callbacks",)) == ["anomalysynth.models.a -> anomalysynth.callbacks.b"]
    assert cycles(graph) == [["anomalysynth.callbacks.b", "anomalysynth.models.a"]]
    assert violations(graph, "synth", ("models",)) == []


def test_deferred_and_relative_imports_are_edges_but_type_checking_ones_are_not(tmp_path):
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import sibling\n"
        "if TYPE_CHECKING:\n"
        "    from anomalysynth.models import heavy\n"
        "def f():\n"
        "    from anomalysynth.callbacks.afs import thing\n"
    )
    path = tmp_path / "mod.py"
    path.write_text(source)
    known = {
        "anomalysynth.pkg.mod",
        "anomalysynth.pkg.sibling",
        "anomalysynth.models",
        "anomalysynth.models.heavy",
        "anomalysynth.callbacks.afs",
    }
    found = imported_modules("anomalysynth.pkg.mod", path, known)
    assert found == {"anomalysynth.pkg.sibling", "anomalysynth.callbacks.afs"}
