"""``check --rerun``: run entries again from scratch and compare everything they claim.

Each re-run is a fresh process (``python -m stxbench.leaderboard.rerun``) with the entry's
configuration, seed, thread count and compile setting, and the CPU numerics its protocol pins
(`stxbench.run.cpu_pin`), so its libraries start exactly as an official run's did. Re-runs of one
check share one temporary dense cache: entries of the same seed (and backend) share their dense
model, which is trained again once, from scratch, here. Up to ``jobs`` re-runs run at a time;
the dense models are trained first, then every other re-run loads them.

How strictly a re-run is compared is decided by where it ran, never by a field of the entry:

* **on a CPU** everything the entry claims must come out bit for bit: correct images, dense and
  pruned accuracy, firing rates overall and per layer, sparsity, every matrix statistic,
  parameter counts, every op count and the energy, and the dense model's sha256. A protocol
  that pins CPU numerics gives the same bits on every x86 CPU kind (measured, see
  docs/leaderboard.md); without a pin, only on the same CPU kind, which the message says.
* **on a GPU** (``--rerun-device cuda``, for protocols that need one) kernels are not bit-stable
  across GPU models, so what spikes move is compared within the protocol's tolerances
  (``accuracy_tolerance`` in images, ``rerun_rtol`` for firing rates, spike-driven op counts
  and energy), and everything spikes cannot move (parameters, matrices, MACs, dense ops, the
  counted layers) exactly.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from stxbench.run.errors import RunFailed, UsageError
from stxbench.host.plugin_host import PluginHost
from stxbench.leaderboard.diff import flatten
from stxbench.leaderboard.problem import Problem
from stxbench.leaderboard.store import Entry, ProtocolLookup
from stxbench.run.protocol import Protocol
from stxbench.record.schema import Record, load_record
from stxbench.run.stages import RESULT_FILE

#: differing fields named one per line, per entry; the rest are summed up in one more line
SHOWN_FIELDS = 12
#: fields the comparison covers: what a record claims, and the protocol and configuration it
#: claims to have run (timing and provenance are about the machine and the moment, except the
#: dense model's hash)
CLAIMED = ("protocol", "config", "metrics", "counts", "energy", "energies")
CHECKPOINT = "provenance.checkpoint_sha256"


def can_rerun(entry: Entry, protocols: ProtocolLookup, host: PluginHost, device: str = "cpu") -> str | None:
    """Why this machine cannot re-run the entry, or None if it can."""
    record = entry.record
    try:
        protocol = protocols.get(record.protocol.name)
        if device == "cpu" and not protocol.cpu_cheap:
            return f"protocol {record.protocol.name} is not CPU-cheap (re-run it on a GPU with --rerun-device cuda)"
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


# -- comparison ---------------------------------------------------------------------------------


def claimed(record: Record) -> dict[str, Any]:
    """Every figure a record claims, flat: ``metrics.firing_rates.blocks.0.attn.q.neuron`` ..."""
    dumped = record.model_dump(mode="json", include=set(CLAIMED))
    flat = flatten({key: dumped.get(key) for key in CLAIMED})
    flat[CHECKPOINT] = record.provenance.checkpoint_sha256
    return flat


def _value(value: Any) -> str:
    return "(absent)" if value is _ABSENT else repr(value)


_ABSENT = object()


def _message(key: str, mine: Any, again: Any, entry: Record) -> str:
    if key == "metrics.correct" and mine is not _ABSENT and again is not _ABSENT:
        n = entry.metrics.test_samples
        return f"the re-run gets {again} of {n} test images right, the entry claims {mine}"
    if mine is _ABSENT:
        return f"the entry does not have it; the re-run gives {_value(again)}"
    if again is _ABSENT:
        return f"the entry claims {_value(mine)}, but the model has no such field (the re-run does not produce it)"
    return f"the re-run gives {_value(again)}, the entry claims {_value(mine)}"


def _ordered(keys: list[str]) -> list[str]:
    """Headline figures first (correct, accuracies, rates, sparsity), then the rest in order."""
    first = ["metrics.correct", "metrics.accuracy", "metrics.accuracy_dense", "metrics.accuracy_pruned",
             "metrics.firing_rate", "metrics.sparsity", "metrics.params_total", "metrics.params_effective",
             "counts.mac", "counts.ac", "counts.ac_int", "energy.mj_per_sample", CHECKPOINT]
    rank = {key: i for i, key in enumerate(first)}
    return [k for _, _, k in sorted((rank.get(k, len(first)), i, k) for i, k in enumerate(keys))]


def _report(keys: list[str], mine: dict, again: dict, entry: Record, why: str) -> list[Problem]:
    found = [Problem(key, f"{_message(key, mine.get(key, _ABSENT), again.get(key, _ABSENT), entry)}; {why}")
             for key in _ordered(keys)[:SHOWN_FIELDS]]
    if len(keys) > SHOWN_FIELDS:
        found.append(Problem("rerun", f"{len(keys) - SHOWN_FIELDS} more field(s) differ"))
    return found


def compare_exact(entry: Record, rerun: Record, pinned: bool) -> list[Problem]:
    """A CPU re-run: every claimed figure bit for bit."""
    mine, again = claimed(entry), claimed(rerun)
    keys = [k for k in list(mine) + [k for k in again if k not in mine]
            if mine.get(k, _ABSENT) != again.get(k, _ABSENT)]
    why = ("must reproduce exactly (the protocol pins CPU numerics)" if pinned else
           "must reproduce exactly on this CPU kind (the protocol pins no CPU numerics: an entry made "
           "on another CPU kind cannot be checked here)")
    return _report(keys, mine, again, entry, why)


@dataclasses.dataclass(frozen=True)
class Tolerances:
    """How far a GPU re-run may drift (from the protocol)."""

    accuracy: float  # accuracy_tolerance: a fraction of the test images
    rtol: float  # rerun_rtol: relative, for firing rates and spike-driven counts and energy

    @classmethod
    def of(cls, protocol: Protocol) -> Tolerances:
        return cls(protocol.accuracy_tolerance, protocol.rerun_rtol)


def _spike_driven(key: str) -> bool:
    """Figures that follow the spikes (and so drift with a GPU's rounding)."""
    if key.startswith("metrics.firing_rate") or key in ("counts.ac", "counts.ac_int", "energy.mj_per_sample"):
        return True
    if key in ("counts.mac",) or key.startswith("energies["):  # kinds and totals follow the spikes
        return True
    if key.startswith("counts.modules["):  # rows summed per module (`per_module`)
        return key.endswith((".effective", "_pairs", ".rated_nonzero", ".weight_nonzero_reads"))
    return key.startswith("counts.merge_options[")


def _pruning_driven(key: str) -> bool:
    """Figures a magnitude pruner decides from the trained weights: they drift with them."""
    return key in ("metrics.sparsity", "metrics.params_effective") or (
        key.startswith("metrics.matrices[") and key.endswith((".nonzero", ".sparsity")))


def compare_tolerant(entry: Record, rerun: Record, tol: Tolerances) -> list[Problem]:
    """A GPU re-run: accuracies within ``tol.accuracy``, spike- and pruning-driven figures within
    ``tol.rtol``, everything else exactly. The dense model's hash is not compared."""
    mine, again = per_module(claimed(entry)), per_module(claimed(rerun))
    n = entry.metrics.test_samples
    found = []
    for key in ("metrics.correct", "metrics.accuracy_dense", "metrics.accuracy_pruned"):
        a, b = mine[key], again[key]
        images = abs(a - b) if key == "metrics.correct" else abs(a - b) * n
        if images > tol.accuracy * n + 1e-9:
            found.append(Problem(key, f"{_message(key, a, b, entry)}: {images:.0f} test images apart, more than "
                                      f"the protocol's accuracy_tolerance {tol.accuracy} ({tol.accuracy * n:.1f} images)"))
    exact_keys = []
    for key in list(mine) + [k for k in again if k not in mine]:
        if key in ("metrics.correct", "metrics.accuracy", "metrics.accuracy_dense", "metrics.accuracy_pruned",
                   CHECKPOINT):
            continue
        a, b = mine.get(key, _ABSENT), again.get(key, _ABSENT)
        if a == b:
            continue
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b))
        if numbers and (_spike_driven(key) or _pruning_driven(key)):
            if not math.isclose(a, b, rel_tol=tol.rtol, abs_tol=1e-12):
                found.append(Problem(key, f"{_message(key, a, b, entry)}: differs by more than the protocol's "
                                          f"rerun_rtol {tol.rtol:.0%}"))
            continue
        exact_keys.append(key)
    return found + _report(exact_keys, mine, again, entry, "spikes cannot move it: must agree exactly")


