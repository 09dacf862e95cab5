"""``stxbench leaderboard check``: everything CI verifies about a leaderboard folder.

Per entry: it loads and validates against the schema; it is filed under its protocol and under
the name its content gives; no other entry is the same run; and `Verifier` finds nothing (see
verify.py: official, protocol hash current, energy = recomputed from counts, plugin files
current). For the folder: every rendered file equals a fresh render, and nothing is left over.
Each problem is one line, ``<file>: <field>: <what is wrong>``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from stxbench.leaderboard import receipts, render
from stxbench.leaderboard.store import Board, Entry, entry_name, identity
from stxbench.leaderboard.verify import Problem, Verifier


def _originals(entries: list[Entry]) -> dict[tuple[str, ...], Entry]:
    """Per run, the entry that counts as the original when several hold it: the one filed under
    the name its content gives, else the first by path."""
    originals: dict[tuple[str, ...], Entry] = {}
    for entry in sorted(entries, key=lambda e: (e.path.name != entry_name(e.record), e.path)):
        originals.setdefault(identity(entry.record), entry)
    return originals


def entry_problems(board: Board, entries: list[Entry], verifier: Verifier) -> list[str]:
    lines = []
    originals = _originals([e for e in entries if e.record is not None])
    for entry in entries:
        where = board.relative(entry.path)
        if entry.record is None:
            lines.append(f"{where}: {entry.error}")
            continue
        record = entry.record
        found = []
        if entry.folder_protocol != record.protocol.name:
            found.append(Problem("protocol.name", f"{record.protocol.name!r}, but the entry is filed "
                                 f"under {entry.folder_protocol}/"))
        expected = entry_name(record)
        if entry.path.name != expected:
            found.append(Problem("file name", f"its content names it {expected}"))
        original = originals[identity(record)]
        if original is not entry:
            found.append(Problem("duplicate", f"the same run as {board.relative(original.path)}"))
        found += verifier.problems(record)
        lines += [problem.line(where) for problem in found]
    return lines


def rendered_problems(board: Board) -> list[str]:
    fresh = render.plan(board)
    hint = "run `stxbench leaderboard render`"
    lines = [f"{board.relative(f.path)}: out of date: {hint}" for f in fresh.files if not f.is_current()]
    lines += [f"{board.relative(p)}: left over (its protocol has no entries): {hint}"
              for p in render.leftovers(board, fresh)]
    return lines


def check_board(
    board: Board,
    entries: list[Entry],
    verifier: Verifier,
    rerun: Callable[[list[Entry]], dict[Path, list[Problem]]] | None = None,
    rerun_entries: list[Entry] = (),
) -> list[str]:
    """Every problem found, one line each; ``rerun`` re-runs ``rerun_entries`` (problems by path),
    except those the static checks already fail (a re-run could only add lines, at a cost)."""
    lines = entry_problems(board, entries, verifier)
    failed = {line.split(": ", 1)[0] for line in lines}
    rerun_entries = [e for e in rerun_entries if board.relative(e.path) not in failed]
    lines += rendered_problems(board)
    if rerun_entries:
        found = rerun(list(rerun_entries))
        for entry in rerun_entries:
            lines += [problem.line(board.relative(entry.path)) for problem in found.get(entry.path, [])]
    return lines


def unverified(entries: list[Entry], installed_code: dict[str, str]) -> dict[Path, str]:
    """Entries without a valid receipt (`receipts`), with why."""
    found = {}
    for entry in entries:
        if entry.record is not None:
            why = receipts.why_unverified(entry, installed_code)
            if why is not None:
                found[entry.path] = why
    return found


def verification_lines(board: Board, entries: list[Entry], installed_code: dict[str, str],
                       reproduced: set[Path]) -> list[str]:
    """``--require-verified``: one line per entry neither reproduced by this check nor holding a
    valid receipt, and per receipt whose entry is gone."""
    lines = []
    for path, why in unverified(entries, installed_code).items():
        if path not in reproduced:
            lines.append(f"{board.relative(path)}: unverified: {why}, and this check did not reproduce it; "
                         f"re-run it (`stxbench leaderboard check --rerun-only {path.name}`, any x86-64 CPU) "
                         "and commit the receipt it writes")
    lines += [f"{board.relative(p)}: a receipt whose entry is gone: remove it" for p in receipts.orphans(board)]
    return lines
