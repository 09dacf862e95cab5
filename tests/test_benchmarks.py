"""The benchmark scripts run (each on the smallest work it takes) and print their ratio tables.
Their timings are not asserted: targets are read off a quiet machine, never checked in tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run_benchmark(script: str, *args: str, cwd: Path) -> str:
    result = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], cwd=cwd,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.parametrize("script, args, expected", [
    ("neurons.py", ["--no-compile", "--rounds", "1", "--threads", "1", "--neurons", "lif",
                    "--backends", "torch", "--shapes", "2x4x64"], "torch"),
    ("train_step.py", ["--rounds", "1", "--backends", "torch", "--protocol", "{tiny}"], "speedup"),
    ("overhead.py", ["--rounds", "1", "--protocol", "{tiny}"], "bare loop"),
    ("pruned_inference.py", ["--rounds", "1", "--no-compile", "--protocol", "{tiny}"], "dsp svd 0.25"),
    ("counting.py", ["--repeats", "1", "--protocol", "{tiny}"], "ratio counted / plain"),
    ("sweep_executors.py", ["--rounds", "1", "--protocol", "{tiny}", "--neurons", "lif", "--seeds", "0"],
     "records identical (all but timing and creation time): 1/1"),
])
def test_benchmark_runs_and_prints_its_table(script, args, expected, tiny_protocol, tmp_path):
    args = [arg.format(tiny=tiny_protocol) for arg in args]
    out = run_benchmark(script, *args, cwd=tmp_path)
    assert expected in out
