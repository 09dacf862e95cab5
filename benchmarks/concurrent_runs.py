"""Runs that share a machine: the fine-tune seconds of `stxbench run` started two at once with
the default threads, against two started at once with ``--threads 1``, one alone, and one beside
a numpy/BLAS job. The default must not collapse when two runs overlap (issue 23: two default runs
had not finished 5 fine-tune epochs after 17 minutes, where two one-thread runs took 22 and 32 s).

    python benchmarks/concurrent_runs.py                 # the default protocol, every scenario
    python benchmarks/concurrent_runs.py --scenarios default-pair one-thread-pair

Each run loads a dense model from a cache this script fills first (one per thread setting: the
dense cache key holds the threads), with a fresh kernel cache and dense epochs cut to 1 by
``--set`` (an unofficial run; the fine-tune stage is the protocol's own). Runs are real
``stxbench run`` processes; a scenario whose runs pass ``--limit`` seconds is stopped and printed
as such. Read the ratios: every scenario runs on the same machine in one sitting.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

#: scenario -> (how many stxbench runs at once, their --threads (None: the default), a BLAS job
#: beside, the environment it adds). "spinning" is the default before stxbench set
#: OMP_WAIT_POLICY=PASSIVE: an empty value leaves libgomp's own policy (spin, then sleep).
SCENARIOS: dict[str, tuple[int, int | None, bool, dict[str, str]]] = {
    "default-alone": (1, None, False, {}),
    "default-pair": (2, None, False, {}),
    "one-thread-pair": (2, 1, False, {}),
    "default-beside-blas": (1, None, True, {}),
    "spinning-default-pair": (2, None, False, {"OMP_WAIT_POLICY": ""}),
}

BLAS_JOB = """
import numpy as np, time
a = np.random.default_rng(0).standard_normal((1500, 1500))
end = time.time() + {seconds}
while time.time() < end:
    a = np.tanh(a @ a.T / 1500)
"""


def stxbench_run(out: Path, cache: Path, protocol: str, neuron: str, threads: int | None,
                 env: dict[str, str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "stxbench", "run", "--neuron", neuron, "--pruner", "l1p", "--backend", "torch",
           "--protocol", protocol, "--set", "train.epochs=1", "--out", str(out), "--cache-dir", str(cache),
           "--quiet", "--no-counts"]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    # its own process group: a run restarts itself under the CPU pin, and a stopped scenario must
    # stop that child too (killing the parent alone left it running, holding the pipe open)
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def finetune_seconds(out: Path) -> float:
    return json.loads((out / "result.json").read_text())["timing"]["finetune_s"]


def run_scenario(name: str, work: Path, protocol: str, env: dict[str, str], limit: float) -> list[str]:
    count, threads, blas, extra = SCENARIOS[name]
    env = {**env, **extra}
    beside = None
    if blas:
        beside = subprocess.Popen([sys.executable, "-c", BLAS_JOB.format(seconds=limit)], env=env)
    neurons = ["lif", "slif"]
    outs = [work / f"{name}-{i}" for i in range(count)]
    start = time.perf_counter()
    procs = [stxbench_run(out, work / "cache", protocol, neurons[i], threads, env) for i, out in enumerate(outs)]
    results = []
    for proc, out in zip(procs, outs):
        try:
            _, err = proc.communicate(timeout=max(1.0, limit - (time.perf_counter() - start)))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            results.append(f"> {limit:.0f} (stopped)")
            continue
        if proc.returncode != 0:
            results.append(f"failed: {err.strip().splitlines()[-1] if err.strip() else proc.returncode}")
        else:
            results.append(f"{finetune_seconds(out):.1f}")
    if beside is not None:
        beside.kill()
        beside.wait()
    return results


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--protocol", default="digits")
    p.add_argument("--scenarios", nargs="+", default=[s for s in SCENARIOS if not s.startswith("spinning")],
                   choices=list(SCENARIOS))
    p.add_argument("--limit", type=float, default=600.0, help="seconds after which a scenario is stopped")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="an environment variable for every run (to try a setting before making it a default)")
    args = p.parse_args()
    env = {**os.environ, **dict(kv.split("=", 1) for kv in args.env)}
    with tempfile.TemporaryDirectory(prefix="stxbench-concurrent-") as tmp:
        work = Path(tmp)
        env["HOME"] = str(work / "home")  # empty caches, as a new user has
        print(f"# cpus {os.cpu_count()}, load {os.getloadavg()[0]:.1f}; extra env {args.env or 'none'}", flush=True)
        # the dense models (and the kernels) each scenario loads, made once, one at a time
        for threads in sorted({SCENARIOS[s][1] or 0 for s in args.scenarios}):  # 0: the default
            for neuron in ("lif", "slif"):
                out = work / f"prepare-{threads}-{neuron}"
                proc = stxbench_run(out, work / "cache", args.protocol, neuron, threads or None, env)
                _, err = proc.communicate()
                if proc.returncode != 0:
                    print(f"preparing failed: {err.strip()}", file=sys.stderr)
                    return 1
        rows = []
        for name in args.scenarios:
            rows.append([name, *run_scenario(name, work, args.protocol, env, args.limit)])
            print(tabulate([rows[-1]]), flush=True)
    print()
    print(tabulate(rows, headers=["scenario", "fine-tune s (run 1)", "fine-tune s (run 2)"]))
    pair = {r[0]: r[1:] for r in rows}
    try:
        default = sum(map(float, pair["default-pair"])) / 2
        single = sum(map(float, pair["one-thread-pair"])) / 2
        print(f"\ndefault pair / one-thread pair: {default / single:.2f}x (target <= 1.5x)")
    except (KeyError, ValueError):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
