"""Terminal output that fits: every table and note the CLI prints is laid out for the terminal's
width (``COLUMNS``, else the terminal's, else 100 columns when the output is not a terminal).

A table wider than that wraps its widest text columns inside their cells (`fit_table`); a long
line of prose wraps at spaces, its continuation lines indented (`wrap`). Only a word longer
than the width (a path, a command to copy) is left whole.
"""

from __future__ import annotations

import os
import shutil
import textwrap
from collections.abc import Sequence
from typing import Any

from tabulate import tabulate

DEFAULT_WIDTH = 100
MIN_WIDTH = 60
#: a column is never wrapped narrower than this
MIN_COLUMN = 8


def width() -> int:
    """The width output is laid out for: ``COLUMNS`` if set, else the terminal's, else 100."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return max(MIN_WIDTH, int(columns))
    return max(MIN_WIDTH, shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns)


def wrap(text: str, indent: str = "  ", limit: int | None = None) -> str:
    """``text`` wrapped at spaces to the width, continuation lines indented by ``indent``; each
    line of ``text`` wraps on its own."""
    limit = limit or width()
    return "\n".join(
        textwrap.fill(line, limit, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)
        if len(line) > limit else line
        for line in text.splitlines()
    )


def widest(text: str) -> int:
    return max((len(line) for line in text.splitlines()), default=0)


def fit_table(rows: Sequence[Sequence[Any]], headers: Sequence[str] = (), *, limit: int | None = None,
              wrappable: Sequence[int] | None = None, **options: Any) -> str:
    """`tabulate` within the width: while the table is too wide, the widest column that may
    still shrink (any, or those in ``wrappable``) is narrowed, its cells wrapping onto more
    lines. Numbers are never parsed (``disable_numparse``), so every cell prints as given."""
    limit = limit or width()
    options.setdefault("disable_numparse", True)
    text_rows = [["" if cell is None else str(cell) for cell in row] for row in rows]
    table = tabulate(text_rows, headers=list(headers), **options)
    if widest(table) <= limit or not text_rows:
        return table
    columns = max(len(row) for row in text_rows)
    natural = [max([len(line) for row in text_rows if i < len(row) for line in row[i].splitlines()]
                   + [max(map(len, headers[i].split()), default=0) if i < len(headers) else 0])
               for i in range(columns)]
    caps = list(natural)
    while widest(table) > limit:
        excess = widest(table) - limit
        order = sorted(wrappable if wrappable is not None else range(columns), key=lambda c: -caps[c])
        i = order[0]
        if caps[i] <= MIN_COLUMN:
            break  # nothing left to narrow: as narrow as it gets
        # the widest column down to the next widest at most (water-filling), then both shrink
        runner_up = caps[order[1]] if len(order) > 1 else MIN_COLUMN
        floor = runner_up if caps[i] > runner_up else runner_up - 1
        caps[i] = max(MIN_COLUMN, caps[i] - excess, min(floor, caps[i] - 1))
        heads = [h if i >= len(caps) or len(h) <= caps[i] else "\n".join(textwrap.wrap(h, caps[i]) or [h])
                 for i, h in enumerate(headers)]
        table = tabulate(_wrapped(text_rows, caps), headers=heads, **options)
    return table


def _wrapped(rows: list[list[str]], caps: list[int]) -> list[list[str]]:
    """Each cell wrapped to its column's cap (at spaces; a longer word is cut), as the lines of a
    multi-line cell. (tabulate's own ``maxcolwidths`` reads number-like cells as numbers.)"""
    def cell(text: str, cap: int) -> str:
        if len(text) <= cap:
            return text
        return "\n".join(line for part in text.splitlines()
                         for line in textwrap.wrap(part, cap, break_on_hyphens=False) or [""])
    return [[cell(text, caps[i]) for i, text in enumerate(row)] for row in rows]


def pruner_text(name: str, params: dict[str, Any] | None) -> str:
    """``dsp keep=0.5 method=svd``: a pruner and its parameters as they are given with --set."""
    return " ".join([name, *(f"{k}={v}" for k, v in (params or {}).items())])
