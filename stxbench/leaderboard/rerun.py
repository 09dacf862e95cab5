"""``check --rerun``: run an entry again from scratch and compare.

A re-run trains the dense model again (a fresh, temporary cache) with the entry's seed, backend
and thread count on the CPU, then must reproduce the entry: accuracy within the protocol's
``accuracy_tolerance``, parameter counts exactly, and op counts exactly when the re-run trained
the very same dense model (its sha256 is the entry's: same CPU kind, same threads). On a CPU
whose kernels round differently, training drifts in the last bits and ends on other spikes: then
what spikes cannot change (`spike_independent`: dense ops and weights read per layer, neuron
updates, BatchNorm elements) must still agree exactly, and the totals under the counting rule
(MACs, ACs, integer ACs: kinds are decided per sample, so they follow the spikes) within
`SPIKE_COUNTS_RTOL`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import tempfile
from pathlib import Path

import torch

from stxbench.errors import RunFailed, UsageError
from stxbench.host import PluginHost
from stxbench.leaderboard.diff import differing, flatten
from stxbench.leaderboard.store import Entry, ProtocolLookup
from stxbench.leaderboard.verify import Problem
from stxbench.record import Record
from stxbench.runconfig import resolve, resolve_pruner_params
from stxbench.runner import execute
from stxbench.runoptions import RunOptions


#: Relative tolerance on ACs and integer ACs for a re-run whose dense model is not bit-identical
#: to the entry's. Seeds of one configuration spread by 1-3 % on digits; a wrong count rule or a
#: changed model moves these totals by far more.
SPIKE_COUNTS_RTOL = 0.10


def can_rerun(entry: Entry, protocols: ProtocolLookup, host: PluginHost) -> str | None:
    """Why this machine cannot re-run the entry, or None if it can."""
    record = entry.record
    try:
        if not protocols.get(record.protocol.name).cpu_cheap:
            return f"protocol {record.protocol.name} is not CPU-cheap"
        host.backend(record.config.backend).check_available()
    except UsageError as exc:
        return str(exc)
    return None


def pick_one(entries: list[Entry], commit: str | None) -> Entry | None:
    """One entry, chosen deterministically: by the commit being checked (so successive commits
    re-run different entries), or the first by name outside a git checkout."""
    if not entries:
        return None
    ordered = sorted(entries, key=lambda e: e.path.name)
    if not commit:
        return ordered[0]
    index = int(hashlib.sha256(commit.removesuffix("+dirty").encode()).hexdigest(), 16) % len(ordered)
    return ordered[index]


def rerun_record(record: Record, protocols: ProtocolLookup, host: PluginHost, threads: int | None) -> Record:
    """Run the entry's configuration again, in a temporary folder with an empty cache."""
    c = record.config
    previous_threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="stxbench-rerun-") as tmp:
        config = resolve(
            host, protocol=protocols.source(record.protocol.name), neuron=c.neuron, pruner=c.pruner,
            backend=c.backend, seed=c.seed, settings=[], out_dir=Path(tmp) / "run",
            options=RunOptions(device="cpu", cache_dir=Path(tmp) / "cache",
                               threads=threads or record.provenance.threads),
        )
        params = resolve_pruner_params(host, config.protocol, c.pruner, c.pruner_params)
        config = dataclasses.replace(config, pruner_params=params)
        try:
            return execute(config, host, warn=lambda line: None)
        finally:
            torch.set_num_threads(previous_threads)


def compare(entry: Record, rerun: Record, tolerance: float) -> list[Problem]:
    found = []
    a, b = entry.metrics.accuracy, rerun.metrics.accuracy
    if abs(a - b) > tolerance:
        found.append(Problem("metrics.accuracy", f"re-run gives {b:.4f}, the entry {a:.4f}: "
                             f"differs by {abs(a - b):.4f} > the protocol's tolerance {tolerance}"))
    for key in ("params_total", "params_effective"):
        mine, again = getattr(entry.metrics, key), getattr(rerun.metrics, key)
        if mine != again:
            found.append(Problem(f"metrics.{key}", f"re-run gives {again}, the entry {mine}"))
    if rerun.counts is None:
        found.append(Problem("counts", "the re-run produced no op counts"))
    elif entry.counts is not None:
        found += compare_counts(entry, rerun)
    return found


