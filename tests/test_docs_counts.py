"""Every count the documentation states about the repository as it is now (a board's entries
and rows, the bad-input battery's size) is compared with the truth, so that adding entries or
cases cannot leave a page behind (docs/leaderboard.md once said 47 digits entries when there
were 56).

A count is found wherever a number stands before ``entries``, ``rows`` or ``cases``, in
README.md, CONTRIBUTING.md and every page under docs/. Each must be one that this test checks:

* ``the `board` (N entries`` / ``N `board` entries`` / ``N `board` rows``: the board's entry
  files, and its rows (neuron x pruner x backend, one per entry name without its seed);
* ``N tried, N refused cleanly`` and ``**N cases**``: the cases of benchmarks/bad_input.py;

or a dated measurement, listed in `MEASUREMENTS` with the words around it: those describe one
past landing or an estimate, not the repository now. A new count that is neither fails here.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BOARDS = ROOT / "leaderboards"
PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").rglob("*.md"))]

#: counts that are measurements of one past event or estimates, by page and the text around them
MEASUREMENTS = {
    ("docs/leaderboard.md", "about 40 entries in all"),  # the re-run budget's estimate for 150 entries
    ("docs/leaderboard.md", "today's 74 entries"),  # the landing of the CPU numerics pin
    ("docs/leaderboard.md", "about 47 digits entries"),  # the same landing
    ("docs/leaderboard.md", "27 mnist1d entries (3 dense"),  # the same landing
    ("docs/leaderboard.md", "150 digits entries"),  # a hypothetical board, for the budget
    ("docs/leaderboard.md", "150 mnist1d entries"),
    ("docs/leaderboard.md", "110 entries changed"),  # measured on CI on 2026-11-29
    ("docs/leaderboard.md", "52 entries (every"),
    ("docs/leaderboard.md", "209 entries in this round"),  # the boards before the portable-v2 refresh
}

NUMBER = r"(?<![\w.])(\d[\d,]*)"  # a whole number: not the 32 of fp32 or the 15 of 0.15
COUNT = re.compile(rf"{NUMBER} (?:`?[\w-]+`? )?(entries|rows|cases)\b")


def text(page: Path) -> str:
    """The page with every run of whitespace (line breaks too) as one space."""
    return re.sub(r"\s+", " ", page.read_text())


def board_truth() -> dict[str, dict[str, int]]:
    """Entries and rows of every board, the retired ones under legacy/ included (their pages
    state their counts too)."""
    truth = {}
    folders = [*BOARDS.iterdir(), *((BOARDS / "legacy").iterdir() if (BOARDS / "legacy").is_dir() else [])]
    for folder in sorted((p for p in folders if (p / "entries").is_dir()), key=lambda p: p.name):
        names = [p.name for p in (folder / "entries").glob("*.json")]
        rows = {re.sub(r"__s\d+\.json$", "", name) for name in names}
        truth[folder.name] = {"entries": len(names), "rows": len(rows)}
    return truth


@pytest.fixture(scope="module")
def battery_size() -> int:
    spec = importlib.util.spec_from_file_location("bad_input", ROOT / "benchmarks" / "bad_input.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bad_input", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return len(module.ALL)


def checked_counts(page_text: str, boards: dict[str, dict[str, int]], battery: int):
    """(stated, true, where) for every count this test knows how to check, and the spans of
    text they cover."""
    found, spans = [], []
    names = "|".join(re.escape(b) for b in sorted(boards, key=len, reverse=True))
    patterns = [
        (rf"`?({names})`? \({NUMBER} (entries)", lambda m: (m[2], boards[m[1]][m[3]])),
        # the board in backticks: "150 digits entries" may be a hypothetical board, "56 `digits`
        # entries" is this one
        (rf"{NUMBER} `({names})` (entries|rows)\b", lambda m: (m[1], boards[m[2]][m[3]])),
        (rf"{NUMBER} tried, {NUMBER} refused cleanly", lambda m: (f"{m[1]}/{m[2]}", f"{battery}/{battery}")),
        (rf"\*\*{NUMBER} cases\*\*", lambda m: (m[1], battery)),
    ]
    for pattern, truth in patterns:
        for match in re.finditer(pattern, page_text):
            stated, true = truth(match)
            found.append((str(stated).replace(",", ""), str(true), match[0]))
            spans.append(match.span())
    return found, spans


def test_every_stated_count_matches_the_repository(battery_size):
    boards = board_truth()
    assert set(boards) >= {"digits", "mnist1d", "digits-sdt", "fashion-mnist-curves"}
    wrong, unchecked, checked = [], [], 0
    for page in PAGES:
        name = page.relative_to(ROOT).as_posix()
        page_text = text(page)
        found, spans = checked_counts(page_text, boards, battery_size)
        checked += len(found)
        wrong += [(name, phrase, f"true: {true}") for stated, true, phrase in found if stated != true]
        for match in COUNT.finditer(page_text):
            if any(start <= match.start() < end for start, end in spans):
                continue
            around = page_text[max(0, match.start() - 40):match.end() + 40]
            if not any(page_name == name and phrase in around for page_name, phrase in MEASUREMENTS):
                unchecked.append((name, around))
    assert wrong == [], f"counts in the docs that are not true: {wrong}"
    assert unchecked == [], ("counts that no test checks: write them as this test reads them, or "
                             f"list a dated measurement in MEASUREMENTS: {unchecked}")
    assert checked >= 8  # the boards' counts in docs/leaderboard.md and curves.md, the battery's


def test_a_stale_count_is_caught(battery_size):
    boards = {"digits": {"entries": 56, "rows": 20}}
    found, _ = checked_counts("today `digits` (47 entries: ...) and 56 `digits` entries", boards, battery_size)
    assert [(stated, true) for stated, true, _ in found] == [("47", "56"), ("56", "56")]
