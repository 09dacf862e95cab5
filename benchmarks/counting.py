"""Counting overhead: the evaluation pass with and without op counting, side by side.

    python benchmarks/counting.py [--protocol digits] [--repeats 5] [--threads 1] [--cache-dir DIR]

Builds the protocol's model (loading its cached dense checkpoint when `stxbench run` has made
one, else at initialisation), then alternates an uncounted evaluation of the test split with a
counted pass over the same samples, and prints the median times and their ratio. Times on a
shared machine are noisy; the ratio, measured in one run, is the number to read.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from harness import interleaved_medians, protocol_run

from stxbench.run.checkpoints import load_dense
from stxbench.measure.counting import count_test_head
from stxbench.run.context import build_model, dense_cache_path
from stxbench.run.training import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default="digits")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config, run = protocol_run("torch", args.protocol, cache_dir=args.cache_dir)
    proto, splits = config.protocol, run.splits
    model = build_model(run)
    trained = load_dense(dense_cache_path(run), model, run.warn)
    n, batch = len(splits.test), proto.eval.batch_size

    counts = []
    medians = interleaved_medians({
        "plain": lambda: evaluate(model, splits, batch, run.device),
        "counted": lambda: counts.append(count_test_head(model, splits, batch, n, run.device)),
    }, args.repeats)

    a, b = medians["plain"], medians["counted"]
    print(f"{proto.name}: {proto.model.name}, T={proto.model.T}, {n} test samples, batch {batch}, "
          f"{args.threads} thread(s), {'dense checkpoint' if trained else 'untrained weights'}")
    print(f"  eval pass without counting  {a * 1e3:9.1f} ms  (median of {args.repeats})")
    print(f"  eval pass with counting     {b * 1e3:9.1f} ms")
    print(f"  ratio counted / plain       {b / a:9.2f}x")
    k = counts[-1]
    print(f"  counted per sample: {k.mac:,.0f} MAC, {k.ac:,.0f} AC, {k.ac_int:,.0f} int AC")


if __name__ == "__main__":
    main()
