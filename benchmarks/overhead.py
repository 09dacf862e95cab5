"""The suite's overhead: ``stxbench run`` against a bare hand-written loop doing the same training.

    python benchmarks/overhead.py                      # the digits protocol, 15 + 5 epochs
    python benchmarks/overhead.py --quick --threads 1  # 2 + 1 epochs
    python benchmarks/overhead.py --slot-checks 200    # a train step with and without the neuron checks

``stxbench run`` (lif, no pruning, torch backend) goes through the runner API in-process:
plugin host, protocol resolution, dense training (a fresh cache each round, so it trains),
evaluations before and after pruning, neuron swap, fine-tuning, the timed evaluation with
firing-rate hooks, op counting (or not: ``--no-counts``), record, checkpoint, and rich progress
bars drawn into a string; a fourth variant turns the neuron contract checks off (the shape and
dtype check of every neuron call, the spike check of each stage's first batch), to show their cost.
``--slot-checks ROUNDS`` times only a training step with and without the checks, interleaved. The bare loop builds the same Spikformer on the same data and trains it
for the same steps (AdamW, the protocol's learning rates, warm-up and cosine schedule), then
evaluates once. Rounds alternate the three variants; the table gives medians and the overhead
(stxbench / bare - 1), split into training (the record's dense_s + finetune_s against the bare
loop's training) and everything else.
"""

from __future__ import annotations

import io
import math
import tempfile
import time
from pathlib import Path

import torch
from harness import machine_line, parser, setup
from rich.console import Console
from tabulate import tabulate
from torch import nn

from stxbench.cli.progress import RichReporter
from stxbench.host.plugin_host import PluginHost
from stxbench.run.protocol import load_protocol
from stxbench.run.resolve import resolve
from stxbench.run.stages import execute
from stxbench.run.config import RunOptions

QUICK = ["train.epochs=2", "finetune.epochs=1"]


def stxbench_run(protocol: str, settings: list[str], counts: bool, threads: int, folder: Path) -> dict:
    start = time.perf_counter()
    host = PluginHost(())
    config = resolve(host, protocol=protocol, neuron="lif", pruner="none", backend="torch", seed=None,
                     settings=settings, out_dir=folder / "run",
                     options=RunOptions(device="cpu", cache_dir=folder / "cache", threads=threads, counts=counts))
    reporter = RichReporter(Console(file=io.StringIO(), force_terminal=True))
    record = execute(config, host, reporter=reporter)
    total = time.perf_counter() - start
    train = record.timing.dense_s + record.timing.finetune_s
    return {"total": total, "train": train, "rest": total - train, "accuracy": record.metrics.accuracy}


def unchecked(run):
    """``run()`` with the neuron contract checks off (`NeuronSlot.forward` as it was before
    them: ``impl(x)``; no spike check on each stage's first batch): their cost, side by side."""
    import contextlib

    from stxbench.run import training
    from stxbench.models.base import NeuronSlot

    checked_forward, checking = NeuronSlot.forward, training.checking_spikes
    NeuronSlot.forward = lambda self, x: self.impl(x)
    training.checking_spikes = lambda model: contextlib.nullcontext()
    try:
        return run()
    finally:
        NeuronSlot.forward, training.checking_spikes = checked_forward, checking


def bare_loop(protocol: str, settings: list[str]) -> dict:
    """What one would write by hand: model, data, AdamW + cosine, two stages, one evaluation."""
    from stxbench_backend_torch import LIFFamilyNeuron
    from stxbench_dataset_digits import Digits
    from stxbench_model_spikformer.spikformer import Spikformer, parse_size
    from stxbench_neuron_lif import LIF

    from stxbench.api import Surrogate
    from stxbench.run.protocol import parse_value

    start = time.perf_counter()
    proto = load_protocol(protocol, {k: parse_value(v) for k, v in (s.split("=") for s in settings)})
    data = Digits().load(None)
    x_train, y_train = data.train.tensors
    x_test, y_test = data.test.tensors
    depth, dim = parse_size(proto.model.name.partition("-")[2])
    torch.manual_seed(proto.seeds[0])
    model = Spikformer(depth=depth, dim=dim, input_shape=data.input_shape, num_classes=data.num_classes,
                       T=proto.model.T, make_neuron=lambda site: LIFFamilyNeuron(LIF, site, Surrogate()),
                       **proto.model.options)
    train_s = 0.0
    for stage in (proto.train, proto.finetune):
        stage_start = time.perf_counter()
        optimizer = torch.optim.AdamW(model.parameters(), lr=stage.lr, weight_decay=stage.weight_decay)
        per_epoch = len(x_train) // stage.batch_size
        total, warmup = per_epoch * stage.epochs, round(stage.warmup_epochs * per_epoch)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: (s + 1) / warmup if s < warmup
                                                     else 0.5 * (1 + math.cos(math.pi * (s - warmup) / (total - warmup))))
        model.train()
        for _ in range(stage.epochs):
            order = torch.randperm(len(x_train))
            for i in range(per_epoch):
                idx = order[i * stage.batch_size:(i + 1) * stage.batch_size]
                loss = nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
        train_s += time.perf_counter() - stage_start
    model.eval()
    with torch.no_grad():
        correct = sum(int((model(x).argmax(1) == y).sum())
                      for x, y in zip(x_test.split(proto.eval.batch_size), y_test.split(proto.eval.batch_size)))
    total = time.perf_counter() - start
    return {"total": total, "train": train_s, "rest": total - train_s, "accuracy": correct / len(y_test)}


