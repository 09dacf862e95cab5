"""Dense first: the tasks of a sweep, each dense model trained by one task before its runs.

Runs that share a dense model (same protocol, seed and backend: the dense cache's key, which
`stxbench.run.checkpoints.dense_checkpoint_path` alone decides) form a group; a group whose dense
model is not in the cache gets one dense task, and its runs start after it. The plan is made of
resolved run configs, whatever produced them (a neuron x pruner x seed grid, a compression grid).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from stxbench.run.checkpoints import dense_cached, dense_checkpoint_path
from stxbench.executors.tasks import DENSE_FOLDER, Task, plugin_host
from stxbench.record.run_identity import RunIdentity
from stxbench.run.config import RunConfig
from stxbench.run.config import RunOptions


@dataclass
class Plan:
    dense: list[Task]  # dense models to train, one task each
    runs: list[Task]  # the runs, in the order given; ``needs`` names their dense task
    #: scheduler job ids of dense tasks an earlier submission queued or started, which runs here need
    waits_for: list[str] = dataclasses.field(default_factory=list)

    @property
    def tasks(self) -> list[Task]:
        return [*self.dense, *self.runs]


def dense_path(config: RunConfig) -> Path:
    """Where ``config``'s dense model is cached (as a one-process run of it computes it)."""
    return dense_checkpoint_path(config, RunIdentity.planned(config, plugin_host(config.plugins)))


def dense_config(config: RunConfig, folder: Path) -> RunConfig:
    """The config of the task that trains ``config``'s dense model: the base neuron, no pruner
    (the dense key depends on neither), checkpointing in ``folder/_dense/<cache name>/``."""
    return dataclasses.replace(
        config, neuron=config.protocol.model.base_neuron, pruner="none", pruner_params={},
        out_dir=folder / DENSE_FOLDER / dense_path(config).stem,
    )


def dense_label(config: RunConfig, folder: Path) -> str:
    """The label of the task that trains ``config``'s dense model (`Task.label`)."""
    return f"{DENSE_FOLDER}/{dense_config(config, folder).out_dir.name}"


def make_plan(configs: list[RunConfig], folder: Path, requested: RunOptions, *,
              active: dict[Path, str | None] | None = None, trained: set[Path] = frozenset(),
              train_cached: bool = False) -> Plan:
    """The tasks of the runs ``configs`` (of the sweep in ``folder``). A dense model gets a task
    unless a task of an earlier submission is queued or running for it (``active``: dense path
    -> its job id), or finished (``trained``), or, unless ``train_cached``, it is in the cache. A
    SLURM sweep plans a task even for a dense model cached here, because a node may resolve to
    another one (``--device auto`` is CUDA there); such a task returns at once where it is cached."""
    active = active or {}
    dense: dict[Path, Task] = {}
    runs: list[Task] = []
    waits_for: list[str] = []
    for config in configs:
        path = dense_path(config)
        needs = None
        if path in active:
            needs = dense_label(config, folder)
            job = active[path]
            if job is not None and job not in waits_for:
                waits_for.append(job)
        elif path not in trained and (train_cached or not dense_cached(path)):
            if path not in dense:
                dense[path] = Task("dense", dense_config(config, folder), requested.device, requested.precision)
            needs = dense[path].label
        runs.append(Task("run", config, requested.device, requested.precision, needs=needs))
    return Plan(list(dense.values()), runs, waits_for)
