"""Evaluation throughput of pruned models against the dense one, eager and with compiled neurons.

    python benchmarks/pruned_inference.py                    # the digits protocol's model
    python benchmarks/pruned_inference.py --quick --threads 1
    python benchmarks/pruned_inference.py --model spikformer-4-384 --no-compile

The protocol's model (its cached dense checkpoint when ``stxbench run`` made one, else its
initial weights: timing does not depend on them) is pruned the way a run prunes it and
finalized (L1P masks folded into the weights; DSP svd factors as two Linears; DSP channels
matrices physically narrower). Each variant then evaluates the whole test split as the runner
times it (`stxbench.run.training.evaluate`), round-robin with the others; the table gives samples/s
and the speedup over the dense model in the same mode, and over dense eager.
"""

from __future__ import annotations

import copy

from harness import interleaved_medians, machine_line, parser, protocol_run, setup
from tabulate import tabulate

from stxbench.run.checkpoints import load_dense
from stxbench.neurons.compile import compile_neurons
from stxbench.run.context import build_model, dense_cache_path
from stxbench.run.training import evaluate

VARIANTS = {
    "dense": ("none", {}),
    "l1p 0.5": ("l1p", {"sparsity": 0.5}),
    "l1p 0.9": ("l1p", {"sparsity": 0.9}),
    "dsp svd 0.5": ("dsp", {"method": "svd", "keep": 0.5}),
    "dsp svd 0.25": ("dsp", {"method": "svd", "keep": 0.25}),
    "dsp channels 0.5": ("dsp", {"method": "channels", "keep": 0.5}),
}


def main() -> None:
    p = parser(__doc__.split("\n\n")[0], rounds=10, quick_rounds=3)
    p.add_argument("--protocol", default="digits")
    p.add_argument("--model", help="another model size, e.g. spikformer-4-384 (default: the protocol's)")
    p.add_argument("--no-compile", action="store_true", help="eager only")
    args = p.parse_args()
    rounds = setup(args)
    settings = [f"model.name={args.model}"] if args.model else []
    config, run = protocol_run("torch", args.protocol, settings)
    proto, splits, host = config.protocol, run.splits, run.host

    dense = build_model(run)
    trained = load_dense(dense_cache_path(run), dense, run.warn)
    modes = [False] if args.no_compile else [False, True]
    print(f"{proto.name}: {proto.model.name}, T={proto.model.T}, {len(splits.test)} test samples, batch "
          f"{proto.eval.batch_size}, {'dense checkpoint' if trained else 'initial weights'}; "
          f"{machine_line(args)}; {rounds} rounds", flush=True)

    evals = {}
    for name, (pruner_name, params) in VARIANTS.items():
        for compiled in modes:
            model = copy.deepcopy(dense)
            pruner = host.pruner(pruner_name)
            pruner.prune(model, pruner.Params(**params))
            pruner.finalize(model)
            if compiled:
                compiler = compile_neurons(model, config.cache_dir, run.warn)
            evaluate(model, splits, proto.eval.batch_size, run.device)  # warm-up (and compilation)
            evals[(name, compiled)] = (lambda m=model: evaluate(m, splits, proto.eval.batch_size, run.device))
        print(f"  {name}: ready" + (f" ({compiler.graphs} new graphs)" if compiled else ""), flush=True)

    medians = interleaved_medians(evals, rounds)
    n = len(splits.test)
    rows = []
    for name in VARIANTS:
        row = [name]
        for compiled in modes:
            seconds = medians[(name, compiled)]
            row += [f"{n / seconds:,.0f}", f"{medians[('dense', compiled)] / seconds:.2f}x"]
        if not args.no_compile:
            row.append(f"{medians[('dense', False)] / medians[(name, True)]:.2f}x")
        rows.append(row)
    headers = ["model", "eager samples/s", "vs dense"]
    if not args.no_compile:
        headers += ["compiled samples/s", "vs dense compiled", "vs dense eager"]
    print(tabulate(rows, headers=headers, disable_numparse=True))


if __name__ == "__main__":
    main()