def slot_check_cost(protocol: str, rounds: int) -> None:
    """One training step of the protocol's model (its first batch: forward, loss, backward,
    AdamW), with the neuron slot's shape and dtype checks and without, interleaved: what the
    checks cost on every step (the value check runs on one batch per stage, not here)."""
    from harness import interleaved_medians, protocol_run

    from stxbench.run.context import build_model
    from stxbench.run.training import batches, make_optimizer

    config, run = protocol_run("torch", protocol)
    x, y = next(batches(run.splits.train, config.protocol.train.batch_size, shuffle=False, drop_last=True))
    x = run.splits.prepare(x) if run.splits.prepare else x
    model = build_model(run).train()
    optimizer = make_optimizer(model, config.protocol.train)

    def step() -> None:
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    medians = interleaved_medians({"unchecked": lambda: unchecked(step), "checked": step}, rounds)
    calls = sum(1 for _ in model.neuron_slots())
    a, b = medians["checked"], medians["unchecked"]
    print(f"train step, {calls} neuron layers: checked {a * 1e3:.2f} ms, unchecked {b * 1e3:.2f} ms, "
          f"checked / unchecked {a / b:.4f} (median of {rounds}, interleaved)")


def main() -> None:
    p = parser(__doc__.split("\n\n")[0], rounds=3, quick_rounds=3)
    p.add_argument("--protocol", default="digits")
    p.add_argument("--slot-checks", type=int, metavar="ROUNDS",
                   help="only time a training step with and without the neuron slot checks, ROUNDS rounds")
    args = p.parse_args()
    rounds = setup(args)
    if args.slot_checks:
        slot_check_cost(args.protocol, args.slot_checks)
        return
    settings = QUICK if args.quick else []
    proto = load_protocol(args.protocol)
    print(f"{proto.name}{' ' + ' '.join(settings) if settings else ''}: {proto.model.name}, T={proto.model.T}; "
          f"{machine_line(args)}; {rounds} rounds", flush=True)

    variants = {
        "bare loop": lambda folder: bare_loop(args.protocol, settings),
        "stxbench run": lambda folder: stxbench_run(args.protocol, settings, True, args.threads, folder),
        "stxbench run --no-counts": lambda folder: stxbench_run(args.protocol, settings, False, args.threads, folder),
        "--no-counts, unchecked neuron slots": lambda folder: unchecked(
            lambda: stxbench_run(args.protocol, settings, False, args.threads, folder)),
    }
    results: dict[str, list[dict]] = {name: [] for name in variants}
    for r in range(rounds):
        for name, variant in variants.items():
            with tempfile.TemporaryDirectory() as folder:
                results[name].append(variant(Path(folder)))
            print(f"  round {r + 1}: {name}: {results[name][-1]['total']:.2f} s", flush=True)

    def median(name: str, key: str) -> float:
        return float(torch.tensor([res[key] for res in results[name]]).median())

    bare_total, bare_train = median("bare loop", "total"), median("bare loop", "train")
    bare_rest = median("bare loop", "rest")
    rows = []
    for name in variants:
        total, train, rest = median(name, "total"), median(name, "train"), median(name, "rest")
        rows.append([name, f"{total:.2f}", f"{train:.2f}", f"{rest:.2f}",
                     f"{(total / bare_total - 1) * 100:+.1f} %", f"{(train / bare_train - 1) * 100:+.1f} %",
                     f"{(rest - bare_rest) / bare_total * 100:+.1f} %", f"{results[name][-1]['accuracy']:.4f}"])
    print(tabulate(rows, headers=["variant", "total s", "training s", "rest s", "overhead",
                                  "training overhead", "rest overhead", "accuracy"], disable_numparse=True))
    print("overhead: total / bare total - 1; training overhead: training / bare training - 1; rest "
          "overhead: (rest - bare rest) / bare total, the part of the overhead outside training")


if __name__ == "__main__":
    main()
