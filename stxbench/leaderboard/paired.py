"""Paired verdicts: does method a beat method b on a board, seed by seed?

A comparison varies one **factor** of a run (its neuron, its pruner configuration or its
backend) and holds the others fixed (the *context*: for neurons, the pruner configuration and
the backend). Its pairs are the seeds at which the board holds both runs; for neurons these
share the dense model and the pruned weights (same protocol, backend and seed), which is what
makes the difference of one seed a sharp measurement. Per comparison, for the test accuracy
and, where both runs carry a recovery curve, its area (AURC, `stxbench.leaderboard.curves`):
the mean difference a - b in points with its 95 % t interval, the Holm-adjusted p-value over
the family (every comparison the table shows, per metric), the verdict and the minimum
detectable effect (`stxbench.leaderboard.stats`).

Selectors: a neuron or backend name; for pruners ``NAME`` or ``NAME:key=value,...`` (every
configuration of that pruner with those parameters). ``b`` must select one configuration; each
configuration ``a`` selects gets rows of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from stxbench.run.errors import UsageError, unknown_choice
from stxbench.leaderboard.curves import config_order, recovery_auc
from stxbench.leaderboard.stats import PairedTest, holm, verdict
from stxbench.leaderboard.store import pruner_label
from stxbench.run.protocol import parse_value
from stxbench.record.schema import Record

FACTORS = ("neuron", "pruner", "backend")
#: the context columns of each factor's table
CONTEXT = {"neuron": ("pruner", "backend"), "pruner": ("neuron", "backend"), "backend": ("neuron", "pruner")}


def value_of(record: Record, factor: str) -> str:
    c = record.config
    if factor == "pruner":
        return pruner_label(c.pruner, c.pruner_params)
    return getattr(c, factor)


def _pruner_matches(record: Record, selector: str) -> bool:
    name, _, spec = selector.partition(":")
    if record.config.pruner != name:
        return False
    for item in filter(None, (part.strip() for part in spec.split(","))):
        key, sep, value = item.partition("=")
        if not sep or record.config.pruner_params.get(key.strip()) != parse_value(value.strip()):
            return False
    return True


def matches(record: Record, factor: str, selector: str) -> bool:
    if factor == "pruner":
        return _pruner_matches(record, selector)
    return value_of(record, factor) == selector


def infer_factor(records: list[Record], a: list[str], b: str) -> str:
    """The one factor under which every selector names something on the board."""
    fitting = [f for f in FACTORS if all(any(matches(r, f, s) for r in records) for s in (*a, b))]
    if len(fitting) == 1:
        return fitting[0]
    if len(fitting) > 1:
        raise UsageError(f"--a {' '.join(a)} --b {b} could be {' or '.join(fitting)}s; say which with --by")
    valid = {f: sorted({value_of(r, f).split(" ")[0] for r in records}) for f in FACTORS}
    listing = "; ".join(f"{f}s: {', '.join(v)}" for f, v in valid.items())
    raise UsageError(f"--a {' '.join(a)} --b {b}: not all are names of one kind on this board ({listing})")


@dataclass
class Comparison:
    a: str
    b: str
    context: tuple[str, ...]
    seeds: list[int]
    accuracy: PairedTest
    auc: PairedTest | None  # None unless every pair carries recovery curves
    same_dense: bool  # every pair trained from the same dense checkpoint
    accuracy_p: float | None = None  # Holm-adjusted over the family
    auc_p: float | None = None


def _context(record: Record, factor: str) -> tuple[str, ...]:
    return tuple(value_of(record, f) for f in CONTEXT[factor])


def compare(records: list[Record], factor: str, a: list[str], b: str) -> list[Comparison]:
    """Every comparison of the selected a's against b on these records, Holm-adjusted."""
    if factor not in FACTORS:
        raise unknown_choice("factor (--by)", factor, FACTORS)
    for selector in (*a, b):
        if not any(matches(r, factor, selector) for r in records):
            valid = sorted({value_of(r, factor) for r in records})
            raise UsageError(f"no {factor} '{selector}' on this board; it has: {', '.join(valid)}")
    b_values = sorted({value_of(r, factor) for r in records if matches(r, factor, b)})
    if len(b_values) > 1:
        raise UsageError(f"--b {b} selects {len(b_values)} {factor} configurations ({'; '.join(b_values)}); "
                         "name one, e.g. dsp:keep=0.5,method=svd")
    b_value = b_values[0]
    by_key = {(value_of(r, factor), _context(r, factor), r.config.seed): r for r in records}
    seeds = sorted({r.config.seed for r in records})
    a_values = list(dict.fromkeys(value_of(r, factor) for s in a for r in records if matches(r, factor, s)))
    comparisons = []
    for a_value in a_values:
        if a_value == b_value:
            raise UsageError(f"--a and --b both select {factor} '{a_value}': nothing to compare")
        contexts = sorted({_context(r, factor) for r in records if value_of(r, factor) == a_value},
                          key=_context_order)
        for context in contexts:
            pairs = [(by_key[(a_value, context, seed)], by_key[(b_value, context, seed)]) for seed in seeds
                     if (a_value, context, seed) in by_key and (b_value, context, seed) in by_key]
            if not pairs:
                continue
            accuracy = PairedTest.of([100 * (x.metrics.accuracy - y.metrics.accuracy) for x, y in pairs])
            curves = all(x.recovery is not None and y.recovery is not None for x, y in pairs)
            auc = PairedTest.of([100 * (recovery_auc(x.recovery.curve) - recovery_auc(y.recovery.curve))
                                 for x, y in pairs]) if curves else None
            same = all(x.provenance.checkpoint_sha256 == y.provenance.checkpoint_sha256 for x, y in pairs)
            comparisons.append(Comparison(a_value, b_value, context, [x.config.seed for x, _ in pairs],
                                          accuracy, auc, same))
    for metric in ("accuracy", "auc"):
        tests = [getattr(c, metric) for c in comparisons]
        adjusted = holm([t.p if t is not None else None for t in tests])
        for comparison, p in zip(comparisons, adjusted):
            setattr(comparison, f"{metric}_p", p)
    return comparisons


