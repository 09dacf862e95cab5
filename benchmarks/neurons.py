"""Speed of one neuron layer on every installed backend, as ratios to the torch reference.

For LIF, PLIF and sLIF at [T, B, N] = [4, 64, 24576] and [4, 64, 4096], forward (no grad) and
forward+backward, eager and with ``torch.compile``: each backend is timed side by side with the
torch reference, round-robin in one process (so machine load hits all of them alike), and the
table gives the reference's median time and every backend's median as a ratio to it (slower is
> 1). An ``x`` after a ratio marks forward spikes that differ from the eager reference's. A
second table gives each backend's compiled speedup (eager / compiled median), with eager and
compiled timed in the same rounds.

    python benchmarks/neurons.py                  # one thread and two, 10 rounds
    python benchmarks/neurons.py --threads 1 --quick
    python benchmarks/neurons.py --no-compile --neurons lif --shapes 4x64x4096

Compilation costs seconds per backend, shape and pass; ``TORCHINDUCTOR_CACHE_DIR`` keeps kernels
between runs. The surrogate is SuperSpike (alpha 1), the one every backend has.
"""

from __future__ import annotations

import argparse
import warnings

import torch
from harness import interleaved_medians
from tabulate import tabulate

from stxbench.api import NeuronSite, NeuronSpec, Surrogate
from stxbench.host import PluginHost

SHAPES = ("4x64x24576", "4x64x4096")
SURROGATE = Surrogate("superspike")
#: sLIF as its plugin defines it, used when that plugin is not installed
SLIF = NeuronSpec("slif", "per-channel decay and threshold", decay="channel", threshold="channel")


def neuron_specs(host: PluginHost, names: list[str]) -> list[NeuronSpec]:
    known = set(host.names("neuron"))
    return [host.neuron(n) if n in known or n != "slif" else SLIF for n in names]


def make_step(module, x: torch.Tensor, backward: bool):
    if not backward:
        def forward_only():
            with torch.no_grad():
                return module(x)
        return forward_only

    def forward_backward():
        xin = x.detach().requires_grad_(True)
        spikes = module(xin)
        spikes.sum().backward()
        for p in module.parameters():
            p.grad = None
        return spikes.detach()
    return forward_backward


def bench_config(backends, spec, shape, modes: list[bool], backward: bool, rounds: int):
    """Median seconds per (backend, compiled) for one config, every variant timed round-robin
    in the same rounds (so eager and compiled are compared side by side)."""
    site = NeuronSite("bench", channels=shape[-1], channel_dim=-1)
    if True in modes:
        # dynamo compiles one forward code object at most 8 times and then silently runs it
        # eager: start every config afresh so each backend is really compiled
        torch._dynamo.reset()
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 1.5 + 0.5
    reference_spikes = make_step(backends[0].make_neuron(spec, site, SURROGATE), x, False)()
    steps, same = {}, {}
    for backend in backends:
        for compiled in modes:
            module = backend.make_neuron(spec, site, SURROGATE)
            if compiled:
                module = torch.compile(module)
            step = make_step(module, x, backward)
            spikes = step()  # warm-up (and compilation)
            step()
            same[(backend.name, compiled)] = torch.equal(spikes, reference_spikes)
            steps[(backend.name, compiled)] = step
    return interleaved_medians(steps, rounds), same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=10, help="timed calls per backend and config")
    parser.add_argument("--quick", action="store_true", help="3 rounds instead of --rounds")
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), help="TxBxN, e.g. 4x64x4096")
    parser.add_argument("--neurons", nargs="+", default=["lif", "plif", "slif"])
    parser.add_argument("--backends", nargs="+", help="default: every installed backend")
    parser.add_argument("--no-compile", action="store_true", help="eager only")
    args = parser.parse_args()
    rounds = 3 if args.quick else args.rounds
    warnings.filterwarnings("ignore", category=DeprecationWarning)

    host = PluginHost()
    names = args.backends or [n for n in host.names("backend") if n != "torch"]
    backends = [host.backend("torch")] + [
        host.backend(n) for n in names if host.backend(n).library_version() is not None
    ]
    specs = neuron_specs(host, args.neurons)
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes]
    modes = [False] if args.no_compile else [False, True]
    headers = ["threads", "shape", "neuron", "mode", "pass", "torch ms"] + [b.name for b in backends[1:]]
    print(f"torch {torch.__version__}; " + ", ".join(f"{b.name} {b.library_version()}" for b in backends[1:])
          + f"; {rounds} rounds; ratios = backend median / torch median (slower > 1)", flush=True)
    rows, speedups = [], []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for shape in shapes:
            for spec in specs:
                for backward in (False, True):
                    medians, same = bench_config(backends, spec, shape, modes, backward, rounds)
                    where = [threads, "x".join(map(str, shape)), spec.name]
                    pass_name = "fwd+bwd" if backward else "fwd"
                    for compiled in modes:
                        ref = medians[("torch", compiled)]
                        row = where + ["compile" if compiled else "eager", pass_name, f"{ref * 1e3:.1f}"]
                        row += [f"{medians[(b.name, compiled)] / ref:.2f}{'' if same[(b.name, compiled)] else ' x'}"
                                for b in backends[1:]]
                        rows.append(row)
                        print("  " + " | ".join(map(str, row)), flush=True)
                    if len(modes) == 2:
                        speedups.append(where + [pass_name] + [
                            f"{medians[(b.name, False)] / medians[(b.name, True)]:.2f}x" for b in backends])
    print(tabulate(rows, headers=headers, disable_numparse=True))
    if speedups:
        print("\ncompiled speedup: eager median / compiled median of the same backend, same rounds")
        print(tabulate(speedups, headers=["threads", "shape", "neuron", "pass"] + [b.name for b in backends],
                       disable_numparse=True))


if __name__ == "__main__":
    main()
