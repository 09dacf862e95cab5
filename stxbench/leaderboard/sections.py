"""README sections of a board beyond its table: accuracy-compression curves (ranked by NAUC),
recovery after pruning, and paired verdicts of PLIF and sLIF against LIF. Each is a function
``(protocol, rows) -> markdown lines`` (`stxbench.leaderboard.render.README_SECTIONS`)."""

from __future__ import annotations

import statistics

from tabulate import tabulate

from stxbench.leaderboard import paired
from stxbench.leaderboard.curves import group_lines, has_recovery, recovery_auc, row_curves, split_params
from stxbench.leaderboard.plots import ENERGY_PLOT, PARAMS_PLOT, RECOVERY_PLOT
from stxbench.leaderboard.store import params_label

#: joins a value and its spread (``99.35 ± 0.89``), so a narrow column never breaks between them
NBSP = "\u00a0"
#: the neurons the verdict section tests, and what against
VERDICT_NEURONS, VERDICT_BASE = ("plif", "slif"), "lif"


def _github(headers: list[str], rows: list[list]) -> str:
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def curves_section(protocol: str, rows) -> list[str]:
    lines, common = group_lines(rows)
    out = ["## Accuracy-compression curves", "",
           f"![accuracy vs effective parameters]({PARAMS_PLOT})", "", f"![accuracy vs energy]({ENERGY_PLOT})", ""]
    if not lines:
        return out + ["No pruned rows: no curves.", ""]
    table = []
    for rank, line in enumerate(lines, 1):
        levels = ", ".join(params_label(split_params(row.params)[1]) or "-" for row in line.rows)
        sparsity = f"{line.rows[0].sparsity:.3f}" if len(line.rows) == 1 else \
            f"{line.rows[0].sparsity:.3f}-{line.rows[-1].sparsity:.3f}"
        nauc = "-" if line.nauc is None else f"{100 * line.nauc:.2f}"
        table.append([rank if line.nauc is not None else "", line.label, levels, sparsity, nauc])
    span = (f"ST-block sparsity 0 to {common:.3f}, the largest sparsity every curve reaches"
            if common else "no curve starts from a dense row, so none has one")
    out += [
        "One curve per neuron x pruner x backend through the pruner's levels, starting at the "
        "dense (`none`) row of the same neuron and backend; the band is the 95 % t interval of "
        "the mean over seeds. NAUC, the normalised area under the accuracy-compression curve: "
        f"the mean test accuracy over {span} (linear between points). A curve ranks higher "
        "when it keeps its accuracy further into compression.",
        "",
        _github(["rank", "curve", "levels", "ST sparsity", "NAUC (%)"], table),
        "",
    ]
    return out


def _mean_over(records, get) -> float:
    return statistics.fmean(get(r) for r in records)


def _layers_mean(diagnostics: dict, key: str) -> float:
    return statistics.fmean(getattr(d, key) for d in diagnostics.values())


def _moments(records, key: str) -> str:
    values = [_mean_over(records, lambda r, m=m: _layers_mean(getattr(r.recovery.diagnostics, m), key))
              for m in ("dense", "pruned", "finetuned")]
    return " → ".join(f"{v:.3g}" for v in values)


