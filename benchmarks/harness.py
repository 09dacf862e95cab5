"""What the benchmark scripts share: interleaved timing, common options, a protocol's model.

Timings on a shared machine drift with the load, so every script times its variants
round-robin in one process (each round runs every variant once) and compares medians: a load
change then hits all variants alike, and the ratios are what to read.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from stxbench.api import Surrogate
from stxbench.host import PluginHost
from stxbench.runconfig import RunConfig, resolve
from stxbench.runner import Run
from stxbench.runoptions import RunOptions
from stxbench.training import NullReporter


def interleaved_medians(steps: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds of each step over ``rounds`` rounds; every round times each step once."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def parser(description: str, rounds: int, quick_rounds: int) -> argparse.ArgumentParser:
    """Options every script takes: --threads N, --rounds N, --quick."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--rounds", type=int, default=rounds, help=f"timed rounds (default {rounds})")
    p.add_argument("--quick", action="store_true", help=f"a short run: {quick_rounds} rounds, smaller work")
    p.set_defaults(quick_rounds=quick_rounds)
    return p


def setup(args: argparse.Namespace) -> int:
    """Apply --threads, quiet library deprecation noise; returns the rounds to run."""
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    return args.quick_rounds if args.quick else args.rounds


def machine_line(args: argparse.Namespace) -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"torch {torch.__version__}, {platform.machine()}, {os.cpu_count()} cores, "
            f"{args.threads} thread(s), load {load:.2f} at start")


def protocol_run(
    backend: str = "torch",
    protocol: str = "digits",
    settings: list[str] | None = None,
    surrogate: Surrogate | None = None,
    cache_dir: Path | None = None,
    host: PluginHost | None = None,
) -> tuple[RunConfig, Run]:
    """A resolved run of ``protocol`` on the CPU (nothing trained yet), as `stxbench run`
    builds it; ``surrogate`` replaces the protocol's (SuperSpike runs on every backend)."""
    host = host or PluginHost(())
    if surrogate is not None:
        settings = [*(settings or []), f"model.surrogate={surrogate.name}",
                    f"model.surrogate_alpha={surrogate.alpha}"]
    config = resolve(
        host, protocol=protocol, neuron="lif", pruner="none", backend=backend, seed=None,
        settings=settings or [], out_dir=Path("unused"), options=RunOptions(device="cpu", cache_dir=cache_dir),
    )
    splits = host.dataset(config.protocol.data.dataset).load(None)
    run = Run(config, host, torch.device("cpu"), splits, host.backend(backend), config.surrogate,
              NullReporter(), warn=lambda line: print(f"warning: {line}", file=sys.stderr))
    return config, run
