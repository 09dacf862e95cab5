"""Accuracy-compression curves and recovery curves of a board, from its rows.

A **curve** (line) is one neuron x pruner x backend with the pruner's non-numeric parameters
fixed (``dsp (method=svd)``), through the levels its numeric parameters take (``keep`` 0.5,
0.25, ...), each point a row of the table (mean over seeds). It starts at the **anchor**: the
``none`` row of the same neuron and backend (the fine-tuned dense model, ST sparsity 0).

**Normalised area under the accuracy-compression curve** (NAUC): with ``s`` the ST-block
sparsity of a row (``metrics.sparsity``: the fraction of the ST-block weights a pruner removed,
0 for dense) and ``acc(s)`` the curve's mean test accuracy, linear between its points and
starting at its anchor, ``NAUC = (1/S) * integral_0^S acc(s) ds``: the mean accuracy over the
compression range ``[0, S]``, where ``S`` is the same for every curve of the board (the smallest
of the curves' largest sparsities), so that curves are compared over the range they all cover.
A curve without an anchor gets none.

**Area under the recovery curve** (AURC) of one run: the validation accuracy after 0, 1, ..., E
fine-tune epochs, integrated over epochs by the trapezoid rule and divided by E: the mean
accuracy over fine-tuning, higher when accuracy comes back sooner (a run without fine-tune
epochs: its epoch-0 accuracy).
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol as TypingProtocol

from stxbench.leaderboard.store import params_label
from stxbench.leaderboard.stats import ALPHA, t_dist
from stxbench.record.schema import CurvePoint, Record


class Row(TypingProtocol):
    """What the curves read of a board's row (`stxbench.leaderboard.render.Row`, whose module
    imports this one)."""

    neuron: str
    pruner: str
    params: dict
    backend: str
    entries: list[tuple[str, Record]]

    @property
    def label(self) -> str: ...

    @property
    def accuracy(self) -> float: ...

    @property
    def sparsity(self) -> float: ...


def recovery_auc(curve: Sequence[CurvePoint]) -> float:
    """The AURC of one run's recovery curve (a fraction, like accuracy)."""
    if len(curve) == 1:
        return curve[0].accuracy
    area = sum((b.epoch - a.epoch) * (a.accuracy + b.accuracy) / 2 for a, b in zip(curve, curve[1:]))
    return area / (curve[-1].epoch - curve[0].epoch)


def mean_band(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and the half-width of its 95 % t interval (None with one value)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None
    return mean, float(t_dist().ppf(1 - ALPHA / 2, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values)))


def config_order(label: str) -> tuple:
    """A sort key putting pruner labels (and other names) in a natural order: ``none`` first,
    then by name, then by parameters, numeric ones from the highest value (the densest level:
    ``keep=0.5`` before ``keep=0.25``)."""
    tokens = []
    for token in label.replace("(", " ").replace(")", " ").replace(",", " ").split()[1:]:
        key, _, value = token.partition("=")
        try:
            tokens.append((key, 0, -float(value), ""))
        except ValueError:
            tokens.append((key, 1, 0.0, value))
    return (label != "none", label.split(" ")[0], tokens)


def _numeric(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def split_params(params: dict) -> tuple[dict, dict]:
    """(fixed, level): non-numeric parameters name the curve, numeric ones place its points."""
    fixed = {k: v for k, v in params.items() if not _numeric(v)}
    return fixed, {k: v for k, v in params.items() if _numeric(v)}


@dataclass
class Line:
    neuron: str
    pruner: str
    fixed: dict
    backend: str
    rows: list[Row] = field(default_factory=list)  # by sparsity, ascending
    anchor: Row | None = None
    nauc: float | None = None

    @property
    def label(self) -> str:
        pruner = f"{self.pruner} ({params_label(self.fixed)})" if self.fixed else self.pruner
        return f"{self.neuron} / {pruner} / {self.backend}"

    @property
    def pruner_label(self) -> str:
        return f"{self.pruner} ({params_label(self.fixed)})" if self.fixed else self.pruner

    def points(self) -> list[Row]:
        """The anchor (if any), then the levels."""
        return ([self.anchor] if self.anchor else []) + self.rows

    def max_sparsity(self) -> float:
        return max(row.sparsity for row in self.rows)

    def area(self, limit: float) -> float:
        """NAUC over [0, limit] (the curve starts at its anchor and reaches ``limit``)."""
        xs = [row.sparsity for row in self.points()]
        ys = [row.accuracy for row in self.points()]
        area = 0.0
        for x0, x1, y0, y1 in zip(xs, xs[1:], ys, ys[1:]):
            if x0 >= limit or x1 <= x0:
                continue
            end = min(x1, limit)
            y_end = y0 + (y1 - y0) * (end - x0) / (x1 - x0)
            area += (end - x0) * (y0 + y_end) / 2
        return area / limit


def group_lines(rows: list[Row]) -> tuple[list[Line], float | None]:
    """The board's curves, best NAUC first (curves without one last, by label), and the
    common sparsity ``S`` their NAUC is taken over (None when no curve has an anchor)."""
    anchors = {(row.neuron, row.backend): row for row in rows if row.pruner == "none"}
    lines: dict[tuple, Line] = {}
    for row in rows:
        if row.pruner == "none":
            continue
        fixed, _ = split_params(row.params)
        key = (row.neuron, row.pruner, json.dumps(fixed, sort_keys=True), row.backend)
        line = lines.setdefault(key, Line(row.neuron, row.pruner, fixed, row.backend))
        line.rows.append(row)
    for line in lines.values():
        line.rows.sort(key=lambda row: (row.sparsity, row.label))
        line.anchor = anchors.get((line.neuron, line.backend))
    anchored = [line for line in lines.values() if line.anchor is not None and line.max_sparsity() > 0]
    common = min((line.max_sparsity() for line in anchored), default=None)
    if common:
        for line in anchored:
            line.nauc = line.area(common)
    ordered = sorted(lines.values(), key=lambda line: (line.nauc is None, -(line.nauc or 0.0), line.label))
    return ordered, common


def row_curves(row: Row) -> list[tuple[Record, list[CurvePoint]]]:
    return [(record, record.recovery.curve) for _, record in row.entries if record.recovery is not None]


def has_recovery(rows: list[Row]) -> bool:
    return any(row_curves(row) for row in rows)
