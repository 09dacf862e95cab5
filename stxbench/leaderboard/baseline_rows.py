"""A board's reference rows (`stxbench.run.baselines`): the linear classifier and the ANN twin,
trained under the board's protocol, shown apart from the ranking with each spiking row's margin
over the first and gap to the second."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from tabulate import tabulate

from stxbench.run.baselines import BASELINES
from stxbench.leaderboard.store import ENTRIES
from stxbench.record.schema import Record

#: the integer cost model the ANN twin is also priced by (its MACs in int8)
INT8_MODEL = "horowitz45-int8-v1"
NBSP = "\u00a0"
LABELS = {"linear": "linear", "ann": "ANN twin"}


def split(items: list[tuple[str, Record]]) -> tuple[list[tuple[str, Record]], dict[str, list[tuple[str, Record]]]]:
    """(the ranked entries, the baselines' entries by baseline name in `BASELINES` order)."""
    ranked = [(name, r) for name, r in items if r.config.baseline is None]
    found = {b: [(name, r) for name, r in items if r.config.baseline == b] for b in BASELINES}
    return ranked, {b: entries for b, entries in found.items() if entries}


def _energy(record: Record, cost_model: str | None = None) -> float | None:
    """mJ per sample under the record's convention, every op as run, by ``cost_model`` (the
    protocol's when None)."""
    if record.energy is None:
        return None
    if cost_model is None:
        return record.energy.mj_per_sample
    for estimate in record.energies or []:
        if (estimate.cost_model == cost_model and estimate.convention == record.energy.convention
                and estimate.pricing == "as-run"):
            return estimate.mj_per_sample
    return None


def _mean(values: list[float | None]) -> float | None:
    return None if not values or None in values else statistics.fmean(values)


def _accuracy(records: Sequence[Record]) -> str:
    values = [100 * r.metrics.accuracy for r in records]
    std = f"{NBSP}±{NBSP}{statistics.stdev(values):.2f}" if len(values) > 1 else ""
    return f"{statistics.fmean(values):.2f}{std}"


def _mj(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def mean_accuracy(entries: list[tuple[str, Record]]) -> float:
    return statistics.fmean(r.metrics.accuracy for _, r in entries)


def section(rows: list, baselines: dict[str, list[tuple[str, Record]]]) -> list[str]:
    """README lines: the baselines' table, then the dense and best spiking rows against them.
    ``rows`` are the ranked rows (`render.Row`), best first."""
    if not baselines:
        return []
    table = []
    for name, entries in baselines.items():
        records = [r for _, r in entries]
        c = records[0].config
        rate = _mean([r.metrics.firing_rate for r in records])
        table.append([
            LABELS[name], f"{c.model}, T={c.T}", _accuracy(records),
            _mj(_mean([_energy(r) for r in records])), _mj(_mean([_energy(r, INT8_MODEL) for r in records])),
            f"{records[0].metrics.params_total:,}", "-" if rate is None else f"{rate:.4f}",
            " ".join(f"[s{r.config.seed}]({ENTRIES}/{file})" for file, r in entries),
        ])
    lines = [
        "## Baselines",
        "",
        "Reference rows, not ranked: " + "; ".join(f"**{LABELS[b]}**: {BASELINES[b]}" for b in baselines) + ". "
        "Each is trained under this board's protocol (data, split, both "
        "stages, epochs, seeds, evaluation, counting convention), checked and re-run like "
        "entries (docs/baselines.md). Energy in mJ per sample, every op as run, under the "
        "protocol's cost model and, for the same ops in integer arithmetic, `" + INT8_MODEL + "`. "
        "The ANN twin's firing rate is the mean rate its activations stand for.",
        "",
        tabulate(table, headers=["baseline", "model", "accuracy (%)", "energy (mJ)", "energy int8 (mJ)",
                                 "params", "firing rate", "entries"], tablefmt="github", disable_numparse=True),
        "",
    ]
    return lines + _against(rows, baselines)


def _against(rows: list, baselines: dict[str, list[tuple[str, Record]]]) -> list[str]:
    """Each dense spiking row (pruner none) and the best row against the baselines."""
    chosen = [row for row in rows if row.pruner == "none"]
    if rows and rows[0] not in chosen:
        chosen.insert(0, rows[0])
    if not chosen:
        return []
    linear = mean_accuracy(baselines["linear"]) if "linear" in baselines else None
    twin = baselines.get("ann")
    twin_acc = mean_accuracy(twin) if twin else None
    twin_mj = _mean([_energy(r) for _, r in twin]) if twin else None
    twin_int8 = _mean([_energy(r, INT8_MODEL) for _, r in twin]) if twin else None
    table = []
    for row in chosen:
        energy = row.energy
        table.append([
            row.label, f"{100 * row.accuracy:.2f}",
            "-" if linear is None else f"{100 * (row.accuracy - linear):+.2f}",
            "-" if twin_acc is None else f"{100 * (row.accuracy - twin_acc):+.2f}",
            "-" if energy is None or not twin_mj else f"{energy / twin_mj:.3g}",
            "-" if energy is None or not twin_int8 else f"{energy / twin_int8:.3g}",
        ])
    return [
        "Spiking rows against them (points of mean test accuracy; energy as a ratio to the ANN "
        "twin's, the row under the protocol's cost model, the twin under it and in int8): every "
        "unpruned row, and the best row. Below 1, the spiking row costs less.",
        "",
        tabulate(table, headers=["neuron / pruner / backend", "accuracy (%)", "over linear", "vs ANN twin",
                                 "energy / twin", "energy / twin int8"], tablefmt="github", disable_numparse=True),
        "",
    ]
