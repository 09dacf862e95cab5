"""Speed of one neuron layer: the torch backend's fused kernel and every library backend, as
speedups over today's eager reference (the torch backend's plain loop, `LIFFamilyNeuron`).

For LIF, PLIF and sLIF at [T, B, N] = [4, 64, 24576] and [4, 64, 4096], forward (no grad) and
forward+backward: the plain loop eager (the reference) and compiled with ``torch.compile`` (what
``--compile`` did for the torch backend before the kernel), the fused kernel, and each library
backend eager and compiled, all timed round-robin in one process (so machine load hits all of
them alike). Columns give each variant's speedup over the reference's median (faster > 1); an
``x`` after it marks forward spikes that differ from the reference's. For forward+backward the
``saved MB`` columns give what autograd keeps between the two passes (saved tensors, exact).

    python benchmarks/neurons.py                  # one thread and two, 10 rounds
    python benchmarks/neurons.py --threads 1 --quick
    python benchmarks/neurons.py --no-compile --neurons lif --shapes 4x64x4096
    python benchmarks/neurons.py --device cuda --threads 1      # on a GPU

Compilation costs seconds per variant, shape and pass; ``TORCHINDUCTOR_CACHE_DIR`` keeps kernels
between runs. The surrogate is SuperSpike (alpha 1), the one every backend has.
"""

from __future__ import annotations

import argparse
import warnings

import torch
import harness
from harness import interleaved_medians
from stxbench_backend_torch import LIFFamilyNeuron
from tabulate import tabulate

from stxbench.api import NeuronSite, NeuronSpec, Surrogate
from stxbench.host.plugin_host import PluginHost

SHAPES = ("4x64x24576", "4x64x4096")
SURROGATE = Surrogate("superspike")
#: sLIF as its plugin defines it, used when that plugin is not installed
SLIF = NeuronSpec("slif", "per-channel decay and threshold", decay="channel", threshold="channel")
REFERENCE = "loop"  # the plain loop, eager


def neuron_specs(host: PluginHost, names: list[str]) -> list[NeuronSpec]:
    known = set(host.names("neuron"))
    return [host.neuron(n) if n in known or n != "slif" else SLIF for n in names]


def make_step(module, x: torch.Tensor, backward: bool):
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    if not backward:
        def forward_only():
            with torch.no_grad():
                out = module(x)
            sync()
            return out
        return forward_only

    def forward_backward():
        xin = x.detach().requires_grad_(True)
        spikes = module(xin)
        spikes.sum().backward()
        for p in module.parameters():
            p.grad = None
        sync()
        return spikes.detach()
    return forward_backward


def saved_megabytes(module, x: torch.Tensor) -> float:
    """What autograd keeps from the forward for the backward (saved tensors, in MB)."""
    total = []
    with torch.autograd.graph.saved_tensors_hooks(
            lambda t: total.append(t.numel() * t.element_size()) or t, lambda t: t):
        module(x.detach().requires_grad_(True))
    return sum(total) / 2**20


def variants(backends, modes: list[bool]):
    """(column name, make_neuron(spec, site) -> module) for every variant timed."""
    out = [(REFERENCE, lambda spec, site: LIFFamilyNeuron(spec, site, SURROGATE))]
    if True in modes:
        out.append((f"{REFERENCE} compiled", lambda spec, site: torch.compile(LIFFamilyNeuron(spec, site, SURROGATE))))
    for backend in backends:
        for compiled in modes:
            def make(spec, site, backend=backend, compiled=compiled):
                module = backend.make_neuron(spec, site, SURROGATE)
                # the torch backend's kernel compiles itself; torch.compile would trace its plain loop
                return torch.compile(module) if compiled and not getattr(module, "compiles_itself", False) else module
            if compiled and backend.name == "torch":
                continue  # the kernel is compiled already
            out.append((f"{backend.name}{' compiled' if compiled else ''}", make))
    return out


def bench_config(columns, spec, shape, device, backward: bool, rounds: int):
    """Median seconds, same-spikes flag and saved MB per column for one config, every variant
    timed round-robin in the same rounds."""
    site = NeuronSite("bench", channels=shape[-1], channel_dim=-1)
    # dynamo compiles one forward code object at most 8 times and then silently runs it eager:
    # start every config afresh so each variant is really compiled
    torch._dynamo.reset()
    x = (torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 1.5 + 0.5).to(device)
    reference_spikes = make_step(LIFFamilyNeuron(spec, site, SURROGATE).to(device), x, False)()
    steps, same, saved = {}, {}, {}
    for name, make in columns:
        module = make(spec, site).to(device)
        step = make_step(module, x, backward)
        spikes = step()  # warm-up (and compilation)
        step()
        same[name] = torch.equal(spikes, reference_spikes)
        steps[name] = step
        if backward:
            saved[name] = saved_megabytes(module, x)
    return interleaved_medians(steps, rounds), same, saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=10, help="timed calls per variant and config")
    parser.add_argument("--quick", action="store_true", help="3 rounds instead of --rounds")
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), help="TxBxN, e.g. 4x64x4096")
    parser.add_argument("--neurons", nargs="+", default=["lif", "plif", "slif"])
    parser.add_argument("--backends", nargs="+", help="default: every installed backend")
    parser.add_argument("--no-compile", action="store_true", help="no torch.compile variants")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time in process CPU time, not wall time (steadier on a loaded machine; one thread only)")
    args = parser.parse_args()
    rounds = 3 if args.quick else args.rounds
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    harness.use_cpu_time(args.cpu_time)

    host = PluginHost()
    names = args.backends or host.names("backend")
    backends = [host.backend(n) for n in names if host.backend(n).library_version() is not None]
    specs = neuron_specs(host, args.neurons)
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes]
    columns = variants(backends, [False] if args.no_compile else [False, True])
    others = [name for name, _ in columns if name != REFERENCE]
    print(f"torch {torch.__version__} on {args.device}; " + ", ".join(f"{b.name} {b.library_version()}" for b in backends)
          + f"; {rounds} rounds of {'CPU' if args.cpu_time else 'wall'} time; speedup = plain loop median / variant median (faster > 1); "
          + "torch = the fused kernel", flush=True)
    rows, memory = [], []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for shape in shapes:
            for spec in specs:
                for backward in (False, True):
                    medians, same, saved = bench_config(columns, spec, shape, args.device, backward, rounds)
                    ref = medians[REFERENCE]
                    where = [threads, "x".join(map(str, shape)), spec.name, "fwd+bwd" if backward else "fwd"]
                    row = where + [f"{ref * 1e3:.1f}"] + [
                        f"{ref / medians[name]:.2f}x{'' if same[name] else ' x'}" for name in others]
                    rows.append(row)
                    print("  " + " | ".join(map(str, row)), flush=True)
                    if backward and threads == args.threads[0]:
                        memory.append(where[1:3] + [f"{saved[name]:.0f}" for name, _ in columns])
    print(tabulate(rows, headers=["threads", "shape", "neuron", "pass", "loop ms"] + others, disable_numparse=True))
    print("\nsaved for the backward (MB), forward+backward")
    print(tabulate(memory, headers=["shape", "neuron"] + [name for name, _ in columns], disable_numparse=True))


if __name__ == "__main__":
    main()
