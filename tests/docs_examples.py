"""The worked examples of the documentation, extracted verbatim: each is the python code block
that follows a ``<!-- example: NAME -->`` comment in a page under docs/."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
_EXAMPLE = re.compile(r"<!-- example: ([\w-]+) -->\n```python\n(.*?)```", re.S)


def examples() -> dict[str, tuple[Path, str]]:
    """Every marked example of every page: name -> (page, source)."""
    found: dict[str, tuple[Path, str]] = {}
    for page in sorted(DOCS.rglob("*.md")):
        for name, source in _EXAMPLE.findall(page.read_text()):
            assert name not in found, f"example {name!r} is marked twice ({found[name][0]} and {page})"
            found[name] = (page, source)
    return found


def write_example(name: str, folder: Path) -> str:
    """Write example ``name`` into ``folder`` under the file name its first line gives
    (``# module.py``), and return the module name to pass to ``stxbench -p``."""
    _, source = examples()[name]
    first = source.splitlines()[0]
    match = re.fullmatch(r"# (\w+)\.py", first)
    assert match, f"example {name!r} must start with '# module.py', not {first!r}"
    (folder / f"{match[1]}.py").write_text(source)
    return match[1]


def code_blocks(page: Path, language: str) -> list[str]:
    """The fenced code blocks of ``language`` on a page, in order (marked examples or not)."""
    return re.findall(rf"^```{language}\n(.*?)^```", page.read_text(), re.S | re.M)
