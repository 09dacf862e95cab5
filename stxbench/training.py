"""The train and eval loops: batches, optimiser, schedule, one stage of training, evaluation."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from typing import Protocol as TypingProtocol

import numpy as np
import torch
from torch import nn

from stxbench.api import DataSplits
from stxbench.augment import stage_augmentation
from stxbench.errors import RunFailed
from stxbench.execution import Execution, all_reduce_sums, derive_seed, wrap_data_parallel
from stxbench.protocol import StageSection


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


#: the protocol section that configures each stage
STAGE_SECTIONS = {"dense": "train", "finetune": "finetune"}


def stage_seed(seed: int, stage: str) -> int:
    """One seed per (run seed, stage): the fine-tune stage draws the same random numbers whether
    the dense stage ran or came from the cache."""
    return seed * 1_000_003 + {"dense": 0, "finetune": 1}[stage]


def _fast_tensors(dataset: torch.utils.data.Dataset) -> tuple[torch.Tensor, ...] | None:
    if isinstance(dataset, torch.utils.data.TensorDataset):
        return dataset.tensors
    return None


def batches(
    dataset: torch.utils.data.Dataset,
    batch_size: int,
    *,
    shuffle: bool,
    drop_last: bool,
    generator: torch.Generator | None = None,
    shard: tuple[int, int] = (0, 1),
    workers: int = 0,
    pin_memory: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of ``(x, y)``. In-memory tensors are sliced directly (no per-sample collation);
    other datasets go through a DataLoader (``workers`` processes, pinned memory if asked).

    The order is drawn from ``generator``; with ``shard=(rank, world)`` every global batch of
    ``batch_size`` is cut into ``world`` equal slices and this process gets slice ``rank``
    (`DistributedSampler`'s contract: the same generator seed on every process, the union of
    the slices is the single-process batch)."""
    rank, world = shard
    tensors = _fast_tensors(dataset)
    n = len(dataset)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    stop = n - n % batch_size if drop_last else n
    index_batches = []
    for start in range(0, stop, batch_size):
        idx = order[start : start + batch_size]
        if world > 1:
            per = len(idx) // world
            idx = idx[rank * per : (rank + 1) * per]
        index_batches.append(idx)
    if tensors is not None:
        for idx in index_batches:
            yield tensors[0][idx], tensors[1][idx]
        return
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=[idx.tolist() for idx in index_batches], num_workers=workers,
        pin_memory=pin_memory,
    )
    yield from loader


def dataset_head(dataset: torch.utils.data.Dataset, n: int) -> torch.utils.data.Dataset:
    """The first ``n`` samples of ``dataset``, in order (in-memory tensors stay on the fast path)."""
    tensors = _fast_tensors(dataset)
    if tensors is not None:
        return torch.utils.data.TensorDataset(*(t[:n] for t in tensors))
    return torch.utils.data.Subset(dataset, range(min(n, len(dataset))))


def steps_per_epoch(dataset: torch.utils.data.Dataset, batch_size: int, drop_last: bool) -> int:
    n = len(dataset)
    return n // batch_size if drop_last else math.ceil(n / batch_size)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weight matrices and kernels only: not on biases and norm parameters (as
    in Spikformer's timm recipe), and never on neuron constants (PLIF/sLIF decays and
    thresholds), which decay would pull toward tau = 2 and threshold 0."""
    slots = getattr(model, "neuron_slots", lambda: [])()
    neuron_params = {id(p) for _, slot in slots for p in slot.parameters()}
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 or id(p) in neuron_params else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, stage: StageSection) -> torch.optim.Optimizer:
    groups = parameter_groups(model, stage.weight_decay)
    if stage.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=stage.lr)
    return torch.optim.SGD(groups, lr=stage.lr, momentum=stage.momentum)


def lr_factor(step: int, total: int, warmup: int, schedule: str, floor: float = 0.0) -> float:
    """Linear warm-up over ``warmup`` steps, then constant or cosine decay to ``floor`` (a
    fraction of the base rate) at ``total``."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant" or total <= warmup:
        return 1.0
    progress = (step - warmup) / (total - warmup)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


class Reporter(TypingProtocol):
    """How training shows progress; the CLI passes a rich implementation."""

    def start(self, stage: str, total_steps: int, completed: int = 0) -> None: ...
    def advance(self, loss: float) -> None: ...
    def finish(self) -> None: ...


class NullReporter:
    def start(self, stage: str, total_steps: int, completed: int = 0) -> None:
        pass

    def advance(self, loss: float) -> None:
        pass

    def finish(self) -> None:
        pass


@dataclass
class StageResult:
    seconds: float
    steps: int
    final_loss: float | None


def _to_input(x: torch.Tensor, splits: DataSplits, device: torch.device) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    return splits.prepare(x) if splits.prepare else x


