"""The layers hold: the core imports nothing of the edge, and no module circle exists.

ARCHITECTURE.md says ``simulator/core/`` is pure and that imports only point down. These tests make
the claim fail loudly the day it stops being true, instead of being a sentence in a document.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "simulator"

FORBIDDEN_IN_CORE = ("asyncio", "grpclib", "betterproto2", "simulator._proto", "simulator.server")
"""What loading the pure core must never load: the event loop, gRPC, protobuf, the edge."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    """Every module of the package except the generated ``_proto`` code, by dotted name."""
    return {
        _module_name(path): path
        for path in sorted(PACKAGE.rglob("*.py"))
        if "_proto" not in path.relative_to(PACKAGE).parts
    }


def test_core_modules_load_nothing_of_the_edge() -> None:
    """In a fresh interpreter, importing each module of simulator/core adds none of the forbidden
    packages to ``sys.modules`` (checked after every import, so the culprit is named)."""
    core = [name for name in _modules() if name.startswith("simulator.core")]
    assert "simulator.core.engine" in core and "simulator.core.transitions" in core
    probe = f"""
import importlib, json, sys
forbidden = {FORBIDDEN_IN_CORE!r}
found = {{}}
for name in {core!r}:
    importlib.import_module(name)
    bad = sorted(m for m in sys.modules if any(m == f or m.startswith(f + ".") for f in forbidden))
    if bad:
        found[name] = bad
        break
print(json.dumps(found))
"""
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    found = json.loads(result.stdout)
    assert found == {}, f"importing the core loaded edge modules: {found}"


def test_engine_alone_is_pure() -> None:
    """``import simulator.core.engine`` (what a user of the pure core writes) loads none either."""
    probe = (
        "import sys, simulator.core.engine, simulator.core.state\n"
        f"forbidden = {FORBIDDEN_IN_CORE!r}\n"
        "print(sorted(m for m in sys.modules if any(m == f or m.startswith(f + '.') "
        "for f in forbidden)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]", result.stdout


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level_imports(
    tree: ast.Module, *, type_checking: bool = False
) -> list[ast.Import | ast.ImportFrom]:
    """Imports that run when the module loads: top level, and inside top-level ``try``/``if``
    blocks; those under ``if TYPE_CHECKING`` (which never run) only when ``type_checking``."""
    found: list[ast.Import | ast.ImportFrom] = []
    todo: list[ast.stmt] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If):
            if type_checking or not _is_type_checking(node.test):
                todo.extend(node.body)
            todo.extend(node.orelse)
        elif isinstance(node, ast.Try):
            todo.extend(node.body + node.orelse + node.finalbody)
            for handler in node.handlers:
                todo.extend(handler.body)
    return found


def _import_graph(*, type_checking: bool = False) -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in _module_level_imports(
            ast.parse(path.read_text(), str(path)), type_checking=type_checking
        ):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                # ``from pkg import mod`` names a module; ``from mod import name`` names mod.
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    for alias in node.names
                ]
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_real_edges() -> None:
    graph = _import_graph()
    assert "simulator.core.transitions" in graph["simulator.core.engine"]
    assert "simulator.core.engine" in graph["simulator.server.runtime"]


def test_no_import_circle_among_the_package_modules() -> None:
    """Module-level imports (``TYPE_CHECKING`` ones excluded) form no circle: imports point down."""
    cycles = _cycles(_import_graph())
    assert cycles == [], "import circles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_no_import_circle_even_for_type_checking() -> None:
    """Not even the type checker's imports form a circle (a hub that knows its users is one)."""
    cycles = _cycles(_import_graph(type_checking=True))
    assert cycles == [], "import circles: " + "; ".join(" <-> ".join(c) for c in cycles)
