"""The CLI's modules import without a cycle: commands register on `stxbench.cli.root.app` and
never import from the package that imports them (`stxbench.cli`, which defines ``main``)."""

from __future__ import annotations

import ast
from pathlib import Path

CLI = Path(__file__).resolve().parent.parent / "stxbench" / "cli"
SUBMODULES = {p.stem for p in CLI.glob("*.py")} - {"__init__"}


def test_command_modules_import_only_submodules_of_the_cli_package():
    found = []
    for path in sorted(CLI.glob("*.py")):
        if path.name == "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "stxbench.cli":
                found += [f"{path.name}:{node.lineno}: from stxbench.cli import {a.name}"
                          for a in node.names if a.name not in SUBMODULES]
    assert not found, "\n".join(found)

