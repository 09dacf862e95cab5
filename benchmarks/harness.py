"""What the benchmark scripts share: interleaved timing, common options, a protocol's model, and
the torch backend's plain loop as a backend (``loop``; ``-p harness`` makes it a plugin).

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
from torch import nn

from stxbench.api import Backend, NeuronSite, NeuronSpec, Surrogate
from stxbench.data.splits import load_splits
from stxbench.host.plugin_host import PluginHost
from stxbench.host.hookspecs import hookimpl
from stxbench.run.processes import Execution
from stxbench.record.run_identity import RunIdentity
from stxbench.run.resolve import resolve
from stxbench.run.config import RunConfig
from stxbench.run.context import Run
from stxbench.run.config import RunOptions
from stxbench.run.training import NullReporter


#: what steps are timed with: wall time, or (``--cpu-time``) the process's CPU time, which a
#: loaded machine disturbs less and which equals wall time for one thread on a quiet one
CLOCK: Callable[[], float] = time.perf_counter


def interleaved_medians(steps: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds of each step over ``rounds`` rounds; every round times each step once."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = CLOCK()
            step()
            times[name].append(CLOCK() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def use_cpu_time(on: bool) -> None:
    global CLOCK
    CLOCK = time.process_time if on else time.perf_counter


def parser(description: str, rounds: int, quick_rounds: int, cpu_time: bool = False) -> argparse.ArgumentParser:
    """Options every script takes: --threads N, --rounds N, --quick; --cpu-time for the scripts
    that time with `interleaved_medians` (``cpu_time=True``)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--rounds", type=int, default=rounds, help=f"timed rounds (default {rounds})")
    p.add_argument("--quick", action="store_true", help=f"a short run: {quick_rounds} rounds, smaller work")
    if cpu_time:
        p.add_argument("--cpu-time", action="store_true",
                       help="time in process CPU time, not wall time (steadier on a loaded machine; one thread only)")
    p.set_defaults(quick_rounds=quick_rounds)
    return p


def setup(args: argparse.Namespace) -> int:
    """Apply --threads, quiet library deprecation noise; returns the rounds to run."""
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    use_cpu_time(getattr(args, "cpu_time", False))
    return args.quick_rounds if args.quick else args.rounds


def machine_line(args: argparse.Namespace) -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"torch {torch.__version__}, {platform.machine()}, {os.cpu_count()} cores, "
            f"{args.threads} thread(s), load {load:.2f} at start, {'CPU' if getattr(args, 'cpu_time', False) else 'wall'} time")


class PlainLoopBackend(Backend):
    """The torch backend's plain loop (`LIFFamilyNeuron`): today's eager reference, which the
    torch backend runs where its fused kernel does not."""

    name = "loop"
    summary = "the torch backend's plain loop"

    def make_neuron(self, spec: NeuronSpec, site: NeuronSite, surrogate: Surrogate) -> nn.Module:
        from stxbench_backend_torch import LIFFamilyNeuron

        self.check_neuron(spec, surrogate)
        return LIFFamilyNeuron(spec, site, surrogate)


@hookimpl
def stxbench_add_backends():
    """``stxbench -p harness run --backend loop`` (from this folder): the plain loop as a backend."""
    return [PlainLoopBackend()]


def protocol_run(
    backend: str | Backend = "torch",
    protocol: str = "digits",
    settings: list[str] | None = None,
    surrogate: Surrogate | None = None,
    cache_dir: Path | None = None,
    host: PluginHost | None = None,
    device: str = "cpu",
    data_root: str | None = None,
) -> tuple[RunConfig, Run]:
    """A resolved run of ``protocol`` (nothing trained yet), as `stxbench run` builds it;
    ``surrogate`` replaces the protocol's (SuperSpike runs on every backend). ``backend`` is a
    name, or a backend object of the benchmark's own (`PlainLoopBackend`)."""
    host = host or PluginHost(())
    if surrogate is not None:
        settings = [*(settings or []), f"model.surrogate={surrogate.name}",
                    f"model.surrogate_alpha={surrogate.alpha}"]
    config = resolve(
        host, protocol=protocol, neuron="lif", pruner="none", backend="torch" if isinstance(backend, Backend) else backend,
        seed=None, settings=settings or [], out_dir=Path("unused"),
        options=RunOptions(device=device, cache_dir=cache_dir, data_root=data_root),
    )
    splits = load_splits(config.protocol, host, data_root)
    backend = backend if isinstance(backend, Backend) else host.backend(backend)
    device = torch.device(config.device)
    run = Run(config, host, device, splits, backend, config.surrogate,
              NullReporter(), warn=lambda line: print(f"warning: {line}", file=sys.stderr),
              identity=RunIdentity.of_process(config, host, device, Execution(), backend))
    return config, run
