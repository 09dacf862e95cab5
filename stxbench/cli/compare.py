"""``stxbench compare A.json B.json``: two records side by side, differences marked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from tabulate import tabulate

from stxbench.cli.root import app
from stxbench.leaderboard.diff import differing, flat_record
from stxbench.record import load_record

ABSENT = object()


def _cell(value: Any) -> str:
    if value is ABSENT:
        return "(absent)"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str) and len(value) > 40:
        return value[:12] + "..."  # hashes: the first 12 hex digits identify them
    return str(value)


def _delta(a: Any, b: Any) -> str:
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b))
    if not numbers or a == b:
        return ""
    return f"{b - a:+d}" if isinstance(a, int) and isinstance(b, int) else f"{b - a:+.4g}"


def comparison(a: Path, b: Path, only_diff: bool = False) -> str:
    flat_a, flat_b = flat_record(load_record(a)), flat_record(load_record(b))
    keys = list(flat_a) + [k for k in flat_b if k not in flat_a]
    diff = set(differing(flat_a, flat_b))
    rows = []
    for key in keys:
        if only_diff and key not in diff:
            continue
        va, vb = flat_a.get(key, ABSENT), flat_b.get(key, ABSENT)
        rows.append([key, _cell(va), _cell(vb), "*" if key in diff else "",
                     _delta(va, vb) if key in diff else ""])
    table = tabulate(rows, headers=["field", "A", "B", "differs", "B - A"], tablefmt="simple",
                     disable_numparse=True)
    return f"A: {a}\nB: {b}\n{table}\n{len(diff)} of {len(keys)} fields differ"


@app.command("compare")
def compare_command(
    a: Path = typer.Argument(..., metavar="A.json", help="A result record or leaderboard entry."),
    b: Path = typer.Argument(..., metavar="B.json", help="Another one."),
    only_diff: bool = typer.Option(False, "--only-diff", help="Show only the fields that differ."),
) -> None:
    """Show two result records side by side, every field, differences marked with '*'."""
    typer.echo(comparison(a, b, only_diff))
