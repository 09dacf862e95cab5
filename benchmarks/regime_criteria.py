"""Does a board ask its question where it can have an answer? The criteria of a board "in the
paper's regime" (docs/baselines.md, issue 24), measured on its records:

1. the ST-block matrices hold >= 70 % of the model's parameters (the pruners touch only them);
2. the dense spiking network is >= 5 points above the linear baseline, on >= 5,000 test samples;
3. at each pruner's harshest level, test accuracy after fine-tuning stays >= 3 points below dense;
4. at each pruner's mildest level, it loses < 1 point;
5. the recovery curve still climbs after its first fine-tune epoch at the harshest levels: by more
   than one standard error of the validation accuracy.

"Dense" is the base neuron's row with pruner ``none`` (fine-tuned like every cell); levels are
ordered by the parameters they leave (``metrics.params_effective``). Means over seeds.

    python benchmarks/regime_criteria.py runs/sweep/fashion-mnist-paper          # a sweep's records
    python benchmarks/regime_criteria.py leaderboards/fashion-mnist-paper/entries  # a board's
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from stxbench.record.schema import Record, load_record


def records_in(folder: Path) -> list[Record]:
    paths = sorted(folder.glob("*/result.json")) or sorted(folder.glob("*.json"))
    return [load_record(p) for p in paths]


def mean(values) -> float:
    return statistics.fmean(values)


def criteria(records: list[Record], neuron: str | None = None) -> list[tuple[str, float, bool, str]]:
    """(criterion, measured value, met, how it was measured) for each criterion."""
    entries = [r for r in records if r.config.baseline is None]
    neuron = neuron or entries[0].config.base_neuron
    dense = [r for r in entries if r.config.neuron == neuron and r.config.pruner == "none"]
    if not dense:
        sys.exit(f"no record of {neuron} with pruner none: the dense row is what every criterion compares with")
    found = []
    d = dense[0].metrics
    st = sum(stat.dense for stat in d.matrices) / d.params_total
    found.append(("ST-block matrices' share of parameters", 100 * st, st >= 0.70,
                  f"{sum(s.dense for s in d.matrices):,} of {d.params_total:,} (>= 70 %)"))
    dense_acc = mean(r.metrics.accuracy for r in dense)
    linear = [r for r in records if r.config.baseline == "linear"]
    if linear:
        margin = 100 * (dense_acc - mean(r.metrics.accuracy for r in linear))
        found.append(("dense above the linear baseline (points)", margin, margin >= 5 and d.test_samples >= 5000,
                      f"{100 * dense_acc:.2f} vs {100 * mean(r.metrics.accuracy for r in linear):.2f} on "
                      f"{d.test_samples:,} test samples (>= 5 points, >= 5,000 samples)"))
    cells: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for r in entries:
        if r.config.neuron == neuron and r.config.pruner != "none":
            cells[(r.config.pruner, str(sorted(r.config.pruner_params.items())))].append(r)
    by_pruner: dict[str, list[list[Record]]] = defaultdict(list)
    for (pruner, _), group in cells.items():
        by_pruner[pruner].append(group)
    for pruner, groups in sorted(by_pruner.items()):
        groups.sort(key=lambda g: mean(r.metrics.params_effective for r in g))
        harsh, mild = groups[0], groups[-1]
        for label, group, test in (("harshest", harsh, lambda loss: loss >= 3), ("mildest", mild, lambda loss: loss < 1)):
            loss = 100 * (dense_acc - mean(r.metrics.accuracy for r in group))
            params = group[0].config.pruner_params
            found.append((f"{pruner} {label} level: loss after fine-tuning (points)", loss, test(loss),
                          f"{params}: {100 * mean(r.metrics.accuracy for r in group):.2f} vs dense "
                          f"{100 * dense_acc:.2f} ({'>= 3' if label == 'harshest' else '< 1'} points)"))
        curves = [r.recovery for r in harsh if r.recovery is not None and len(r.recovery.curve) > 2]
        if curves:
            first = mean(c.curve[1].accuracy for c in curves)
            last = mean(c.curve[-1].accuracy for c in curves)
            se = math.sqrt(first * (1 - first) / curves[0].validation_samples)
            climb = 100 * (last - first)
            found.append((f"{pruner} harshest: recovery climb after epoch 1 (points)", climb, climb > 100 * se,
                          f"validation {100 * first:.2f} after epoch 1 -> {100 * last:.2f} after epoch "
                          f"{len(curves[0].curve) - 1} (> 1 SE = {100 * se:.2f})"))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a sweep's folder of runs, or a board's entries folder")
    parser.add_argument("--neuron", help="the neuron whose rows are measured [default: the base neuron]")
    args = parser.parse_args()
    records = records_in(args.folder)
    if not records:
        sys.exit(f"{args.folder}: no records (*/result.json or *.json)")
    for name, value, met, how in criteria(records, args.neuron):
        print(f"{'met ' if met else 'NOT '} {name}: {value:.2f}  [{how}]")


if __name__ == "__main__":
    main()