def per_module(flat: dict[str, Any]) -> dict[str, Any]:
    """``flat`` with its counted rows summed per module. Operand kinds are decided per sample, so
    on a GPU a sample whose spikes change can move its products from one row (module, op, kind)
    to another, and rows appear or vanish; per module, the dense products and weight reads stay
    put (`counts.modules[M].layer_dense_ops` and the like, compared exactly) and what the rule charges follows the
    spikes (`counts.modules[M].effective`, within the tolerance)."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        row = _COUNTED_ROW.match(key)
        if row is None:
            out[key] = value
            continue
        module, field = row.group("module"), row.group("field")
        kind = _ROW_FIELDS.get(field)
        if kind is not None and isinstance(value, (int, float)):
            target = f"counts.modules[{module}].{kind}"
            out[target] = out.get(target, 0.0) + value
    return out


#: a counted row of a record, flattened: ``counts.layers[<module>:<op>:<kind>].<field>``
_COUNTED_ROW = re.compile(r"counts\.(?:layers|ops)\[(?P<module>[^:\]]+)[^\]]*\]\.(?P<field>\w+)$")
#: which per-module sum a row's field goes into (fields not listed are left out: input rates)
_ROW_FIELDS = {"dense_ops": "layer_dense_ops", "dense": "op_dense", "dense_padded": "op_dense_padded",
               "weight_reads": "weight_reads", "effective_ops": "effective", "nonzero_pairs": "nonzero_pairs",
               "value_pairs": "value_pairs", "driven_pairs": "driven_pairs", "rated_nonzero": "rated_nonzero",
               "weight_nonzero_reads": "weight_nonzero_reads"}


# -- running ------------------------------------------------------------------------------------


@dataclasses.dataclass
class Rerunner:
    """Re-runs entries in fresh processes, ``jobs`` at a time, sharing one dense cache."""

    protocols: ProtocolLookup
    plugins: tuple[str, ...] = ()
    threads: int | None = None  # None: each entry's own
    device: str = "cpu"
    jobs: int = 1
    #: seconds after which no re-run starts (None: no limit); what is left goes to `on_skip`
    budget_s: float | None = None
    commit: str | None = None  # orders the re-runs (`schedule`)
    on_start: Callable[[Entry], None] = lambda entry: None
    on_skip: Callable[[Entry], None] = lambda entry: None
    #: called as each re-run ends, with its problems (a receipt is written at once, so an
    #: interrupted check keeps what it verified)
    on_result: Callable[[Entry, list[Problem]], None] = lambda entry, problems: None

    def run(self, entries: list[Entry]) -> dict[Path, list[Problem]]:
        """Problems per re-run entry; entries left out by the budget are absent (`on_skip`)."""
        self._started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="stxbench-rerun-") as tmp:
            work = Path(tmp)
            number = {entry.path: i for i, entry in enumerate(entries)}
            results: dict[Path, list[Problem]] = {}
            waves = schedule(entries, self.commit, self.threads)
            for wave in waves:
                if self.jobs == 1:  # in this thread: in-process re-runs stop at Ctrl-C
                    found = [self.one(e, work, number[e.path]) for e in wave]
                else:  # threads that wait for re-run processes
                    with ThreadPoolExecutor(max_workers=self.jobs) as pool:
                        found = list(pool.map(lambda e: self.one(e, work, number[e.path]), wave))
                for entry, problems in zip(wave, found):
                    if problems is not None:
                        results[entry.path] = problems
            return results

    def command(self, entry: Entry, work: Path, number: int) -> tuple[list[str], dict[str, str], Path]:
        protocol = self.protocols.get(entry.record.protocol.name)
        out = work / f"run{number}"
        cmd = [sys.executable, "-m", "stxbench.leaderboard.rerun", str(entry.path),
               "--protocol", self.protocols.source(protocol.name), "--cache-dir", str(work / "cache"),
               "--out", str(out), "--device", self.device]
        if self.threads:
            cmd += ["--threads", str(self.threads)]
        for plugin in self.plugins:
            cmd += ["-p", plugin]
        env = dict(os.environ)
        if protocol.cpu_pin and self.device == "cpu":
            from stxbench.run import cpu_pin
            env.update(cpu_pin.PINS[protocol.cpu_pin].env())
        return cmd, env, out

    def in_process(self, protocol: Protocol) -> bool:
        """Re-run in this process: one at a time, and nothing the libraries must read at start.
        A fresh process costs seconds of imports; a pinned protocol needs one (`cpu_pin`)."""
        return self.jobs == 1 and self.device == "cpu" and protocol.cpu_pin is None

    def one(self, entry: Entry, work: Path, number: int) -> list[Problem] | None:
        if self.budget_s is not None and time.monotonic() - self._started >= self.budget_s:
            self.on_skip(entry)
            return None
        self.on_start(entry)
        problems = self._compare(entry, work, number)
        self.on_result(entry, problems)
        return problems

    def _compare(self, entry: Entry, work: Path, number: int) -> list[Problem]:
        protocol = self.protocols.get(entry.record.protocol.name)
        cmd, env, out = self.command(entry, work, number)
        if self.in_process(protocol):
            import torch

            threads = torch.get_num_threads()
            try:
                again = rerun_record(entry.path, self.protocols.source(protocol.name), work / "cache", out,
                                     self.device, self.threads, self.plugins)
            except (UsageError, RunFailed) as exc:
                return [Problem("rerun", f"could not re-run: {' '.join(str(exc).split())}")]
            finally:
                torch.set_num_threads(threads)
        else:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                lines = [line for line in done.stderr.splitlines() if line.strip()]
                return [Problem("rerun", f"could not re-run: {lines[-1] if lines else f'exit code {done.returncode}'}")]
            try:
                again = load_record(out / RESULT_FILE)
            except UsageError as exc:
                return [Problem("rerun", f"the re-run wrote no valid record: {exc}")]
        if self.device != "cpu":
            return compare_tolerant(entry.record, again, Tolerances.of(protocol))
        return compare_exact(entry.record, again, pinned=protocol.cpu_pin is not None)


def schedule(entries: list[Entry], commit: str | None, threads: int | None = None) -> list[list[Entry]]:
    """Two waves: one entry per dense model (protocol, seed, backend, threads), which trains it,
    then the rest, which load it; within a wave, first one entry per leaderboard row, then the
    others, each in an order drawn from ``commit``, so that which entries a time budget leaves
    out cannot be known before the commit being checked exists."""

    def draw(entry: Entry) -> str:
        return hashlib.sha256(f"{commit or ''}:{entry.path.name}".encode()).hexdigest()

    def row(entry: Entry) -> tuple:
        c = entry.record.config
        return entry.record.protocol.name, c.neuron, c.pruner, repr(sorted(c.pruner_params.items())), c.backend

    groups: dict[tuple, list[Entry]] = {}
    for entry in sorted(entries, key=draw):
        c, p = entry.record.config, entry.record.provenance
        groups.setdefault((entry.record.protocol.name, c.seed, c.backend, threads or p.threads), []).append(entry)
    first = [group[0] for group in groups.values()]
    covered = {row(entry) for entry in first}
    rest, later = [], []
    for entry in sorted((e for group in groups.values() for e in group[1:]), key=draw):
        (later if row(entry) in covered else rest).append(entry)
        covered.add(row(entry))
    return [first, rest + later]


# -- the re-run process -------------------------------------------------------------------------


def rerun_record(entry_path: Path, protocol_source: str, cache_dir: Path, out_dir: Path, device: str,
                 threads: int | None, plugins: tuple[str, ...]) -> Record:
    """Run the entry's configuration again (what the re-run process does)."""
    from stxbench.run.resolve import resolve, resolve_pruner_params
    from stxbench.run.stages import execute
    from stxbench.run.config import RunOptions

    record = load_record(entry_path)
    c, p = record.config, record.provenance
    host = PluginHost(plugins)
    compiled = p.execution is not None and p.execution.compile is not None
    options = RunOptions(device=device, cache_dir=cache_dir, threads=threads or p.threads, compile=compiled,
                         precision=p.execution.precision if p.execution else "auto")
    config = resolve(host, protocol=protocol_source, neuron=c.neuron, pruner=c.pruner, backend=c.backend,
                     seed=c.seed, settings=[], out_dir=out_dir, options=options, plugins=plugins,
                     baseline=c.baseline)
    if c.baseline is None:
        params = resolve_pruner_params(host, config.protocol, c.pruner, c.pruner_params)
        config = dataclasses.replace(config, pruner_params=params)
    return execute(config, host, warn=lambda line: None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stxbench.leaderboard.rerun",
                                     description="Re-run one leaderboard entry (used by `leaderboard check --rerun`).")
    parser.add_argument("entry", type=Path)
    parser.add_argument("--protocol", required=True)
    parser.add_argument("--cache-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int)
    parser.add_argument("-p", dest="plugins", action="append", default=[])
    args = parser.parse_args(argv)
    if "" not in sys.path:
        sys.path.insert(0, "")  # -p modules from the current folder, as the CLI finds them
    started = time.perf_counter()
    try:
        rerun_record(args.entry, args.protocol, args.cache_dir, args.out, args.device, args.threads,
                     tuple(args.plugins))
    except UsageError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        sys.exit(2)
    except RunFailed as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        sys.exit(1)
    print(f"re-ran {args.entry.name} in {time.perf_counter() - started:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
