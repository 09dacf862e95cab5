"""One Spikformer training step and one evaluation batch per neuron implementation, as speedups
over today's eager reference (the torch backend's plain loop), with each step's peak memory.

    python benchmarks/train_step.py                     # the digits protocol's model and batch
    python benchmarks/train_step.py --quick --threads 1
    python benchmarks/train_step.py --neuron slif --backends torch spikingjelly
    python benchmarks/train_step.py --protocol cifar10-spikformer-4-384 --data-root DIR --device cuda --precision bf16

Variants, each built as ``stxbench run`` builds its model (the same initialisation): ``loop``
(the plain loop, eager: the reference), ``loop compiled`` (what ``--compile`` gave the torch
backend before its kernel), ``torch`` (the fused kernel, the torch backend's default), and each
library backend eager and with ``--compile`` (`stxbench.neurons.compile.compile_neurons`); ``*`` marks
what ``stxbench run`` uses for each backend on this device. ``--bound`` adds ``bound``: neurons
that cost one comparison, the floor under any neuron implementation. A step is forward,
cross-entropy, backward and an optimizer step on the protocol's first training batch; an
evaluation is the forward of the first test batch under ``no_grad``. Compiled variants are
warmed up (compiled) before timing; warm-up time, compilation included, is reported apart
(``$TORCHINDUCTOR_CACHE_DIR`` keeps kernels between runs). The surrogate is SuperSpike (alpha
1), the one every backend has. ``same loss``: the first two steps' losses equal the reference's
bit for bit. ``peak MB``: memory a training step needs on top of what was allocated before it:
on a CPU the peak resident set of a fresh process running only that variant (VmHWM, minus the
resident set before the measured steps; glibc is told to return freed blocks over 64 kB, so the
resident set follows the live tensors), on CUDA ``max_memory_allocated`` minus the allocation
before the measured steps.
"""

from __future__ import annotations


import json
import os
import subprocess
import sys
import time
from contextlib import nullcontext

import torch
from harness import PlainLoopBackend, interleaved_medians, machine_line, parser, protocol_run, setup
from tabulate import tabulate
from torch import nn

from stxbench.api import Surrogate
from stxbench.neurons.compile import compile_neurons
from stxbench.run.context import build_model
from stxbench.run.training import batches, make_optimizer

WARMUP_STEPS = 2
MEMORY_STEPS = 2
SURROGATE = Surrogate("superspike")


def make_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
              autocast=nullcontext):
    criterion = nn.CrossEntropyLoss()
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)

    def step() -> float:
        with autocast():
            loss = criterion(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sync()
        return loss.item()

    return step


def make_eval(model: nn.Module, x: torch.Tensor, autocast):
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)

    def evaluate() -> None:
        model.eval()
        with torch.no_grad(), autocast():
            model(x)
        model.train()
        sync()

    return evaluate


class _PassThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return (x >= 1).to(x)

    @staticmethod
    def backward(ctx, grad):
        return grad


class BoundNeuron(nn.Module):
    """Not a neuron: one comparison forward, the gradient passed through backward, and the
    learnables a neuron would hold. A step with it is what any neuron implementation costs at
    the very least, so ``loop / bound`` is the most a faster neuron can give the step."""

    def __init__(self, spec, site, surrogate):
        super().__init__()
        from stxbench.neurons import lif
        lif.add_learnables(self, spec, site)

    def forward(self, x):
        return _PassThrough.apply(x)


class BoundBackend(PlainLoopBackend):
    name = "bound"

    def make_neuron(self, spec, site, surrogate):
        return BoundNeuron(spec, site, surrogate)


def variant_names(names: list[str], modes: tuple[bool, ...]) -> list[tuple[str, bool]]:
    """(backend, compiled) pairs: the plain loop first (the reference), the kernel once."""
    out = [("loop", compiled) for compiled in modes] + [("torch", False)]
    return out + [(name, compiled) for name in names if name not in ("torch", "loop") for compiled in modes]


def label(name: str, compiled: bool, by_default: bool) -> str:
    used = name == "torch" or (name not in ("loop", "bound") and by_default == compiled)
    return f"{name}{' compiled' if compiled else ''}{'*' if used else ''}"


def build(args, name: str, compiled: bool, host=None):
    """The variant's model, optimizer, step and evaluation on the protocol's first batches."""
    settings = [f"model.name={args.model}"] if args.model else []
    backend = {"loop": PlainLoopBackend, "bound": BoundBackend}.get(name, lambda: name)()
    _, run = protocol_run(backend, args.protocol, settings, SURROGATE, host=host, device=args.device,
                          data_root=args.data_root)
    proto = run.config.protocol
    model = build_model(run).train()
    if args.neuron:
        model.swap_neurons(run.make_neuron_factory(run.host.neuron(args.neuron)))
        model.to(run.device)
    compiler = compile_neurons(model, run.config.cache_dir, run.warn) if compiled else None
    batch = args.batch or proto.train.batch_size
    x, y = next(batches(run.splits.train, batch, shuffle=False, drop_last=True))
    x_test, _ = next(batches(run.splits.test, args.batch or proto.eval.batch_size, shuffle=False, drop_last=False))
    if run.splits.prepare:
        x, x_test = run.splits.prepare(x), run.splits.prepare(x_test)
    x, y, x_test = x.to(run.device), y.to(run.device), x_test.to(run.device)
    autocast = (lambda: torch.autocast(run.device.type, dtype=torch.bfloat16)) if args.precision == "bf16" else nullcontext
    step = make_step(model, make_optimizer(model, proto.train), x, y, autocast)
    return run, proto, batch, step, make_eval(model, x_test, autocast), compiler