def _context_order(context: tuple[str, ...]):
    return tuple(config_order(part) for part in context)


def family_size(comparisons: list[Comparison], metric: str) -> int:
    return sum(getattr(c, f"{metric}_p") is not None for c in comparisons)


# -- the table ------------------------------------------------------------------------------


def _difference(test: PairedTest | None) -> str:
    if test is None:
        return "-"
    return f"{test.mean:+.2f}" + (f" ± {test.half_width:.2f}" if test.half_width is not None else "")


def _p(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _mde(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table(comparisons: list[Comparison], factor: str, with_auc: bool) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of the verdict table."""
    families = {m: max(family_size(comparisons, m), 1) for m in ("accuracy", "auc")}
    headers = ["a - b", *CONTEXT[factor], "seeds", "Δ accuracy (pts)", "p (Holm)", "verdict", "MDE (pts)"]
    if with_auc:
        headers += ["Δ AURC (pts)", "p (Holm)", "verdict", "MDE (pts)"]
    rows = []
    for c in comparisons:
        mark = "" if c.same_dense else " †"
        row = [f"{c.a} - {c.b}{mark}", *c.context, str(len(c.seeds)), _difference(c.accuracy),
               _p(c.accuracy_p), verdict(c.accuracy, c.accuracy_p), _mde(c.accuracy.mde(families["accuracy"]))]
        if with_auc:
            if c.auc is None:
                row += ["-", "-", "no recovery curves", "-"]
            else:
                row += [_difference(c.auc), _p(c.auc_p), verdict(c.auc, c.auc_p), _mde(c.auc.mde(families["auc"]))]
        rows.append(row)
    return headers, rows


def notes(comparisons: list[Comparison], with_auc: bool) -> list[str]:
    """The lines that say how to read the table."""
    k_acc, k_auc = family_size(comparisons, "accuracy"), family_size(comparisons, "auc")
    lines = [
        "a - b per seed (paired: the same dense model and the same pruned weights); Δ: mean "
        "difference in points with its 95 % t interval.",
        f"verdict: two-sided paired t-test, Holm-adjusted over the {k_acc} accuracy comparisons"
        + (f" (and separately the {k_auc} AURC comparisons)" if with_auc else "")
        + " of this table, at 0.05; MDE: the difference detected with 80 % power at this n and "
        "the family's strictest level." if k_acc else
        "verdict: none; a verdict needs at least two seeds with both runs.",
    ]
    if with_auc:
        lines.append("AURC: area under the validation recovery curve (fine-tune epochs 0..E), divided by E.")
    if not all(c.same_dense for c in comparisons):
        lines.append("†: not every pair trained from the same dense checkpoint (its sha256 differs).")
    return lines


def accuracy_only_note(records: list[Record]) -> str | None:
    """Said when no entry has a recovery curve (a protocol without a validation split)."""
    if any(r.recovery is not None for r in records):
        return None
    return ("no entry has a recovery curve (the protocol has no validation split): accuracy only")
