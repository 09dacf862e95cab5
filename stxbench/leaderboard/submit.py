"""``stxbench leaderboard submit``: copy official, verified records into the leaderboard.

Each record is judged on its own: the ones that pass are submitted, the others are refused with
one line each (the CLI then exits 2). Not all-or-nothing, because ``runs/*/result.json`` usually
also matches unofficial trial runs and runs submitted before; refusing the whole batch for them
would make the glob useless. A record equal to the entry already on the board is skipped as
already submitted; a different record of the same run is a duplicate and is refused unless
``replace`` is set (to swap in a re-run of a stale entry).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stxbench.run.errors import UsageError
from stxbench.leaderboard.store import Board, describe, entry_name, identity
from stxbench.leaderboard.verify import Verifier
from stxbench.record.schema import Record, load_record, write_record


@dataclass
class Outcome:
    submitted: list[tuple[Path, Path]] = field(default_factory=list)  # (record, entry)
    already: list[tuple[Path, Path]] = field(default_factory=list)
    refused: list[tuple[Path, str]] = field(default_factory=list)  # (record, reason)


def _existing(board: Board) -> dict[tuple[str, ...], tuple[Path, Record]]:
    return {identity(e.record): (e.path, e.record) for e in board.entries() if e.record is not None}


def submit(board: Board, verifier: Verifier, paths: Sequence[Path], replace: bool = False) -> Outcome:
    outcome = Outcome()
    existing = _existing(board)
    taken: dict[tuple[str, ...], Path] = {}  # runs submitted from this batch
    for path in paths:
        try:
            record = load_record(path)
        except UsageError as exc:
            outcome.refused.append((path, str(exc).removeprefix(f"{path}: ")))
            continue
        problems = verifier.problems(record)
        if problems:
            more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
            outcome.refused.append((path, f"{problems[0].field}: {problems[0].message}{more}"))
            continue
        key = identity(record)
        dest = board.entries_dir(record.protocol.name) / entry_name(record)
        if key in taken:
            outcome.refused.append((path, f"duplicate: {taken[key]} in this batch is the same run ({describe(record)})"))
            continue
        if key in existing:
            held_path, held = existing[key]
            if held == record:
                outcome.already.append((path, held_path))
                continue
            if not replace:
                outcome.refused.append((path, f"duplicate: {board.relative(held_path)} already holds "
                                        f"{describe(record)} (--replace swaps in this record)"))
                continue
            held_path.unlink()  # under another name only if misfiled
        write_record(record, dest)
        taken[key] = path
        outcome.submitted.append((path, dest))
    return outcome
