"""The headline command, whole, per backend: ``stxbench run --neuron slif --pruner dsp`` on the
torch backend (its fused kernel), on spikingjelly, and on the torch backend's plain loop (today's
eager reference, the ``loop`` backend of this folder's ``harness`` plugin).

    python benchmarks/headline.py                       # digits, one thread, 2 timed rounds
    python benchmarks/headline.py --rounds 3 --backends torch spikingjelly

Each run is a fresh ``python -m stxbench run`` process, as a user runs it, with a fresh dense
cache (so every run trains its dense model) and a shared, warm kernel cache: a first untimed
round compiles what each backend compiles. Rounds alternate the backends, so machine load hits
them alike. Printed: the median wall time and CPU time (the run's process and its children) of
the whole command per backend, their ratios to the torch backend's, and the record's stage times
(dense, fine-tune, evaluation) and compilation of the last round. ``spikingjelly:eager`` is
spikingjelly with ``--no-compile``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

HERE = Path(__file__).resolve().parent


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(variant: str, protocol: str, threads: int, folder: Path, kernels: Path) -> tuple[float, float, dict]:
    """(wall s, CPU s, record) of one run; ``variant`` is a backend name, ``NAME:eager`` for
    ``--no-compile`` or ``NAME:compiled`` for ``--compile``."""
    backend, _, mode = variant.partition(":")
    out, cache = folder / "run", folder / "cache"
    command = [sys.executable, "-m", "stxbench", *(["-p", "harness"] if backend == "loop" else []), "run",
               "--protocol", protocol, "--neuron", "slif", "--pruner", "dsp", "--backend", backend,
               "--threads", str(threads), "--out", str(out), "--cache-dir", str(cache), "-q",
               *({"eager": ["--no-compile"], "compiled": ["--compile"]}.get(mode, []))]
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(kernels),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))}
    start, cpu = time.perf_counter(), children_cpu()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds, cpu = time.perf_counter() - start, children_cpu() - cpu
    if result.returncode != 0:
        sys.exit(f"{variant}: stxbench run failed: {result.stderr.strip()[-500:]}")
    record = json.loads((out / "result.json").read_text())
    return seconds, cpu, record


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--protocol", default="digits")
    p.add_argument("--backends", nargs="+", default=["torch", "spikingjelly", "spikingjelly:eager", "loop"],
                   help="backends; NAME:eager adds --no-compile, NAME:compiled --compile")
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
        cpu: dict[str, list[float]] = {b: [] for b in args.backends}
        records: dict[str, dict] = {}
        for round_ in range(args.rounds + 1):
            for variant in args.backends:
                seconds, cpu_s, records[variant] = run_once(variant, args.protocol, args.threads,
                                                            root / f"{variant.replace(':', '-')}-{round_}", kernels)
                if round_:
                    times[variant].append(seconds)
                    cpu[variant].append(cpu_s)
                print(f"  round {round_}{' (warm-up)' if not round_ else ''}: {variant} {seconds:.1f} s, "
                      f"CPU {cpu_s:.1f} s", flush=True)
    reference, reference_cpu = statistics.median(times["torch"]), statistics.median(cpu["torch"])
    rows = []
    for variant in args.backends:
        timing, compiled = records[variant]["timing"], records[variant]["provenance"]["execution"]["compile"]
        median, median_cpu = statistics.median(times[variant]), statistics.median(cpu[variant])
        rows.append([variant, f"{median:.1f}", f"{median / reference:.2f}", f"{median_cpu:.1f}",
                     f"{median_cpu / reference_cpu:.2f}", f"{timing['dense_s']:.1f}", f"{timing['finetune_s']:.1f}",
                     f"{timing['eval_s']:.2f}", f"{compiled['compile_s']:.1f} s, {compiled['graphs']} graphs" if compiled else "no",
                     f"{records[variant]['metrics']['accuracy']:.4f}"])
    print(f"stxbench run --protocol {args.protocol} --neuron slif --pruner dsp --threads {args.threads}; "
          f"{args.rounds} timed rounds; load {load:.2f} at start")
    print(tabulate(rows, headers=["variant", "wall s", "vs torch", "CPU s", "vs torch", "dense s", "finetune s",
                                  "eval s", "--compile", "accuracy"], disable_numparse=True))
    print("wall and CPU s: medians of the whole command; dense/finetune/eval s: the last round's record")


if __name__ == "__main__":
    main()