def rss_mb(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure_memory(args, name: str, compiled: bool) -> float:
    """Peak MB of a training step over what was allocated before it (see the module docstring)."""
    _, _, _, step, _, _ = build(args, name, compiled)
    step()  # compile (kernel cache) and create the optimizer state, then measure from a clean peak
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        for _ in range(MEMORY_STEPS):
            step()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    before = rss_mb("VmRSS")
    with open("/proc/self/clear_refs", "w") as fh:  # reset VmHWM to the current resident set
        fh.write("5")
    for _ in range(MEMORY_STEPS):
        step()
    return rss_mb("VmHWM") - before


#: glibc returns every block over 64 kB to the system when it is freed, so the resident set
#: follows the live tensors instead of what malloc keeps for later (CPU peak memory only)
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


def memory_in_fresh_process(argv: list[str], name: str, compiled: bool) -> float | None:
    result = subprocess.run([sys.executable, __file__, *argv, "--memory-of", f"{name}:{int(compiled)}"],
                            capture_output=True, text=True, env={**os.environ, **MALLOC_ENV})
    if result.returncode != 0:
        print(f"  memory of {name}: failed: {result.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_mb"]


def main() -> None:
    p = parser(__doc__.split("\n\n")[0], rounds=10, quick_rounds=3, cpu_time=True)
    p.add_argument("--protocol", default="digits")
    p.add_argument("--model", help="another model size, e.g. spikformer-2-256 (default: the protocol's)")
    p.add_argument("--batch", type=int, help="batch size (default: the protocol's training batch)")
    p.add_argument("--neuron", help="swap the model's neurons to this one (default: the protocol's base neuron)")
    p.add_argument("--backends", nargs="+", help="default: every installed backend")
    p.add_argument("--device", default="cpu")
    p.add_argument("--data-root", help="the dataset's folder (file-backed datasets such as cifar10)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="bf16: under torch.autocast")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurements")
    p.add_argument("--no-compile", action="store_true", help="no --compile variants (the kernel still compiles itself)")
    p.add_argument("--bound", action="store_true",
                   help="add 'bound': neurons that cost one comparison (the most a faster neuron can give)")
    p.add_argument("--memory-of", help=argparse_hidden())
    args = p.parse_args()
    rounds = setup(args)
    if args.memory_of:
        name, compiled = args.memory_of.split(":")
        print(json.dumps({"peak_mb": measure_memory(args, name, compiled == "1")}))
        return

    _, run = protocol_run(PlainLoopBackend(), args.protocol, [], SURROGATE, device=args.device, data_root=args.data_root)
    host = run.host
    installed = [n for n in args.backends or host.names("backend") if host.backend(n).library_version() is not None]
    pairs = variant_names(installed, (False,) if args.no_compile else (False, True))
    if args.bound:
        pairs.append(("bound", False))
    steps, evals, warmup, losses, compilers, by_default = {}, {}, {}, {}, {}, {}
    for name, compiled in pairs:
        run, proto, batch, step, evaluate, compiler = build(args, name, compiled, host=host)
        start = time.perf_counter()
        losses[(name, compiled)] = [step() for _ in range(WARMUP_STEPS)]
        evaluate()
        warmup[(name, compiled)] = time.perf_counter() - start
        steps[(name, compiled)], evals[(name, compiled)], compilers[(name, compiled)] = step, evaluate, compiler
        by_default[name] = name not in ("loop", "torch", "bound") and host.backend(name).compile_by_default(run.device.type)
        print(f"  {label(name, compiled, by_default[name])}: warmed up in {warmup[(name, compiled)]:.1f} s", flush=True)
    print(f"{proto.name}: {proto.model.name}, T={proto.model.T}, batch {batch}, {args.neuron or proto.model.base_neuron}, "
          f"SuperSpike, {args.precision} on {args.device}; {machine_line(args)}; {rounds} rounds", flush=True)

    step_s = interleaved_medians(steps, rounds)
    eval_s = interleaved_medians(evals, rounds)
    argv = [a for a in sys.argv[1:]]
    memory = {} if args.no_memory else {pair: memory_in_fresh_process(argv, *pair) for pair in pairs}
    reference, reference_eval = step_s[("loop", False)], eval_s[("loop", False)]
    rows = []
    for pair in pairs:
        compiler = compilers[pair]
        rows.append([
            label(*pair, by_default[pair[0]]), f"{step_s[pair] * 1e3:.1f}", f"{reference / step_s[pair]:.2f}x",
            f"{eval_s[pair] * 1e3:.1f}", f"{reference_eval / eval_s[pair]:.2f}x",
            "-" if args.no_memory or memory[pair] is None else f"{memory[pair]:.1f}",
            f"{warmup[pair]:.1f}", "-" if pair[0] == "bound" else "yes" if losses[pair] == losses[("loop", False)] else "NO",
            (compiler.info().fallback or "") if compiler else "",
        ])
    print(tabulate(rows, headers=["variant", "step ms", "speedup", "eval ms", "eval speedup", "peak MB",
                                  "warm-up s", "same loss", "fallback"], disable_numparse=True))
    print("speedup: the plain loop's (eager) median / the variant's; * = what `stxbench run` uses for that backend here")


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
