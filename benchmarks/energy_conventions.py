"""Energy per sample of result records under every counting convention, compute vs memory, as
one markdown table, and which rankings change from one column to another.

    python benchmarks/energy_conventions.py RECORD_OR_DIR... [--compute-model fp32]
        [--memory-model simple] [--memory-model simple-nz] [--dense-label "none"]

Records of one configuration (neuron, pruner and parameters, backend) at several seeds are one
row (means over seeds). A DSP svd row without a spiking bottleneck gets a second row priced
``merge-if-cheaper`` (each factorised matrix as the one matrix of its product where that costs
less under the column's convention and model). Energies are recomputed from the stored counts
(`stxbench.measure.energy.estimate`), so the records need per-op counts (stxbench 0.1 with this
module's counting, or later). Directories are searched for ``*.json`` records.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from stxbench.measure.conventions import CONVENTIONS
from stxbench.measure.energy import cost_model, estimate
from stxbench.run.errors import UsageError
from stxbench.leaderboard.store import pruner_label
from stxbench.record.schema import Record, load_record


def records(paths: list[str]) -> list[Record]:
    found = []
    for name in paths:
        path = Path(name)
        files = sorted(path.rglob("*.json")) if path.is_dir() else [path]
        for file in files:
            record = load_record(file)
            if record.counts is None or record.counts.ops is None:
                raise UsageError(f"{file}: no per-op counts (run with --no-counts, or recorded before "
                                 "per-convention counting): re-run it")
            found.append(record)
    if not found:
        raise UsageError("no records found")
    return found


def label(record: Record) -> str:
    c = record.config
    return f"{c.neuron} / {pruner_label(c.pruner, c.pruner_params)}"


def mergeable(record: Record) -> bool:
    return bool(record.counts.merge_options)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("paths", nargs="+", help="result.json files or folders of them")
    p.add_argument("--compute-model", default="fp32", help="compute-only cost model (default fp32)")
    p.add_argument("--memory-model", action="append", help="memory cost models (default: simple, simple-nz)")
    args = p.parse_args()
    memory_models = [cost_model(m) for m in (args.memory_model or ["simple", "simple-nz"])]
    compute = cost_model(args.compute_model)
    try:
        recs = records(args.paths)
    except UsageError as exc:
        sys.exit(f"error: {exc}")

    groups: dict[str, list[Record]] = {}
    for record in recs:
        groups.setdefault(label(record), []).append(record)
    rows = []  # (label, records, merge)
    for name, members in groups.items():
        rows.append((name, members, False))
        if all(mergeable(r) for r in members):
            rows.append((f"{name}, merged where cheaper", members, True))

    # columns: (title, function record -> (value, merged modules))
    columns = []
    for conv in CONVENTIONS:
        columns.append((f"{conv} compute", conv, compute, "compute"))
    for model in memory_models:
        columns.append((f"memory {model.id}", "stxbench", model, "memory"))
    for conv in CONVENTIONS:
        columns.append((f"{conv} + memory {memory_models[0].id}", conv, memory_models[0], "total"))

    def value(records_: list[Record], conv: str, model, part: str, merge: bool) -> float:
        values = []
        for r in records_:
            e = estimate(r.counts, conv, model, merge=merge)
            values.append({"compute": e.compute_mj, "memory": e.memory_mj, "total": e.mj_per_sample}[part])
        return statistics.fmean(values)

    table = {
        name: [value(members, conv, model, part, merge) for _, conv, model, part in columns]
        for name, members, merge in rows
    }
    accuracy = {name: statistics.fmean(r.metrics.accuracy for r in members) for name, members, _ in rows}
    dense = next((name for name in table if name.endswith("/ none")), None)
    seeds = {name: len(members) for name, members, _ in rows}

    protocols = sorted({r.protocol.name for r in recs})
    print(f"Energy per sample (uJ) of {len(recs)} record(s), protocol(s) {', '.join(protocols)}; "
          f"compute under {compute.id}; in brackets: x the dense row ({dense or 'none found'}).")
    print()
    headers = ["model", "seeds", "accuracy", *[c[0] for c in columns]]
    print("| " + " | ".join(headers) + " |")
    print("|" + "---|" * len(headers))
    for name in table:
        cells = []
        for i, v in enumerate(table[name]):
            ratio = f" ({v / table[dense][i]:.2f}x)" if dense and table[dense][i] else ""
            cells.append(f"{v * 1e3:.4g}{ratio}")
        print(f"| {name} | {seeds[name]} | {100 * accuracy[name]:.2f} | " + " | ".join(cells) + " |")
    print()
    reference = columns[0][0]
    order = sorted(table, key=lambda n: table[n][0])
    print(f"Ranking by {reference} (lowest first): " + " < ".join(order))
    for i, (title, *_rest) in enumerate(columns[1:], 1):
        ranked = sorted(table, key=lambda n: table[n][i])
        if ranked != order:
            print(f"- {title} changes it: " + " < ".join(ranked))
        else:
            print(f"- {title}: same ranking")


if __name__ == "__main__":
    main()
