"""The train and eval loops: batches, optimiser, schedule, one stage of training, evaluation."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol as TypingProtocol

import numpy as np
import torch
from torch import nn

from stxbench.api import DataSplits
from stxbench.errors import RunFailed
from stxbench.protocol import StageSection


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of ``(x, y)``. In-memory tensors are sliced directly (no per-sample collation);
    other datasets go through a DataLoader."""
    tensors = _fast_tensors(dataset)
    n = len(dataset)
    if tensors is not None:
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            idx = order[start : start + batch_size]
            yield tensors[0][idx], tensors[1][idx]
        return
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, generator=generator
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


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Linear warm-up over ``warmup`` steps, then constant or cosine decay to 0 at ``total``."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant" or total <= warmup:
        return 1.0
    progress = (step - warmup) / (total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


class Reporter(TypingProtocol):
    """How training shows progress; the CLI passes a rich implementation."""

    def start(self, stage: str, total_steps: int) -> None: ...
    def advance(self, loss: float) -> None: ...
    def finish(self) -> None: ...


class NullReporter:
    def start(self, stage: str, total_steps: int) -> None:
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
) -> StageResult:
    """Train ``model`` for one stage. A non-finite loss stops the run (`RunFailed`)."""
    torch.manual_seed(stage_seed(seed, name))
    generator = torch.Generator().manual_seed(stage_seed(seed, name))
    drop_last = len(splits.train) >= stage.batch_size  # fixed batch shapes, unless tiny
    per_epoch = steps_per_epoch(splits.train, stage.batch_size, drop_last)
    total = per_epoch * stage.epochs
    warmup = round(stage.warmup_epochs * per_epoch)
    optimizer = make_optimizer(model, stage)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total, warmup, stage.schedule)
    )
    criterion = nn.CrossEntropyLoss(label_smoothing=stage.label_smoothing)
    reporter.start(name, total)
    start = time.perf_counter()
    step = 0
    loss_value = None
    model.train()
    try:
        for epoch in range(stage.epochs):
            loss_sum, correct, seen = 0.0, 0, 0
            for x, y in batches(splits.train, stage.batch_size, shuffle=True, drop_last=drop_last, generator=generator):
                x = _to_input(x, splits, device)
                if splits.augment is not None:
                    x = splits.augment(x, generator)
                y = y.to(device, non_blocking=True)
                logits = model(x)
                loss = criterion(logits, y)
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
def evaluate(model: nn.Module, splits: DataSplits, batch_size: int, device: torch.device) -> EvalResult:
    model.eval()
    start = time.perf_counter()
    preds = []
    correct = 0
    for x, y in batches(splits.test, batch_size, shuffle=False, drop_last=False):
        pred = model(_to_input(x, splits, device)).argmax(1).cpu()
        correct += (pred == y).sum().item()
        preds.append(pred)
    seconds = time.perf_counter() - start
    predictions = torch.cat(preds) if preds else torch.empty(0, dtype=torch.int64)
    n = len(predictions)
    if n == 0:
        raise RunFailed("the test split is empty: nothing to evaluate")
    return EvalResult(correct / n, correct, n, seconds, predictions)
