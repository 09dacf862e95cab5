"""mkdocs hooks: pages of the site that live outside docs/.

* The rendered leaderboards (``leaderboards/README.md``, ``leaderboards/<protocol>/README.md``,
  their plots and their entries) are added at build time from the repository's ``leaderboards/``
  folder, so the board is a page of the site without a second copy in git. Entries are copied as
  plain JSON files, so the board's links to them work on the site too.
* ``CONTRIBUTING.md`` and ``CHANGELOG.md`` (repository root, where GitHub shows them) become the
  pages ``contributing.md`` and ``changelog.md``; their links into ``docs/`` are rewritten to be
  relative to the site (so they link only to docs pages and leaderboards, never to other files).
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
BOARDS = ROOT / "leaderboards"
#: what a board folder holds that the site shows: its page, its plots, its entries
BOARD_FILES = ("*.md", "*.png", "*.json")
#: repository-root pages of the site: file name -> page path on the site
ROOT_PAGES = {"CONTRIBUTING.md": "contributing.md", "CHANGELOG.md": "changelog.md"}


def on_files(files: Files, config) -> Files:
    for pattern in BOARD_FILES:
        for path in sorted(BOARDS.rglob(pattern)):
            uri = "leaderboards/" + path.relative_to(BOARDS).as_posix()
            files.append(File.generated(config, uri, abs_src_path=str(path)))
    for name, uri in ROOT_PAGES.items():
        if (ROOT / name).is_file():
            files.append(File.generated(config, uri, abs_src_path=str(ROOT / name)))
    return files


_DOCS_LINK = re.compile(r"\]\((?:\./)?docs/")


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri not in ROOT_PAGES.values():
        return markdown
    # a root page links into docs/ as docs/x.md (right on GitHub); on the site x.md is beside it
    # (leaderboards/... links need nothing: the boards are at the same place on the site)
    return _DOCS_LINK.sub("](", markdown)



def on_config(config):
    """List each protocol's board in the navigation, under the board index (mkdocs.yml lists
    the index; protocols come and go with the entries)."""
    boards = [(f"Board: {p.parent.name}", f"leaderboards/{p.parent.name}/README.md")
              for p in sorted(BOARDS.glob("*/README.md")) if p.parent.name != "legacy"]
    # retired boards (leaderboards/legacy/): their index, then each, after the current ones
    if (BOARDS / "legacy" / "README.md").is_file():
        boards.append(("Retired boards", "leaderboards/legacy/README.md"))
        boards += [(f"Retired: {p.parent.name}", f"leaderboards/legacy/{p.parent.name}/README.md")
                   for p in sorted((BOARDS / "legacy").glob("*/README.md"))]

    def add(items):
        for position, item in enumerate(items):
            value = next(iter(item.values())) if isinstance(item, dict) else item
            if value == "leaderboards/README.md":
                items[position + 1:position + 1] = [{title: page} for title, page in boards]
                return True
            if isinstance(value, list) and add(value):
                return True
        return False

    add(config.nav or [])
    return config

