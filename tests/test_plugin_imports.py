"""`stxbench.api` is the only stxbench module a plugin imports, and it imports no cycle.

Every first-party plugin (``plugins/``), every example plugin (``examples/``) and every plugin
example in the README and the documentation (``docs/**/*.md``) are parsed; any other import from stxbench fails the test, naming file:line.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import stxbench.api

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_DIRS = [ROOT / "plugins", ROOT / "examples"]
#: markdown files whose python blocks holding hook implementations are plugin examples
DOC_PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

#: The modules `stxbench.api` re-exports from; none of them may import `stxbench.api`.
LOWER_MODULES = ["stxbench.run.errors", "stxbench.host.hookspecs", "stxbench.neurons.contract", "stxbench.neurons.lif",
                 "stxbench.neurons.site", "stxbench.neurons.families", "stxbench.neurons.kernel_cache",
                 "stxbench.data.contract", "stxbench.models.base", "stxbench.models.pruning", "stxbench.models.sizes",
                 "stxbench.run.config", "stxbench.record.schema"]


def forbidden_imports(source: str, filename: str) -> list[str]:
    """``file:line: ...`` for every import of stxbench other than ``stxbench.api``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "stxbench":  # from stxbench import x: only x = api
                modules = [f"stxbench.{alias.name}" for alias in node.names]
            else:
                modules = [node.module]
        else:
            continue
        for module in modules:
            if (module == "stxbench" or module.startswith("stxbench.")) and module != "stxbench.api":
                found.append(f"{filename}:{node.lineno}: imports {module}; plugins import only stxbench.api")
    return found


def plugin_files() -> list[Path]:
    return sorted(p for d in PLUGIN_DIRS if d.is_dir() for p in d.rglob("*.py") if "__pycache__" not in p.parts)


def first_party_plugins() -> list[str]:
    """The modules pyproject.toml registers in the ``stxbench`` entry-point group."""
    entry_points = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["stxbench"]
    return sorted(entry_points.values())


def doc_plugin_blocks() -> list[tuple[str, str]]:
    """(``page python block N``, source) of every python block of the README and docs/ that
    implements a hook."""
    found = []
    for page in DOC_PAGES:
        blocks = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
        found += [(f"{page.relative_to(ROOT)} python block {index + 1}", block)
                  for index, block in enumerate(blocks) if "hookimpl" in block]
    return found


def test_plugins_import_nothing_from_stxbench_but_api():
    files = plugin_files()
    scanned = {path.relative_to(ROOT / "plugins").parts[0] for path in files if ROOT / "plugins" in path.parents}
    assert set(first_party_plugins()) <= scanned  # every registered first-party plugin is read
    found = [line for path in files
             for line in forbidden_imports(path.read_text(), str(path.relative_to(ROOT)))]
    blocks = doc_plugin_blocks()
    assert len(blocks) >= 6  # the plugin guides' worked examples and the observer
    for where, block in blocks:
        found += forbidden_imports(block, where)
    assert not found, "\n".join(found)


@pytest.mark.parametrize("source", [
    "import stxbench.neurons.lif",
    "import stxbench",
    "from stxbench.models.base import SpikingModel",
    "from stxbench import lif",
    "from stxbench import api, errors",
    "def f():\n    from stxbench.run.errors import UsageError",
])
def test_the_rule_names_file_and_line_of_a_forbidden_import(source):
    lines = forbidden_imports("import torch\n" + source + "\n", "plugins/x/__init__.py")
    assert len(lines) == 1
    assert re.fullmatch(r"plugins/x/__init__\.py:[23]: imports stxbench(\.\w+)*; plugins import only stxbench.api",
                        lines[0]), lines[0]


@pytest.mark.parametrize("source", [
    "from stxbench.api import Pruner, hookimpl",
    "import stxbench.api",
    "from stxbench import api",
    "import stxbench_backend_torch",
    "from . import nodes",
])
def test_the_rule_allows_api_and_other_packages(source):
    assert forbidden_imports(source, "x.py") == []


def test_every_name_a_plugin_imports_is_in_api_all():
    exported = set(stxbench.api.__all__)
    assert all(hasattr(stxbench.api, name) for name in exported)
    missing = []
    for path in plugin_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "stxbench.api":
                missing += [f"{path.relative_to(ROOT)}:{node.lineno}: {a.name}"
                            for a in node.names if a.name not in exported]
    assert not missing, "\n".join(missing)


def test_modules_under_api_never_import_it():
    """api imports the modules that define what it exports; none of them imports api back."""
    code = (f"import sys\nimport {', '.join(LOWER_MODULES)}\n"
            "assert 'stxbench.api' not in sys.modules, 'a module under stxbench.api imported it'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
