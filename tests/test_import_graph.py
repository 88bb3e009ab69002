"""Issue 14: no import cycle among keepalive's modules, function-level imports included.

The graph is read from the source (every ``import`` anywhere in a module, not only at the top), so a cycle that
only closes when some function runs (``keepalive._policy`` reaching into the checker, which imports ``_policy``
back) is caught too. Two kinds of edge are not dependencies and are left out: imports under ``if
TYPE_CHECKING:`` (never run), and the parent package named in ``from keepalive import _runtime`` when every
imported name is a submodule (Python imports the parent first for any submodule; that is not a use of it).
"""

from __future__ import annotations

import ast
from pathlib import Path

import keepalive

PACKAGE = Path(keepalive.__file__).parent


def _modules() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path
    return modules


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:``."""
    nodes: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for statement in node.body:
                nodes.update(
                    id(inner) for inner in ast.walk(statement) if isinstance(inner, ast.Import | ast.ImportFrom)
                )
    return nodes


def _owner(name: str, known: set[str]) -> str | None:
    """The keepalive module ``name`` lives in (``keepalive._socket.apply`` -> ``keepalive._socket``)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_only(tree)
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(owner for alias in node.names if (owner := _owner(alias.name, known)))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            submodules = {f"{source}.{alias.name}" for alias in node.names} & known
            found.update(submodules)
            if len(submodules) < len(node.names) and (owner := _owner(source, known)):
                found.add(owner)  # a name that is not a submodule: a real use of the module it comes from
    found.discard(module)
    return found


def test_the_graph_reader_sees_function_level_imports_and_ignores_type_checking_ones(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from keepalive._install import install\n"
        "def later():\n    from keepalive._socket import apply\n"
        "from keepalive import _runtime\n"
    )
    known = set(_modules())
    assert _imports("keepalive.m", source, known) == {"keepalive._socket", "keepalive._runtime"}


def test_no_import_cycle_among_keepalives_modules() -> None:
    modules = _modules()
    known = set(modules)
    graph = {name: _imports(name, path, known) for name, path in modules.items()}

    def reachable(start: str) -> set[str]:
        seen: set[str] = set()
        todo = [start]
        while todo:
            for nxt in graph[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    cycles = {name: sorted(graph[name] & {m for m in graph if name in reachable(m)}) for name in graph}
    assert {name: via for name, via in cycles.items() if name in reachable(name)} == {}
