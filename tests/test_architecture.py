"""The core's shape holds: imports go one way (no loop, not even through a type-only or a
function-local import; no core module imports the plugin facade `stxbench.api`), and the folder
map of docs/architecture.md names exactly the folders there are.

Plugins importing only `stxbench.api` is held by tests/test_plugin_imports.py."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "stxbench"
PAGE = ROOT / "docs" / "architecture.md"


def core_modules(core: Path = CORE) -> dict[str, Path]:
    """Dotted name -> file of every module under ``core`` (a package by its ``__init__``)."""
    found = {}
    for path in core.rglob("*.py"):
        if "__pycache__" in path.parts:
            continue
        parts = list(path.relative_to(core.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def import_graph(core: Path = CORE) -> dict[str, set[str]]:
    """Module -> the core modules it imports anywhere in its file: at the top, under
    ``TYPE_CHECKING``, inside functions. ``from package import name`` counts as an import of the
    module ``package.name`` where one exists, else of the package."""
    modules = core_modules(core)
    top = core.name

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {owner(alias.name) for alias in node.names if alias.name.split(".")[0] == top}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                if base.split(".")[0] == top:
                    targets |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else owner(base) for a in node.names}
        graph[module] = {t for t in targets if t and t != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_core_imports_in_one_direction_without_a_loop():
    assert cycles(import_graph()) == []


def test_the_loop_finder_finds_type_only_and_function_local_loops(tmp_path):
    core = tmp_path / "pkg"
    (core / "sub").mkdir(parents=True)
    (core / "__init__.py").write_text("")
    (core / "sub" / "__init__.py").write_text("")
    (core / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.sub import b\n")
    (core / "sub" / "b.py").write_text("def f():\n    from pkg.c import g\n")
    (core / "c.py").write_text("from . import a\ndef g():\n    pass\n")
    (core / "d.py").write_text("import pkg.a\n")
    graph = import_graph(core)
    assert graph["pkg.a"] == {"pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.c"} and graph["pkg.c"] == {"pkg.a"}
    assert cycles(graph) == [["pkg.a", "pkg.c", "pkg.sub.b"]]


def test_no_core_module_imports_the_plugin_facade():
    """`stxbench.api` re-exports; the core imports each name from where it is defined."""
    importers = sorted(m for m, targets in import_graph().items() if "stxbench.api" in targets)
    assert importers == []


def core_folders() -> set[str]:
    return {p.relative_to(ROOT).as_posix() + "/" for p in CORE.rglob("*")
            if p.is_dir() and p.name != "__pycache__" and "__pycache__" not in p.parts}


def test_the_architecture_page_maps_every_core_folder_and_only_those():
    named = set(re.findall(r"`(stxbench/[\w/]+/)`", PAGE.read_text()))
    folders = core_folders()
    assert folders - named == set(), "folders missing from docs/architecture.md"
    assert named - folders == set(), "docs/architecture.md names folders that do not exist"


def test_the_top_of_the_core_stays_small():
    entries = [p.name for p in CORE.iterdir() if p.name != "__pycache__"]
    assert len(entries) <= 15, sorted(entries)
