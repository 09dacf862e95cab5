"""The benchmark scripts run (each on the smallest work it takes) and print their ratio tables.
Their timings are not asserted: targets are read off a quiet machine, never checked in tests."""

from __future__ import annotations

import os
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
                    "--backends", "torch", "--shapes", "2x4x64"], "saved for the backward (MB)"),
    ("train_step.py", ["--rounds", "1", "--no-compile", "--backends", "torch", "--protocol", "{tiny}"], "peak MB"),
    ("headline.py", ["--rounds", "1", "--backends", "torch", "loop", "--protocol", "{tiny}"], "vs torch"),
    ("kernel_check.py", ["--neurons", "lif", "--surrogates", "atan"], "PASS"),
    ("overhead.py", ["--rounds", "1", "--protocol", "{tiny}"], "bare loop"),
    ("pruned_inference.py", ["--rounds", "1", "--no-compile", "--protocol", "{tiny}"], "dsp svd 0.25"),
    ("counting.py", ["--repeats", "1", "--protocol", "{tiny}"], "ratio counted / plain"),
])
def test_benchmark_runs_and_prints_its_table(script, args, expected, tiny_protocol, tmp_path):
    args = [arg.format(tiny=tiny_protocol) for arg in args]
    out = run_benchmark(script, *args, cwd=tmp_path)
    assert expected in out


def test_gpu_script_dry_run_writes_a_valid_record(tmp_path):
    """benchmarks/gpu.sh on the CPU, tiny: every step it takes on a GPU runs (kernel check, neuron
    layer, Spikformer step on fabricated CIFAR files, an end-to-end run whose record is checked)."""
    result = subprocess.run(["bash", str(BENCHMARKS / "gpu.sh"), "--dry-run", str(tmp_path / "out")], cwd=tmp_path,
                            capture_output=True, text=True, timeout=900, env={**os.environ, "PYTHON": sys.executable})
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-2000:])
    out = result.stdout
    for line in ("lif       atan         0", "saved for the backward (MB)", "eval speedup",
                 "valid record: cifar10-spikformer-4-384 (unofficial), slif+dsp on torch, device cpu"):
        assert line in out, line
    assert (tmp_path / "out" / "run" / "result.json").is_file()
