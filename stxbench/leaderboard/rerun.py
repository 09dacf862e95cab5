"""``check --rerun``: run an entry again from scratch and compare.

A re-run trains the dense model again (a fresh, temporary cache) with the entry's seed, backend
and thread count on the CPU, then must reproduce the entry: accuracy within the protocol's
``accuracy_tolerance``, parameter counts exactly, and op counts exactly when the re-run trained
the very same dense model (its sha256 is the entry's: same CPU kind, same threads). On a CPU
whose kernels round differently, training drifts in the last bits and ends on other spikes: then
what spikes cannot change (MACs, dense ops, neuron updates, the layers and their kinds) must
still agree exactly, and the spike-driven totals (ACs, integer ACs) within `SPIKE_COUNTS_RTOL`.
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

#: Per-layer fields that follow the spikes (for AC and integer-AC layers).
_SPIKE_FIELDS = (".input_rate", ".effective_ops")


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


def compare_counts(entry: Record, rerun: Record) -> list[Problem]:
    mine = flatten(entry.counts.model_dump(mode="json"), "counts")
    again = flatten(rerun.counts.model_dump(mode="json"), "counts")
    same_dense = entry.provenance.checkpoint_sha256 == rerun.provenance.checkpoint_sha256
    spike_driven = set() if same_dense else {"counts.ac", "counts.ac_int"} | {
        key for key in mine if key.endswith(_SPIKE_FIELDS) and ":ac" in key  # ac and ac_int layers
    }
    keys = [key for key in differing(mine, again) if key not in spike_driven]
    found = []
    if keys:
        more = f" (+{len(keys) - 1} more)" if len(keys) > 1 else ""
        why = "counts must agree exactly" if same_dense else "spike-independent counts must agree exactly"
        found.append(Problem(keys[0], f"re-run gives {again.get(keys[0])!r}, the entry "
                             f"{mine.get(keys[0])!r}; {why}{more}"))
    if same_dense:
        return found
    for key in ("counts.ac", "counts.ac_int"):
        a, b = mine[key], again[key]
        if abs(a - b) > SPIKE_COUNTS_RTOL * max(abs(a), 1.0):
            found.append(Problem(key, f"re-run gives {b:,.1f}, the entry {a:,.1f}: differs by more than "
                                 f"{SPIKE_COUNTS_RTOL:.0%} (the dense model was not bit-identical: another CPU?)"))
    return found


def rerun_problems(entry: Entry, protocols: ProtocolLookup, host: PluginHost, threads: int | None) -> list[Problem]:
    record = entry.record
    try:
        again = rerun_record(record, protocols, host, threads)
    except (UsageError, RunFailed) as exc:
        return [Problem("rerun", f"could not re-run: {exc}")]
    return compare(record, again, protocols.get(record.protocol.name).accuracy_tolerance)
