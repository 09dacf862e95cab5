"""The headline command, whole, per backend: ``stxbench run --neuron slif --pruner dsp`` on the
torch backend (its fused kernel), on spikingjelly, and on the torch backend's plain loop (today's
eager reference, the ``loop`` backend of this folder's ``harness`` plugin).

    python benchmarks/headline.py                       # digits, one thread, 2 timed rounds
    python benchmarks/headline.py --rounds 3 --backends torch spikingjelly

Each run is a fresh ``python -m stxbench run`` process, as a user runs it, with a fresh dense
cache (so every run trains its dense model) and a shared, warm kernel cache: a first untimed
round compiles what each backend compiles. Rounds alternate the backends, so machine load hits
them alike. Printed: the median wall time of the whole command per backend, its ratio to the
torch backend's, and the record's stage times (dense, fine-tune, evaluation) of the last round.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

HERE = Path(__file__).resolve().parent


def run_once(backend: str, protocol: str, threads: int, folder: Path, kernels: Path) -> tuple[float, dict]:
    out, cache = folder / "run", folder / "cache"
    command = [sys.executable, "-m", "stxbench", *(["-p", "harness"] if backend == "loop" else []), "run",
               "--protocol", protocol, "--neuron", "slif", "--pruner", "dsp", "--backend", backend,
               "--threads", str(threads), "--out", str(out), "--cache-dir", str(cache), "-q"]
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(kernels),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{backend}: stxbench run failed: {result.stderr.strip()[-500:]}")
    record = json.loads((out / "result.json").read_text())
    return seconds, record


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--protocol", default="digits")
    p.add_argument("--backends", nargs="+", default=["torch", "spikingjelly", "loop"])
    p.add_argument("--rounds", type=int, default=2, help="timed rounds (after one untimed warm-up round)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    if "torch" not in args.backends:
        sys.exit("--backends must include torch (the ratios are to it)")
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="stxbench-headline-") as tmp:
        root = Path(tmp)
        kernels = Path(os.environ.get("TORCHINDUCTOR_CACHE_DIR", root / "kernels"))
        times: dict[str, list[float]] = {b: [] for b in args.backends}
        records: dict[str, dict] = {}
        for round_ in range(args.rounds + 1):
            for backend in args.backends:
                seconds, records[backend] = run_once(backend, args.protocol, args.threads,
                                                     root / f"{backend}-{round_}", kernels)
                if round_:
                    times[backend].append(seconds)
                print(f"  round {round_}{' (warm-up)' if not round_ else ''}: {backend} {seconds:.1f} s", flush=True)
    reference = statistics.median(times["torch"])
    rows = []
    for backend in args.backends:
        timing, compiled = records[backend]["timing"], records[backend]["provenance"]["execution"]["compile"]
        median = statistics.median(times[backend])
        rows.append([backend, f"{median:.1f}", f"{median / reference:.2f}", f"{timing['dense_s']:.1f}",
                     f"{timing['finetune_s']:.1f}", f"{timing['eval_s']:.2f}",
                     "yes" if compiled else "no", f"{records[backend]['metrics']['accuracy']:.4f}"])
    print(f"stxbench run --protocol {args.protocol} --neuron slif --pruner dsp --threads {args.threads}; "
          f"{args.rounds} timed rounds; load {load:.2f} at start")
    print(tabulate(rows, headers=["backend", "run s (median)", "vs torch", "dense s", "finetune s", "eval s",
                                  "--compile", "accuracy"], disable_numparse=True))


if __name__ == "__main__":
    main()
