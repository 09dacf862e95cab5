"""Real result records for the leaderboard tests: the CLI run on the tiny protocol, once per
session (the `tiny_runs` fixture in conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from conftest import TINY_PROTOCOL, run_cli

from stxbench.record.schema import Record, load_record, write_record


def at_seed(record: Record, seed: int, correct: int) -> Record:
    """The record's configuration at another seed, built in code rather than run (saves a
    dense training per test session): another accuracy and firing rate, the same op counts.
    For tests that need several seeds of a row; never re-run, never a real leaderboard entry."""
    m = record.metrics
    metrics = m.model_copy(update={"correct": correct, "accuracy": correct / m.test_samples,
                                   "firing_rate": m.firing_rate * 1.25})
    config = record.config.model_copy(update={"seed": seed})
    return record.model_copy(update={"config": config, "metrics": metrics})


@dataclass(frozen=True)
class TinyRuns:
    protocol_dir: Path  # holds tiny.toml, for --protocol-dir
    #: official: "lif-s0" and "plif-s0" (run), "lif-s1" (`at_seed`); "unofficial" (run)
    records: dict[str, Path]
    uncounted: Path  # "lif-s0" run with --no-counts


def make_tiny_runs(root: Path) -> TinyRuns:
    protocol_dir = root / "protocols"
    protocol_dir.mkdir()
    (protocol_dir / "tiny.toml").write_text(TINY_PROTOCOL.format(dense_epochs=2))
    runs = {
        "lif-s0": ["--neuron", "lif", "--seed", "0"],
        "plif-s0": ["--neuron", "plif", "--seed", "0"],
        "unofficial": ["--neuron", "lif", "--seed", "0", "--set", "finetune.epochs=0"],
        "uncounted": ["--neuron", "lif", "--seed", "0", "--no-counts"],
    }
    records = {}
    for name, args in runs.items():
        out = root / "runs" / name
        result = run_cli("run", "--protocol", str(protocol_dir / "tiny.toml"), "--out", str(out),
                         "--cache-dir", str(root / "cache"), "-q", *args)
        assert result.code == 0, result.stderr
        records[name] = out / "result.json"
    uncounted = records.pop("uncounted")
    lif = load_record(records["lif-s0"])
    records["lif-s1"] = root / "built" / "lif-s1" / "result.json"
    write_record(at_seed(lif, 1, lif.metrics.correct + 18), records["lif-s1"])
    return TinyRuns(protocol_dir, records, uncounted)