def mixup(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, alpha: float, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """timm's batch-mode mixup: one ``lam ~ Beta(alpha, alpha)`` per batch, each sample mixed
    with the batch reversed; targets become the mixed one-hot vectors (label smoothing is
    applied to them by the loss, which commutes with the mixing)."""
    lam = float(rng.beta(alpha, alpha))
    x = x * lam + x.flip(0) * (1.0 - lam)
    one_hot = nn.functional.one_hot(y, num_classes).to(torch.float32)
    return x, one_hot * lam + one_hot.flip(0) * (1.0 - lam)


def train_stage(
    model: nn.Module,
    splits: DataSplits,
    stage: StageSection,
    *,
    name: str,
    seed: int,
    device: torch.device,
    reporter: Reporter,
    on_epoch_end: Callable[[int, dict[str, float]], None] = lambda epoch, metrics: None,
    execution: Execution = Execution(),
    resume: dict[str, Any] | None = None,
    on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
) -> StageResult:
    """Train ``model`` for one stage. A non-finite loss stops the run (`RunFailed`).

    Randomness: the sample order of epoch ``e`` comes from a generator seeded with
    ``(stage seed, e)``, identical on every process; augmentation (the dataset's, then the
    stage's RandAugment and RandomErasing, `stxbench.augment`) and mixup draw from streams
    seeded with ``(stage seed, rank)``.

    After every epoch ``on_checkpoint`` receives the stage's progress (epoch, step, optimiser,
    schedule and every random stream); passing it back as ``resume``, with the model's weights
    of that moment, continues the stage exactly as if it had never stopped."""
    extra = stage_augmentation(stage, splits, STAGE_SECTIONS[name])
    base_seed = stage_seed(seed, name)
    torch.manual_seed(base_seed)
    generator = torch.Generator().manual_seed(derive_seed(base_seed, execution.rank))
    mix_rng = np.random.default_rng(derive_seed(base_seed, execution.rank, 1))
    world = execution.world_size
    drop_last = len(splits.train) >= stage.batch_size  # fixed batch shapes, unless tiny
    per_epoch = steps_per_epoch(splits.train, stage.batch_size, drop_last)
    total = per_epoch * stage.epochs
    warmup = round(stage.warmup_epochs * per_epoch)
    optimizer = make_optimizer(model, stage)
    floor = stage.min_lr / stage.lr
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total, warmup, stage.schedule, floor)
    )
    criterion = nn.CrossEntropyLoss(label_smoothing=stage.label_smoothing)
    net = wrap_data_parallel(model, execution, device)
    first_epoch, step, spent = 0, 0, 0.0
    if resume is not None:
        first_epoch, step, spent = resume["epoch"], resume["step"], resume["seconds"]
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        generator.set_state(resume["rng"]["augment"])
        mix_rng.bit_generator.state = resume["rng"]["mixup"]
        torch.set_rng_state(resume["rng"]["torch"])
    reporter.start(name, total, completed=step)
    start = time.perf_counter() - spent
    loss_value = None
    model.train()
    try:
        for epoch in range(first_epoch, stage.epochs):
            loss_sum, correct, seen = 0.0, 0, 0
            order = torch.Generator().manual_seed(derive_seed(base_seed, epoch))
            mixing = stage.mixup > 0 and (stage.mixup_epochs is None or epoch < stage.mixup_epochs)
            for x, y in batches(
                splits.train, stage.batch_size, shuffle=True, drop_last=drop_last, generator=order,
                shard=(execution.rank, world), workers=execution.workers,
                pin_memory=execution.pin_memory,
            ):
                x = x.to(device, non_blocking=True)
                if extra.raw is not None:  # on stored images, before normalisation
                    x = extra.raw(x, generator)
                x = splits.prepare(x) if splits.prepare else x
                if splits.augment is not None:
                    x = splits.augment(x, generator)
                if extra.erase is not None:
                    x = extra.erase(x, generator)
                y = y.to(device, non_blocking=True)
                target = y
                if mixing:
                    x, target = mixup(x, y, splits.num_classes, stage.mixup, mix_rng)
                with execution.autocast(device):
                    logits = net(x)
                    loss = criterion(logits.float(), target)
                loss_value = loss.item()
                if not math.isfinite(loss_value):
                    raise RunFailed(
                        f"training diverged: loss is {loss_value} at {name} epoch {epoch + 1}, "
                        f"step {step + 1}; lower the learning rate ({name} lr = {stage.lr})"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if stage.grad_clip:
                    nn.utils.clip_grad_norm_(model.parameters(), stage.grad_clip)
                optimizer.step()
                scheduler.step()
                step += 1
                loss_sum += loss_value * len(y)
                correct += (logits.argmax(1) == y).sum().item()
                seen += len(y)
                reporter.advance(loss_value)
            loss_sum, correct, seen = all_reduce_sums([loss_sum, correct, seen], execution, device)
            if on_checkpoint is not None:
                on_checkpoint({
                    "epoch": epoch + 1, "step": step, "seconds": time.perf_counter() - start,
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "rng": {"augment": generator.get_state(), "mixup": mix_rng.bit_generator.state,
                            "torch": torch.get_rng_state()},
                })
            on_epoch_end(epoch + 1, {"loss": loss_sum / max(seen, 1), "train_accuracy": correct / max(seen, 1)})
    finally:
        reporter.finish()
    return StageResult(time.perf_counter() - start, step, loss_value)


@dataclass
class EvalResult:
    accuracy: float
    correct: int
    samples: int
    seconds: float
    predictions: torch.Tensor


@torch.no_grad()
def evaluate(
    model: nn.Module, splits: DataSplits, batch_size: int, device: torch.device,
    execution: Execution = Execution(),
) -> EvalResult:
    """Accuracy over the whole test split, in this process (rank 0 of a distributed run)."""
    model.eval()
    start = time.perf_counter()
    preds = []
    correct = 0
    for x, y in batches(
        splits.test, batch_size, shuffle=False, drop_last=False, workers=execution.workers,
        pin_memory=execution.pin_memory,
    ):
        with execution.autocast(device):
            pred = model(_to_input(x, splits, device)).argmax(1).cpu()
        correct += (pred == y).sum().item()
        preds.append(pred)
    seconds = time.perf_counter() - start
    predictions = torch.cat(preds) if preds else torch.empty(0, dtype=torch.int64)
    n = len(predictions)
    if n == 0:
        raise RunFailed("the test split is empty: nothing to evaluate")
    return EvalResult(correct / n, correct, n, seconds, predictions)
