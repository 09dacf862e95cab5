"""Real result records for the leaderboard tests: the CLI run on the tiny protocol, once per
session (the `tiny_runs` fixture in conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from conftest import TINY_PROTOCOL, run_cli

from stxbench.energy import cost_model
from stxbench.record import Counts, Energy, LayerCount, Record, load_record, write_record


def with_counts(record: Record) -> Record:
    """The record itself if its run counted ops. Until every run does (the op counter is being
    built on another branch), give it counts derived from its own measured metrics -- per
    ST-block matrix, nonzero weights x the overall firing rate as ACs, the head as MACs, the
    attention product as integer ACs -- and the energy its protocol's cost table gives them.
    Equal runs get equal counts and a different run gets different ones, which is all that the
    leaderboard checks need; no test asserts these values as real op counts."""
    if record.counts is not None:
        return record
    m = record.metrics
    layers = [
        LayerCount(module=mat.name, op="mm", kind="ac", input_rate=m.firing_rate,
                   dense_ops=float(mat.dense), effective_ops=mat.nonzero * m.firing_rate)
        for mat in m.matrices
    ]
    layers.append(LayerCount(module="head", op="addmm", kind="mac", input_rate=None,
                             dense_ops=float(m.params_total), effective_ops=float(m.params_total)))
    layers.append(LayerCount(module="blocks.0.attn.av", op="bmm", kind="ac_int", input_rate=m.firing_rate,
                             dense_ops=1000.0, effective_ops=1000.0 * m.firing_rate))
    totals = {kind: sum(layer.effective_ops for layer in layers if layer.kind == kind)
              for kind in ("mac", "ac", "ac_int")}
    counts = Counts(samples=m.test_samples, neuron_updates=1000.0, layers=layers, **totals)
    table = cost_model("horowitz45-fp32-v1")
    energy = Energy(model_id=table.id, e_mac_pj=table.e_mac_pj, e_ac_pj=table.e_ac_pj,
                    mj_per_sample=table.mj(counts.mac, counts.ac, counts.ac_int))
    return record.model_copy(update={"counts": counts, "energy": energy})


def at_seed(record: Record, seed: int, correct: int) -> Record:
    """The record's configuration at another seed, built in code rather than run (saves a
    dense training per test session): another accuracy, firing rate and so counts. For tests
    that need several seeds of a row; never re-run, never a real leaderboard entry."""
    m = record.metrics
    metrics = m.model_copy(update={"correct": correct, "accuracy": correct / m.test_samples,
                                   "firing_rate": m.firing_rate * 1.25})
    config = record.config.model_copy(update={"seed": seed})
    return with_counts(record.model_copy(update={"config": config, "metrics": metrics,
                                                 "counts": None, "energy": None}))


@dataclass(frozen=True)
class TinyRuns:
    protocol_dir: Path  # holds tiny.toml, for --protocol-dir
    #: official and counted: "lif-s0" and "plif-s0" (run), "lif-s1" (`at_seed`); "unofficial" (run)
    records: dict[str, Path]
    uncounted: Path  # "lif-s0" as the run wrote it (without counts until runs count ops)


def make_tiny_runs(root: Path) -> TinyRuns:
    protocol_dir = root / "protocols"
    protocol_dir.mkdir()
    (protocol_dir / "tiny.toml").write_text(TINY_PROTOCOL.format(dense_epochs=2))
    runs = {
        "lif-s0": ["--neuron", "lif", "--seed", "0"],
        "plif-s0": ["--neuron", "plif", "--seed", "0"],
        "unofficial": ["--neuron", "lif", "--seed", "0", "--set", "finetune.epochs=0"],
    }
    records = {}
    for name, args in runs.items():
        out = root / "runs" / name
        result = run_cli("run", "--protocol", str(protocol_dir / "tiny.toml"), "--out", str(out),
                         "--cache-dir", str(root / "cache"), "-q", *args)
        assert result.code == 0, result.stderr
        records[name] = root / "counted" / name / "result.json"
        write_record(with_counts(load_record(out / "result.json")), records[name])
    lif = load_record(records["lif-s0"])
    records["lif-s1"] = root / "counted" / "lif-s1" / "result.json"
    write_record(at_seed(lif, 1, lif.metrics.correct + 18), records["lif-s1"])
    return TinyRuns(protocol_dir, records, root / "runs" / "lif-s0" / "result.json")
