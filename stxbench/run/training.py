"""The train and eval loops: batches, optimiser, schedule, one stage of training, evaluation."""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from typing import Protocol as TypingProtocol

import numpy as np
import torch
from torch import nn

from stxbench.data.contract import DataSplits
from stxbench.data.augment import stage_augmentation
from stxbench.run.errors import RunFailed
from stxbench.run.processes import Execution, all_reduce_sums, derive_seed, wrap_data_parallel
from stxbench.models.base import checking_spikes
from stxbench.run.protocol import StageSection


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

    def start(self, stage: str, total_steps: int, completed: int = 0, steps_per_epoch: int = 0) -> None: ...
    def advance(self, loss: float) -> None: ...
    def finish(self) -> None: ...


class NullReporter:
    def start(self, stage: str, total_steps: int, completed: int = 0, steps_per_epoch: int = 0) -> None:
        pass

    def advance(self, loss: float) -> None:
        pass

    def finish(self) -> None:
        pass


@dataclass
class StageResult:
    seconds: float


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


@dataclass
class StageHooks:
    """Who hears from a stage of training: the progress display, the observers of each epoch's
    end (``on_epoch_end(epoch, {"loss": ..., "train_accuracy": ...})``), and the checkpointer,
    which receives the stage's `StageState.progress` after every epoch.

    ``measure(epoch, metrics)`` runs first after every epoch, before the checkpoint (so what it
    keeps is in that checkpoint) and outside the stage's timing; the metrics it returns (the
    validation accuracy) are added to those the observers get."""

    reporter: Reporter = field(default_factory=NullReporter)
    on_epoch_end: Callable[[int, dict[str, float]], None] = lambda epoch, metrics: None
    on_checkpoint: Callable[[dict[str, Any]], None] | None = None
    measure: Callable[[int, dict[str, float]], dict[str, float]] | None = None


