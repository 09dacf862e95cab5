"""The benchmark scripts run (each on the smallest work it takes) and print their ratio tables.
Their timings are not asserted: targets are read off a quiet machine, never checked in tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

pytestmark = pytest.mark.e2e  # every test runs a benchmark script in a fresh process


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
    ("cpu_determinism.py", ["--speed", "--rounds", "1", "--steps", "1", "--protocol", "{tiny}",
                            "--variants", "native"], "ms per step"),
    ("sweep_executors.py", ["--rounds", "1", "--protocol", "{tiny}", "--neurons", "lif", "--seeds", "0"],
     "records identical (all but timing and creation time): 1/1"),
])
def test_benchmark_runs_and_prints_its_table(script, args, expected, tiny_protocol, tmp_path):
    args = [arg.format(tiny=tiny_protocol) for arg in args]
    out = run_benchmark(script, *args, cwd=tmp_path)
    assert expected in out


def test_energy_conventions_table_from_records(tiny_runs, tmp_path):
    paths = [str(path) for name, path in tiny_runs.records.items() if name != "unofficial"]
    out = run_benchmark("energy_conventions.py", *paths, cwd=tmp_path)
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("| model"))
    for column in ("stxbench compute", "spikingjelly compute", "neurobench compute",
                   "memory simple-fp32-v1", "memory simple-fp32-nz-v1", "spikingjelly + memory simple-fp32-v1"):
        assert column in header
    rows = [line for line in lines if line.startswith("| lif /") or line.startswith("| plif /")]
    assert [row.split(" | ")[1] for row in rows] == ["2", "1"]  # lif: seeds 0 and 1 in one row
    assert "(1.00x)" in rows[0]  # the dense lif row is the reference
    assert any(line.startswith("Ranking by stxbench compute") for line in lines)


def test_the_cpu_pin_gives_one_record_on_emulated_cpu_kinds(tiny_protocol, tmp_path):
    """benchmarks/cpu_determinism.py: the same run under the portable-v1 pin on this CPU and on
    an emulated AVX2-only CPU claims the same figures, bit for bit (docs/leaderboard.md)."""
    out = run_benchmark("cpu_determinism.py", "--protocol", str(tiny_protocol), "--variants",
                        "pin-portable@native", "pin-portable@avx2-machine", cwd=tmp_path)
    # per row: the dense model's sha256 and one over every metric, count and energy figure
    hashes = [[t for t in line.split() if re.fullmatch("[0-9a-f]{10}", t)]
              for line in out.splitlines() if line.startswith("pin-portable@")]
    assert len(hashes) == 2 and len(hashes[0]) == 2
    assert hashes[0] == hashes[1]


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
