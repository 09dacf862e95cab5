"""A sweep grid run by ``--executor local --jobs 2`` and by ``--executor serial``, side by side:
the wall time of each, their ratio, and whether the records are identical.

Each variant is the CLI as a user runs it (``python -m stxbench sweep ...``, a fresh process,
a fresh output folder and dense cache, ``--threads 1`` per run), so both train their dense models
and pay the same start-up. Rounds alternate which variant goes first; read the median ratio.

    python benchmarks/sweep_executors.py                       # digits, lif,plif,slif x seeds 0,1
    python benchmarks/sweep_executors.py --protocol tiny.toml --neurons lif --seeds 0 --rounds 1
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

from harness import machine_line, parser


def cpu_seconds() -> float:
    """User + system seconds of this process's finished children (and theirs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def sweep(protocol: str, settings: list[str], neurons: str, seeds: str, threads: int, out: Path,
          extra: list[str]) -> tuple[float, float]:
    """One sweep through the CLI in its own process; returns its wall and CPU seconds."""
    command = [sys.executable, "-m", "stxbench", "sweep", "--protocol", protocol, "--neuron", neurons,
               "--seeds", seeds, "--device", "cpu", "--threads", str(threads), "--out", str(out / "runs"),
               "--cache-dir", str(out / "cache"), "-q", *[a for s in settings for a in ("--set", s)], *extra]
    start, cpu = time.perf_counter(), cpu_seconds()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"sweep failed ({' '.join(extra) or 'serial'}): {done.stderr.strip()[-2000:]}")
    return seconds, cpu_seconds() - cpu


def comparable(path: Path) -> dict:
    """A record without what two identical runs may differ in: timing and creation time."""
    data = json.loads(path.read_text())
    data.pop("timing")
    data["provenance"].pop("created")
    return data


def records(out: Path) -> dict[str, dict]:
    return {p.parent.name: comparable(p) for p in sorted((out / "runs").glob("*/*/result.json"))}


def main() -> int:
    p = parser(__doc__.splitlines()[0], rounds=1, quick_rounds=1)
    p.add_argument("--protocol", default="digits", help="protocol name or .toml path (default digits)")
    p.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                   help="protocol override, as for stxbench sweep (repeatable)")
    p.add_argument("--neurons", default="lif,plif,slif", help="comma-separated neurons (default lif,plif,slif)")
    p.add_argument("--seeds", default="0,1", help="comma-separated seeds (default 0,1)")
    p.add_argument("--jobs", type=int, default=2, help="worker processes of the local executor (default 2)")
    args = p.parse_args()
    rounds = args.quick_rounds if args.quick else args.rounds
    variants = {"serial": [], f"local --jobs {args.jobs}": ["--executor", "local", "--jobs", str(args.jobs)]}
    grid = len(args.neurons.split(",")) * len(args.seeds.split(","))
    print(machine_line(args))
    print(f"grid: {args.protocol} {' '.join(args.settings)}, neurons {args.neurons} x seeds {args.seeds} "
          f"= {grid} runs, --threads {args.threads} per run, {rounds} round(s)\n")
    times: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    identical, compared = 0, 0
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            order = list(variants) if r % 2 == 0 else list(reversed(variants))
            outs = {}
            for name in order:
                outs[name] = Path(tmp) / f"r{r}-{name.split()[0]}"
                wall, used = sweep(args.protocol, args.settings, args.neurons, args.seeds, args.threads,
                                   outs[name], variants[name])
                times[name].append(wall)
                cpu[name].append(used)
            serial, local = (records(outs[name]) for name in variants)
            if len(serial) != grid or set(serial) != set(local):
                sys.exit(f"round {r}: the variants wrote {len(serial)} and {len(local)} records, not {grid}")
            compared += grid
            identical += sum(serial[label] == local[label] for label in serial)
    medians = {name: statistics.median(values) for name, values in times.items()}
    serial_s, local_s = medians.values()
    rows = [[name, " ".join(f"{t:.1f}" for t in times[name]), f"{medians[name]:.1f}",
             f"{statistics.median(cpu[name]):.1f}", f"{statistics.median(c / t for c, t in zip(cpu[name], times[name])):.2f}"]
            for name in variants]
    print(tabulate(rows, headers=["executor", "wall s per round", "median wall s", "median CPU s", "cores busy"]))
    print(f"\nratio serial / local: {serial_s / local_s:.2f}x (above 1: local is faster)")
    print("(cores busy = CPU s / wall s: what the machine gave each variant; on a machine shared with "
          "other sessions, Linux's autogroup scheduling gives a session one share however many processes it runs)")
    print(f"records identical (all but timing and creation time): {identical}/{compared}")
    return 0 if identical == compared else 1


if __name__ == "__main__":
    sys.exit(main())