def recovery_section(protocol: str, rows) -> list[str]:
    out = ["## Recovery after pruning", ""]
    if not has_recovery(rows):
        return out + ["No entry carries a recovery curve: the protocol has no validation split "
                      "(`[data.validation]`), so its runs measure test accuracy only.", ""]
    table = []
    samples = set()
    for row in rows:
        curves = row_curves(row)
        if not curves:
            continue
        records = [record for record, _ in curves]
        samples.add(records[0].recovery.validation_samples)
        aurc = [100 * recovery_auc(curve) for _, curve in curves]
        accuracy = [_mean_over(records, lambda r: 100 * r.recovery.accuracy_dense),
                    _mean_over(records, lambda r: 100 * r.recovery.curve[0].accuracy),
                    _mean_over(records, lambda r: 100 * r.recovery.curve[-1].accuracy)]
        table.append([
            row.label, len(curves), " → ".join(f"{v:.2f}" for v in accuracy),
            f"{statistics.fmean(aurc):.2f}" + (f"{NBSP}±{NBSP}{statistics.stdev(aurc):.2f}" if len(aurc) > 1 else ""),
            _moments(records, "firing_rate"), _moments(records, "surrogate_grad"),
        ])
    out += [
        f"![recovery curves]({RECOVERY_PLOT})", "",
        f"Validation accuracy ({', '.join(map(str, sorted(samples)))} samples carved from the training "
        "set) of the dense model → right after pruning and the neuron swap (epoch 0) → after the "
        "last fine-tune epoch (means over seeds, %). AURC: the area under the recovery curve over "
        "the fine-tune epochs divided by their number, mean ± std over seeds. Per neuron layer on "
        "a fixed validation batch, averaged over layers and seeds, before pruning → after pruning → "
        "after fine-tuning: the firing rate and the mean |surrogate gradient| (the derivative of a "
        "layer's spike count with respect to its input current; docs/curves.md).",
        "",
        _github(["neuron / pruner / backend", "seeds", "validation accuracy (%)", "AURC (%)", "firing rate",
                 "surrogate gradient"], table),
        "",
    ]
    return out


def _split_verdicts(headers: list[str], table: list[list[str]]):
    """`paired.table`'s columns as one table per metric (accuracy, then AURC when present):
    ``(what every row shares, [(title, headers, rows)])``. The leading columns (a - b, the
    context, seeds) go into each table; a context column with one value in every row is left out
    and named in the first item instead."""
    first = headers.index("seeds") + 1
    lead = list(range(first))
    constant = [i for i in lead[1:first - 1] if len({row[i] for row in table}) == 1]
    keep = [i for i in lead if i not in constant]
    common = ", ".join(f"{headers[i]} {table[0][i]} in every row" for i in constant)
    tables = []
    for start in range(first, len(headers), 4):
        metric = headers[start].removeprefix("Δ ").split(" (")[0]
        columns = [*keep, *range(start, start + 4)]
        metric_headers = [headers[i] if i < first else ("Δ (pts)", "p (Holm)", "verdict", "MDE (pts)")[i - start]
                          for i in columns]
        tables.append((f"{metric} verdicts", metric_headers, [[row[i] for i in columns] for row in table]))
    return common, tables


def paired_section(protocol: str, rows) -> list[str]:
    out = ["## Paired verdicts: PLIF and sLIF against LIF", ""]
    records = [record for row in rows for _, record in row.entries]
    neurons = {r.config.neuron for r in records}
    tested = [n for n in VERDICT_NEURONS if n in neurons]
    comparisons = paired.compare(records, "neuron", tested, VERDICT_BASE) \
        if tested and VERDICT_BASE in neurons else []
    if not comparisons:
        return out + ["No seed holds runs of LIF and of PLIF or sLIF with everything else equal: "
                      "nothing to pair.", ""]
    with_auc = any(c.auc is not None for c in comparisons)
    headers, table = paired.table(comparisons, "neuron", with_auc)
    command = (f"stxbench leaderboard paired {protocol} " + " ".join(f"--a {n}" for n in tested)
               + f" --b {VERDICT_BASE}")
    # the command's one wide table, as one narrow table per metric, without columns that hold
    # the same value in every row (said once above the tables instead)
    common, table_of = _split_verdicts(headers, table)
    out += [f"From `{command}`" + (f" ({common})" if common else "") + ":", ""]
    for title, metric_headers, rows in table_of:
        out += [f"**{title}**", "", _github(metric_headers, rows), ""]
    out += [f"- {line}" for line in paired.notes(comparisons, with_auc)]
    note = paired.accuracy_only_note(records)
    if note:
        out.append(f"- {note[0].upper()}{note[1:]}.")
    return out + [""]
