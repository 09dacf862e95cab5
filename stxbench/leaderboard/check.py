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


def entry_problems(board: Board, entries: list[Entry], verifier: Verifier) -> dict[Path, list[Problem]]:
    """Per entry, what the static checks find. A code-stale problem (`Problem.redeemable`) is
    dropped where the entry's receipt shows a re-run under the installed code reproduced it."""
    by_entry: dict[Path, list[Problem]] = {}
    originals = _originals([e for e in entries if e.record is not None])
    for entry in entries:
        if entry.record is None:
            by_entry[entry.path] = [Problem("", entry.error)]  # the whole file: no field to name
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
        if any(p.redeemable for p in found) and receipts.why_unverified(entry, verifier.code) is None:
            found = [p for p in found if not p.redeemable]
        by_entry[entry.path] = found
    return by_entry


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
    except those the static checks already fail (a re-run could only add lines, at a cost). An
    entry whose only problems are redeemable is re-run, and a re-run that reproduces it settles them."""
    static = entry_problems(board, entries, verifier)
    failed = {path for path, found in static.items() if any(not p.redeemable for p in found)}
    rerun_entries = [e for e in rerun_entries if e.path not in failed]
    if rerun_entries:
        found = rerun(list(rerun_entries))
        for entry in rerun_entries:
            again = found.get(entry.path)
            if again is None:  # not re-run (over the budget): its static problems stand
                continue
            # reproduced under the installed code: the code change did not move its numbers
            static[entry.path] = [p for p in static[entry.path] if not p.redeemable or again] + again
    lines = [problem.line(board.relative(path)) for path, found in static.items() for problem in found]
    return lines + rendered_problems(board)


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