@dataclass
class StageState:
    """Where a stage of training stands: its optimiser, schedule, random streams and position.
    `progress` is what a checkpoint keeps of it; `restore` puts a stage back exactly there."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    augment_rng: torch.Generator  # augmentation, seeded with (stage seed, rank)
    mixup_rng: np.random.Generator  # mixup, seeded with (stage seed, rank, 1)
    epoch: int = 0  # the next epoch to train
    step: int = 0
    seconds: float = 0.0  # time already spent on the stage (a resumed stage restores it)

    def progress(self, seconds: float) -> dict[str, Any]:
        return {
            "epoch": self.epoch, "step": self.step, "seconds": seconds,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "rng": {"augment": self.augment_rng.get_state(), "mixup": self.mixup_rng.bit_generator.state,
                    "torch": torch.get_rng_state()},
        }

    def restore(self, progress: dict[str, Any]) -> None:
        self.epoch, self.step, self.seconds = progress["epoch"], progress["step"], progress["seconds"]
        self.optimizer.load_state_dict(progress["optimizer"])
        self.scheduler.load_state_dict(progress["scheduler"])
        self.augment_rng.set_state(progress["rng"]["augment"])
        self.mixup_rng.bit_generator.state = progress["rng"]["mixup"]
        torch.set_rng_state(progress["rng"]["torch"])


@dataclass(frozen=True)
class StagePlan:
    """A stage's fixed shape: batches per epoch, total and warm-up steps."""

    drop_last: bool
    per_epoch: int
    total: int
    warmup: int

    @classmethod
    def of(cls, splits: DataSplits, stage: StageSection) -> StagePlan:
        drop_last = len(splits.train) >= stage.batch_size  # fixed batch shapes, unless tiny
        per_epoch = steps_per_epoch(splits.train, stage.batch_size, drop_last)
        if stage.epoch_samples is not None:  # short epochs: the head of each epoch's order
            per_epoch = min(per_epoch, stage.epoch_samples // stage.batch_size)
        return cls(drop_last, per_epoch, per_epoch * stage.epochs, round(stage.warmup_epochs * per_epoch))


def train_stage(
    model: nn.Module,
    splits: DataSplits,
    stage: StageSection,
    *,
    name: str,
    seed: int,
    device: torch.device,
    execution: Execution = Execution(),
    hooks: StageHooks | None = None,
    resume: dict[str, Any] | None = None,
) -> StageResult:
    """Train ``model`` for one stage. A non-finite loss stops the run (`RunFailed`).

    Randomness: the sample order of epoch ``e`` comes from a generator seeded with
    ``(stage seed, e)``, identical on every process; augmentation (the dataset's, then the
    stage's RandAugment and RandomErasing, `stxbench.data.augment`) and mixup draw from streams
    seeded with ``(stage seed, rank)``.

    After every epoch ``hooks.on_checkpoint`` receives the stage's progress (epoch, step,
    optimiser, schedule and every random stream); passing it back as ``resume``, with the
    model's weights of that moment, continues the stage exactly as if it had never stopped."""
    loop = StageLoop(model, splits, stage, name=name, seed=seed, device=device, execution=execution,
                     hooks=hooks or StageHooks())
    if resume is not None:
        loop.state.restore(resume)
    return loop.run()


def find_bad_neuron(model: nn.Module, x: torch.Tensor) -> None:
    """Run the batch ``x`` through ``model`` again with every neuron layer checking its spikes:
    raises `NeuronOutputError` at the first layer whose output is not 0/1 (NaN included). Used
    when a loss or logits come out non-finite, to tell a broken backend from a diverged run."""
    with torch.no_grad(), checking_spikes(model):
        model(x)


class StageLoop:
    """The training loop of one stage: what stays fixed through it (model, data, the protocol's
    section, where it runs), its `StageState`, and the epoch and step that advance that state."""

    def __init__(self, model: nn.Module, splits: DataSplits, stage: StageSection, *, name: str,
                 seed: int, device: torch.device, execution: Execution, hooks: StageHooks):
        self.model, self.splits, self.stage, self.name = model, splits, stage, name
        self.device, self.execution, self.hooks = device, execution, hooks
        self.extra = stage_augmentation(stage, splits, STAGE_SECTIONS[name])
        self.base_seed = stage_seed(seed, name)
        torch.manual_seed(self.base_seed)
        self.plan = StagePlan.of(splits, stage)
        floor = stage.min_lr / stage.lr
        optimizer = make_optimizer(model, stage)
        self.state = StageState(
            optimizer=optimizer,
            scheduler=torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda step: lr_factor(step, self.plan.total, self.plan.warmup, stage.schedule, floor)),
            augment_rng=torch.Generator().manual_seed(derive_seed(self.base_seed, execution.rank)),
            mixup_rng=np.random.default_rng(derive_seed(self.base_seed, execution.rank, 1)),
        )
        self.criterion = nn.CrossEntropyLoss(label_smoothing=stage.label_smoothing)
        self.net = wrap_data_parallel(model, execution, device)
        self.spikes_checked = False  # the first step checks every neuron layer's spikes

    def run(self) -> StageResult:
        """Every epoch left; after each, the checkpointer and the epoch's observers."""
        state, hooks = self.state, self.hooks
        hooks.reporter.start(self.name, self.plan.total, completed=state.step, steps_per_epoch=self.plan.per_epoch)
        start = time.perf_counter() - state.seconds
        try:
            while state.epoch < self.stage.epochs:
                self.model.train()  # again every epoch: a measurement may have switched to eval
                loss_sum, correct, seen = all_reduce_sums(self.train_epoch(), self.execution, self.device)
                state.epoch += 1
                values = {"loss": loss_sum / max(seen, 1), "train_accuracy": correct / max(seen, 1)}
                if hooks.measure is not None:
                    measured_from = time.perf_counter()
                    values.update(hooks.measure(state.epoch, dict(values)))
                    start += time.perf_counter() - measured_from  # not part of the stage's time
                if hooks.on_checkpoint is not None:
                    hooks.on_checkpoint(state.progress(time.perf_counter() - start))
                hooks.on_epoch_end(state.epoch, values)
        finally:
            hooks.reporter.finish()
        return StageResult(time.perf_counter() - start)

    def train_epoch(self) -> list[float]:
        """One epoch over this process's share of every batch; returns (loss sum, correct, seen)."""
        stage, execution, epoch = self.stage, self.execution, self.state.epoch
        order = torch.Generator().manual_seed(derive_seed(self.base_seed, epoch))
        mixing = stage.mixup > 0 and (stage.mixup_epochs is None or epoch < stage.mixup_epochs)
        loss_sum, correct, seen = 0.0, 0, 0
        for step, (x, y) in enumerate(batches(
            self.splits.train, stage.batch_size, shuffle=True, drop_last=self.plan.drop_last,
            generator=order, shard=(execution.rank, execution.world_size), workers=execution.workers,
            pin_memory=execution.pin_memory,
        )):
            if step == self.plan.per_epoch:  # an epoch of epoch_samples ends early
                break
            y = y.to(self.device, non_blocking=True)
            loss_value, logits = self.train_step(x, y, mixing)
            loss_sum += loss_value * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(y)
            self.hooks.reporter.advance(loss_value)
        return [loss_sum, correct, seen]

    def train_step(self, x: torch.Tensor, y: torch.Tensor, mixing: bool) -> tuple[float, torch.Tensor]:
        """One optimiser step on a batch (augmented, mixed up when the epoch mixes); returns the
        loss and the logits."""
        stage, state, splits = self.stage, self.state, self.splits
        x = x.to(self.device, non_blocking=True)
        if self.extra.raw is not None:  # RandAugment works on stored images, before normalisation
            x = self.extra.raw(x, state.augment_rng)
        x = splits.prepare(x) if splits.prepare else x
        if splits.augment is not None:
            x = splits.augment(x, state.augment_rng)
        if self.extra.erase is not None:
            x = self.extra.erase(x, state.augment_rng)
        target = y
        if mixing:
            x, target = mixup(x, y, splits.num_classes, stage.mixup, state.mixup_rng)
        check = contextlib.nullcontext() if self.spikes_checked else checking_spikes(self.model)
        with self.execution.autocast(self.device), check:
            logits = self.net(x)
            loss = self.criterion(logits.float(), target)
        self.spikes_checked = True
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            with self.execution.autocast(self.device):
                find_bad_neuron(self.model, x)  # a backend's NaN is the backend's, not the lr's
            raise RunFailed(
                f"training diverged: loss is {loss_value} at {self.name} epoch {state.epoch + 1}, "
                f"step {state.step + 1}; lower the learning rate ({self.name} lr = {stage.lr})"
            )
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if stage.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), stage.grad_clip)
        state.optimizer.step()
        state.scheduler.step()
        state.step += 1
        return loss_value, logits


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
    execution: Execution = Execution(), dataset: torch.utils.data.Dataset | None = None,
) -> EvalResult:
    """Accuracy over the whole test split (or over ``dataset``, the validation split), in this
    process (rank 0 of a distributed run)."""
    model.eval()
    start = time.perf_counter()
    preds = []
    correct = 0
    for x, y in batches(
        splits.test if dataset is None else dataset, batch_size, shuffle=False, drop_last=False,
        workers=execution.workers, pin_memory=execution.pin_memory,
    ):
        x = _to_input(x, splits, device)
        with execution.autocast(device), checking_spikes(model) if not preds else contextlib.nullcontext():
            logits = model(x)
        if not bool(torch.isfinite(logits).all()):  # argmax of NaN logits would be a silent class
            with execution.autocast(device):
                find_bad_neuron(model, x)
            raise RunFailed("evaluation gave non-finite logits (the model's weights hold NaN or inf)")
        pred = logits.argmax(1).cpu()
        correct += (pred == y).sum().item()
        preds.append(pred)
    seconds = time.perf_counter() - start
    predictions = torch.cat(preds) if preds else torch.empty(0, dtype=torch.int64)
    n = len(predictions)
    if n == 0:
        raise RunFailed("the test split is empty: nothing to evaluate")
    return EvalResult(correct / n, correct, n, seconds, predictions)
