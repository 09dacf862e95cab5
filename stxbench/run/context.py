"""The live objects of one run (`Run`), shared by its stages (`stxbench.run.stages`) and read by
the record made of it (`stxbench.record.assemble`): the config, the plugins, the device, the
data, the run's identity, the checkpoint it resumes; and what every stage asks of them (the
model built, the dense model's cache file, training one stage, the test accuracy)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from stxbench.data.contract import DataSplits
from stxbench.host.plugin_host import PluginHost
from stxbench.measure.recovery import RecoveryProbe
from stxbench.models.base import SpikingModel
from stxbench.neurons.contract import Backend, NeuronSpec
from stxbench.neurons.site import Surrogate
from stxbench.record.run_identity import RunIdentity
from stxbench.run.checkpoints import dense_checkpoint_path, misfit, run_checkpoint_path, save_run_checkpoint
from stxbench.run.config import RunConfig
from stxbench.run.errors import UsageError
from stxbench.run.processes import Execution
from stxbench.run.protocol import StageSection
from stxbench.run.training import Reporter, StageHooks, evaluate, train_stage


@dataclass
class Run:
    """The live objects of one run, shared by its stages."""

    config: RunConfig
    host: PluginHost
    device: torch.device
    splits: DataSplits
    backend: Backend
    surrogate: Surrogate
    reporter: Reporter
    warn: Callable[[str], None]
    execution: Execution = Execution()
    #: the run checkpoint found in --out, if this run resumes one
    resume: dict[str, Any] | None = None
    #: results of finished stages, saved in every checkpoint (the record needs them)
    done: dict[str, Any] = field(default_factory=dict)
    #: the last checkpoint written, e.g. "dense epoch 3" (for the message on Ctrl-C)
    last_checkpoint: list[str] = field(default_factory=list)
    #: what besides its options decides this run's bits, built once when it starts (`start_run`):
    #: the dense cache key, the run checkpoints and the record's provenance read it
    identity: RunIdentity | None = None
    #: the protocol's validation split (carved from the training set), if it has one
    validation: torch.utils.data.Dataset | None = None

    def resume_of(self, stage: str) -> dict[str, Any] | None:
        return self.resume if self.resume and self.resume["stage"] == stage else None

    def checkpointer(self, stage: str, model: SpikingModel):
        """Saves the run checkpoint after every epoch of ``stage`` (rank 0 only)."""
        if not self.execution.is_main:
            return None

        def save(progress: dict[str, Any]) -> None:
            save_run_checkpoint(self.config, self.identity, stage, model, progress, self.done)
            self.last_checkpoint[:] = [f"{stage} epoch {progress['epoch']}"]

        return save

    def make_neuron_factory(self, spec: NeuronSpec):
        """Builds ``spec`` on the run's backend: natively, or through its family's reference."""
        return self.host.implementation(spec, self.backend, self.surrogate).make

    def notify(self, hook: str, **kwargs) -> None:
        if not self.execution.is_main:
            return  # observers see one run, not one per process
        for line in self.host.notify(hook, **kwargs):
            self.warn(line)

    def on_epoch_end(self, stage: str):
        return lambda epoch, values: self.notify("stxbench_epoch_end", stage=stage, epoch=epoch, metrics=values)

    def train(self, model: SpikingModel, stage: str, section: StageSection, measure=None) -> float:
        """Train ``model`` through one stage of the protocol, from where the run checkpoint
        stopped if it stopped in this stage; returns the stage's seconds. ``measure`` runs after
        every epoch (`StageHooks.measure`)."""
        resume = self.resume_of(stage)
        hooks = StageHooks(self.reporter, self.on_epoch_end(stage), self.checkpointer(stage, model), measure)
        result = train_stage(model, self.splits, section, name=stage, seed=self.config.seed,
                             device=self.device, execution=self.execution, hooks=hooks,
                             resume=resume and resume["progress"])
        return result.seconds

    def accuracy(self, model: SpikingModel) -> float | None:
        """Test accuracy, on rank 0 alone over the whole test split (None on the other ranks)."""
        if not self.execution.is_main:
            return None
        proto = self.config.protocol
        return evaluate(model, self.splits, proto.eval.batch_size, self.device, self.execution).accuracy

    def recovery_probe(self) -> RecoveryProbe | None:
        """What measures the recovery curve and diagnostics: on rank 0 of a run whose protocol
        has a validation split (None otherwise)."""
        if self.validation is None or not self.execution.is_main:
            return None
        proto = self.config.protocol
        return RecoveryProbe(self.splits, self.validation, proto.data.validation.diagnostic_samples,
                             proto.eval.batch_size, self.device, self.execution, self.done)


def dense_cache_path(run: Run) -> Path:
    """The dense model's cache file, keyed by all that changes its bits (`RunIdentity.dense_key`)."""
    return dense_checkpoint_path(run.config, run.identity)


def load_resumed_model(run: Run, model: SpikingModel) -> None:
    """The weights of the run checkpoint, into the model of the stage it stopped in."""
    path, state = run_checkpoint_path(run.config), run.resume["model"]
    problem = misfit(model, state)
    if problem is not None:
        raise UsageError(f"{path} does not fit the model ({problem}); delete it to start the run over")
    model.load_state_dict(state)
    run.warn(f"resuming from {path}: {run.resume['stage']} epoch {run.resume['progress']['epoch']}")


def build_model(run: Run) -> SpikingModel:
    proto = run.config.protocol
    family_name, _, size = proto.model.name.partition("-")
    family = run.host.model_family(family_name)
    base = run.host.neuron(proto.model.base_neuron)
    torch.manual_seed(run.config.seed)  # weight initialisation
    model = family.build(
        size,
        input_shape=run.splits.input_shape,
        num_classes=run.splits.num_classes,
        T=proto.model.T,
        make_neuron=run.make_neuron_factory(base),
        options=dict(proto.model.options),
    )
    return model.to(run.device)
