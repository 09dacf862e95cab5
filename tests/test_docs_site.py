"""The documentation a newcomer finds: a short README linking every page, a site whose
navigation lists every page, a CLI reference that matches the CLI, and a strict build."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"

#: the two commands a new user runs on a fresh machine (CI and users rely on them verbatim)
INSTALL_AND_RUN = ("python3 -m venv .venv && . .venv/bin/activate && pip install -c ci/constraints.txt "
                   "-e '.[all]' && stxbench run --neuron slif --pruner dsp --backend spikingjelly")
INSTALL_AND_TEST = ("python3 -m venv .venv && . .venv/bin/activate && pip install -c ci/constraints.txt "
                    "-e '.[all,test]' && python -m pytest -q -n 2 -m \"not e2e\"")


def doc_pages() -> set[str]:
    return {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}


def nav_pages() -> set[str]:
    """The .md paths mkdocs.yml's nav lists (``- Title: path.md`` lines)."""
    text = (ROOT / "mkdocs.yml").read_text()
    nav = text[text.index("\nnav:"):]
    return set(re.findall(r":\s+([\w./-]+\.md)\s*$", nav, flags=re.M))


def readme_links() -> list[str]:
    return re.findall(r"\]\(([^)\s#]+)(?:#[^)]*)?\)", README.read_text())


def test_readme_is_short_and_starts_with_the_two_commands():
    lines = README.read_text().splitlines()
    assert len(lines) < 220
    commands = [line.strip() for line in lines[:30] if line.startswith("    ")]
    assert commands[:2] == [INSTALL_AND_RUN, INSTALL_AND_TEST]


def test_every_docs_page_is_linked_from_the_readme_or_in_the_nav():
    linked = {link.removeprefix("docs/") for link in readme_links() if link.startswith("docs/")}
    missing = sorted(doc_pages() - linked - nav_pages())
    assert missing == [], f"pages neither linked from README.md nor in mkdocs.yml's nav: {missing}"


def test_the_nav_lists_every_docs_page_and_nothing_else():
    # the rendered boards and the root pages come from docs/hooks.py
    generated = {"leaderboards/README.md", "contributing.md", "changelog.md"}
    assert nav_pages() - generated == doc_pages()


def test_readme_links_point_at_files_that_exist():
    broken = [link for link in readme_links()
              if not link.startswith(("http://", "https://")) and not (ROOT / link).exists()]
    assert broken == []


def test_cli_reference_is_current():
    from stxbench.cli.reference import reference

    assert (DOCS / "cli.md").read_text() == reference(), (
        "docs/cli.md is out of date: regenerate it with "
        "`python -m stxbench.cli.reference > docs/cli.md`")


def test_cli_reference_lists_every_command_and_option():
    import typer.main

    from stxbench.cli import app

    text = (DOCS / "cli.md").read_text()

    def walk(command, path):
        ctx = command.context_class(command, info_name=path[-1])
        assert f"`{' '.join(path)}`" in text
        for param in command.params:
            for flag in param.opts:
                if flag.startswith("-"):
                    assert re.search(rf"`[^`]*{re.escape(flag)}\b[^`]*`", text), (path, flag)
        for name in getattr(command, "list_commands", lambda ctx: [])(ctx):
            walk(command.get_command(ctx, name), [*path, name])

    walk(typer.main.get_command(app), ["stxbench"])
    for command in ("stxbench run", "stxbench sweep status", "stxbench leaderboard paired"):
        assert f"`{command}`" in text


@pytest.mark.e2e  # a whole site build in a fresh process (CI builds the site once more by itself)
def test_mkdocs_build_is_strict_and_holds_the_boards(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    site = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                            cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr
    boards = ROOT / "leaderboards"
    for readme in boards.glob("*/README.md"):
        protocol = readme.parent.name
        assert (site / "leaderboards" / protocol / "index.html").is_file()
        for entry in (readme.parent / "entries").glob("*.json"):
            assert (site / "leaderboards" / protocol / "entries" / entry.name).read_bytes() == entry.read_bytes()
    assert (site / "leaderboards" / "index.html").is_file()
    assert (site / "methods" / "index.html").is_file() and (site / "contributing" / "index.html").is_file()
    assert not (site / "hooks.py").exists()