#: count fields added after the first entries: an entry without them is compared without them
_LATER_COUNT_FIELDS = ("precision", "ops", "batchnorm", "neurons", "merge_options")


def _counts_dump(entry: Record, other: Record) -> dict:
    data = other.counts.model_dump(mode="json")
    for key in _LATER_COUNT_FIELDS:
        if getattr(entry.counts, key) is None:
            data.pop(key, None)
    return data


def spike_independent(record: Record) -> dict[str, object]:
    """What spikes cannot move, as integers over all samples counted: the samples, the rule,
    membrane updates, BatchNorm elements and, per (module, op), the dense products and the
    weights read, summed over operand kinds (a sample's kinds follow its spikes: a residual
    stream that never exceeds 1 is binary, a real input that is all zero costs nothing)."""
    c = record.counts
    n = c.samples
    out: dict[str, object] = {"counts.samples": n, "counts.subset": c.subset, "counts.rule": c.rule,
                              "counts.neuron_updates": round(c.neuron_updates * n)}

    def add(key: str, value: float) -> None:
        out[key] = out.get(key, 0) + round(value * n)

    for layer in c.layers:
        add(f"counts.layers[{layer.module}:{layer.op}].dense_ops", layer.dense_ops)
    for op in c.ops or []:
        for field in ("dense", "dense_padded", "weight_reads", "weight_nonzero_reads"):
            add(f"counts.ops[{op.module}:{op.op}].{field}", getattr(op, field))
    for bn in c.batchnorm or []:
        add(f"counts.batchnorm[{bn.module}].elements", bn.elements)
    for neuron in c.neurons or []:
        add(f"counts.neurons[{neuron.module}].updates", neuron.updates)
    return out


def compare_counts(entry: Record, rerun: Record) -> list[Problem]:
    same_dense = entry.provenance.checkpoint_sha256 == rerun.provenance.checkpoint_sha256
    if same_dense:
        mine = flatten(entry.counts.model_dump(mode="json"), "counts")
        again = flatten(_counts_dump(entry, rerun), "counts")
        why = "counts must agree exactly"
    else:
        mine, again = spike_independent(entry), spike_independent(rerun)
        if entry.counts.ops is None:
            again = {k: v for k, v in again.items() if not k.startswith(("counts.ops", "counts.batchnorm",
                                                                         "counts.neurons"))}
        why = "spike-independent counts must agree exactly"
    keys = differing(mine, again)
    found = []
    if keys:
        more = f" (+{len(keys) - 1} more)" if len(keys) > 1 else ""
        found.append(Problem(keys[0], f"re-run gives {again.get(keys[0])!r}, the entry "
                             f"{mine.get(keys[0])!r}; {why}{more}"))
    if same_dense:
        return found
    for key in ("ac", "ac_int", "mac"):
        a, b = getattr(entry.counts, key), getattr(rerun.counts, key)
        if abs(a - b) > SPIKE_COUNTS_RTOL * max(abs(a), 1.0):
            found.append(Problem(f"counts.{key}", f"re-run gives {b:,.1f}, the entry {a:,.1f}: differs by more than "
                                 f"{SPIKE_COUNTS_RTOL:.0%} (the dense model was not bit-identical: another CPU?)"))
    return found


def rerun_problems(entry: Entry, protocols: ProtocolLookup, host: PluginHost, threads: int | None) -> list[Problem]:
    record = entry.record
    try:
        again = rerun_record(record, protocols, host, threads)
    except (UsageError, RunFailed) as exc:
        return [Problem("rerun", f"could not re-run: {exc}")]
    return compare(record, again, protocols.get(record.protocol.name).accuracy_tolerance)
