"""One Spikformer training step per backend, eager and with compiled neurons (``--compile``).

    python benchmarks/train_step.py                     # the digits protocol's model and batch
    python benchmarks/train_step.py --quick --threads 1
    python benchmarks/train_step.py --model spikformer-2-256 --batch 32

Each backend's model is built as ``stxbench run`` builds it (the same initialisation), once eager
and once with `stxbench.compile.compile_neurons`. A step is forward, cross-entropy, backward and
an AdamW step on the protocol's first training batch. Compiled models are warmed up (compiled)
before timing; the compile time is reported apart (``$TORCHINDUCTOR_CACHE_DIR``, by default
under the stxbench cache, makes later runs load the kernels). The surrogate is SuperSpike
(alpha 1), the one every backend has. Columns: median ms per step eager and compiled, the
speedup (eager / compiled), both as ratios to the torch reference's eager step, and whether the
compiled steps' losses equal the eager ones bit for bit (two steps from the same weights).
"""

from __future__ import annotations

import time

import torch
from harness import interleaved_medians, machine_line, parser, protocol_run, setup
from tabulate import tabulate
from torch import nn

from stxbench.api import Surrogate
from stxbench.compile import compile_neurons
from stxbench.runner import build_model
from stxbench.training import batches, make_optimizer

WARMUP_STEPS = 2


def make_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor):
    criterion = nn.CrossEntropyLoss()

    def step() -> float:
        loss = criterion(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def main() -> None:
    p = parser(__doc__.split("\n\n")[0], rounds=10, quick_rounds=3)
    p.add_argument("--protocol", default="digits")
    p.add_argument("--model", help="another model size, e.g. spikformer-2-256 (default: the protocol's)")
    p.add_argument("--batch", type=int, help="batch size (default: the protocol's training batch)")
    p.add_argument("--backends", nargs="+", help="default: every installed backend")
    args = p.parse_args()
    rounds = setup(args)
    settings = [f"model.name={args.model}"] if args.model else []

    config, run = protocol_run("torch", args.protocol, settings, Surrogate("superspike"))
    proto = config.protocol
    batch = args.batch or proto.train.batch_size
    x, y = next(batches(run.splits.train, batch, shuffle=False, drop_last=True))
    if run.splits.prepare:
        x = run.splits.prepare(x)
    names = ["torch"] + [n for n in args.backends or run.host.names("backend")  # the reference first
                         if n != "torch" and run.host.backend(n).library_version() is not None]
    print(f"{proto.name}: {proto.model.name}, T={proto.model.T}, batch {batch}, SuperSpike; {machine_line(args)}; "
          f"{rounds} rounds", flush=True)

    steps, compile_s, same = {}, {}, {}
    for name in names:
        _, backend_run = protocol_run(name, args.protocol, settings, Surrogate("superspike"), host=run.host)
        losses = {}
        for compiled in (False, True):
            model = build_model(backend_run).train()
            if compiled:
                compiler = compile_neurons(model, backend_run.config.cache_dir, backend_run.warn)
            step = make_step(model, make_optimizer(model, proto.train), x, y)
            start = time.perf_counter()
            losses[compiled] = [step() for _ in range(WARMUP_STEPS)]
            if compiled:
                compile_s[name] = (time.perf_counter() - start, compiler)
            steps[(name, compiled)] = step
        same[name] = losses[False] == losses[True]
        print(f"  {name}: warmed up ({compile_s[name][0]:.1f} s with compilation)", flush=True)

    medians = interleaved_medians(steps, rounds)
    reference = medians[("torch", False)]
    rows = []
    for name in names:
        eager, compiled = medians[(name, False)], medians[(name, True)]
        compiler = compile_s[name][1]
        rows.append([
            name, f"{eager * 1e3:.1f}", f"{compiled * 1e3:.1f}", f"{eager / compiled:.2f}x",
            f"{eager / reference:.2f}", f"{compiled / reference:.2f}",
            f"{compile_s[name][0]:.1f}", compiler.graphs, "yes" if same[name] else "NO",
            compiler.fallback or "",
        ])
    print(tabulate(rows, headers=["backend", "eager ms", "compiled ms", "speedup", "eager/ref",
                                  "compiled/ref", "warm-up s", "graphs", "same loss", "fallback"],
                   disable_numparse=True))


if __name__ == "__main__":
    main()
