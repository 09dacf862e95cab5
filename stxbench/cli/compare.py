"""``stxbench compare A.json B.json``: two records side by side, differences marked."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import typer

from stxbench.cli.layout import width
from stxbench.cli.root import app
from stxbench.leaderboard.diff import differing, flat_record
from stxbench.record.schema import load_record

ABSENT = object()
#: the A and B columns are at most this wide (longer values wrap inside them)
VALUE_WIDTH = 20
MIN_FIELD = 24


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


def _split(key: str) -> tuple[str, str]:
    """``counts.layers[stem.convs.0:convolution:mac].input_rate`` -> (the part naming the item,
    ``.input_rate``): the last dotted part outside brackets."""
    depth = 0
    for i in range(len(key) - 1, -1, -1):
        depth += key[i] == "]"
        depth -= key[i] == "["
        if key[i] == "." and depth == 0:
            return key[:i], key[i:]
    return "", key


def layout(rows: list[list[str]], limit: int) -> str:
    """Rows of (field, A, B, differs, B - A) in columns that fit ``limit``: values wrap inside
    their column; a field name too long for its column goes on a line of its own (the item it
    names, once for all its fields), its rows below it indented, by their last part."""
    headers = ["field", "A", "B", "differs", "B - A"]
    delta_w = max(len(headers[4]), min(12, max((len(r[4]) for r in rows), default=0)))
    longest_field = max((len(r[0]) for r in rows), default=0)
    room = (limit - longest_field - len(headers[3]) - delta_w - 8) // 2  # for values, every name whole
    value_w = max(1, min(max(VALUE_WIDTH, room), max((len(r[i]) for r in rows for i in (1, 2)), default=1)))
    field_w = max(MIN_FIELD, limit - 2 * value_w - len(headers[3]) - delta_w - 8)
    widths = [field_w, value_w, value_w, len(headers[3]), delta_w]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    out = [line(headers), "  ".join("-" * w for w in widths)]
    group = None
    for field, *rest in rows:
        if len(field) > field_w:
            parent, leaf = _split(field)
            if parent and len(leaf) + 2 <= field_w:
                if parent != group:
                    out += textwrap.wrap(parent, limit, subsequent_indent="    ", break_on_hyphens=False)
                    group = parent
                field = "  " + leaf
        else:
            group = None
        fields = textwrap.wrap(field, field_w, subsequent_indent="  ", break_on_hyphens=False) or [""]
        a, b = (textwrap.wrap(v, value_w, break_on_hyphens=False) or [""] for v in rest[:2])
        for i in range(max(len(fields), len(a), len(b))):
            cells = [col[i] if i < len(col) else "" for col in (fields, a, b)]
            out.append(line([*cells, *(rest[2:] if i == 0 else ["", ""])]))
    return "\n".join(out)


def comparison(a: Path, b: Path, only_diff: bool = False, limit: int | None = None) -> str:
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
    table = layout(rows, limit or width())
    return f"A: {a}\nB: {b}\n{table}\n{len(diff)} of {len(keys)} fields differ"


@app.command("compare")
def compare_command(
    a: Path = typer.Argument(..., metavar="A.json", help="A result record or leaderboard entry."),
    b: Path = typer.Argument(..., metavar="B.json", help="Another one."),
    only_diff: bool = typer.Option(False, "--only-diff", help="Show only the fields that differ."),
) -> None:
    """Show two result records side by side, every field, differences marked with '*'. Long
    field names and values wrap inside their column, to the terminal's width."""
    typer.echo(comparison(a, b, only_diff))
