"""One run, in the stages of docs/methods.md: dense training (cached) -> pruning -> neuron swap and
fine-tuning -> evaluation -> record."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from stxbench import cpu_pin, metrics
from stxbench.api import Backend, DataSplits, NeuronSpec, Surrogate
from stxbench.augment import stage_augmentation
from stxbench.checkpoints import (
    dense_checkpoint_path,
    dense_lock,
    load_dense,
    load_run_checkpoint,
    misfit,
    remove_run_checkpoint,
    run_checkpoint_path,
    save_dense,
    save_run_checkpoint,
)
from stxbench.compile import NeuronCompiler, compile_neurons, first_batch, use_cache_dir
from stxbench.counting import count_test_head
from stxbench.data import carve_validation, load_splits
from stxbench.errors import UsageError
from stxbench.execution import (
    Execution,
    barrier,
    broadcast_flag,
    broadcast_state,
    check_distributed,
    configure_cuda,
    process_device,
    process_group,
    resolve_workers,
)
from stxbench.host import PluginHost
from stxbench.failures import failures_explained
from stxbench.models.base import SpikingModel
from stxbench.paths import run_lock
from stxbench.protocol import StageSection
from stxbench.recovery import RecoveryProbe
from stxbench.record import Counts, Record, write_record
from stxbench.run_record import Outcome, make_record
from stxbench.run_identity import RunIdentity
from stxbench.runconfig import RunConfig
from stxbench.training import (
    EvalResult,
    NullReporter,
    Reporter,
    StageHooks,
    evaluate,
    seed_everything,
    train_stage,
)

RESULT_FILE = "result.json"


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


# -- stage 1 ------------------------------------------------------------------------------


def stage_dense(run: Run, model: SpikingModel) -> tuple[float | None, str | None]:
    """Stage 1: the dense model (`train_or_load_dense`), the seconds it took to train (None
    when it came from the cache) and its sha256. A run resumed in stage 3 keeps both of the
    dense model it was fine-tuning."""
    seconds, digest = train_or_load_dense(run, model)
    if run.resume_of("finetune") is not None:  # the dense stage ran before the interruption
        seconds, digest = run.done.get("dense_s"), run.done.get("dense_sha256", digest)
    run.done["dense_s"], run.done["dense_sha256"] = seconds, digest
    return seconds, digest


def train_or_load_dense(run: Run, model: SpikingModel) -> tuple[float | None, str | None]:
    """Train the dense model with the base neuron, or load it from the cache; returns the
    seconds of training and the sha256 of the checkpoint as loaded or written (None on ranks
    other than 0). In a distributed run rank 0 reads and writes the cache and the others take
    its weights. Rank 0 holds the dense model's lock throughout (`dense_lock`): a process
    wanting the same dense model (another run, a sweep's worker) waits, then loads it."""
    ex = run.execution
    path = dense_cache_path(run)
    with dense_lock(path, run.warn) if ex.is_main else contextlib.nullcontext():
        resume = run.resume_of("dense")
        if resume is None:
            digest = load_dense(path, model, run.warn) if ex.is_main else None
            if broadcast_flag(digest is not None, ex, run.device):
                model.to(run.device)
                broadcast_state(model, ex)
                return None, digest
        else:
            load_resumed_model(run, model)
        seconds = run.train(model, "dense", run.config.protocol.train)
        digest = save_dense(path, model) if ex.is_main else None
        broadcast_state(model, ex)  # the others wait here while rank 0 writes
    return seconds, digest


# -- stages 2 and 3 -----------------------------------------------------------------------


def stage_prune(run: Run, model: SpikingModel) -> None:
    pruner = run.host.pruner(run.config.pruner)
    params = pruner.Params(**run.config.pruner_params)
    pruner.prune(model, params)
    model.to(run.device)


def stage_finetune(run: Run, model: SpikingModel, probe: RecoveryProbe | None = None) -> float:
    """Stage 3: swap in the run's neuron and fine-tune; with a ``probe``, the recovery curve
    starts right after the swap and gains a point after every epoch."""
    spec = run.host.neuron(run.config.neuron)
    model.swap_neurons(run.make_neuron_factory(spec))
    resume = run.resume_of("finetune")
    if resume is not None:
        load_resumed_model(run, model)
    model.to(run.device)
    if probe is not None:
        probe.after_pruning(model)
    seconds = run.train(model, "finetune", run.config.protocol.finetune,
                        measure=probe.measurer(model) if probe else None)
    run.host.pruner(run.config.pruner).finalize(model)
    return seconds


# -- the run ------------------------------------------------------------------------------


def execute(
    config: RunConfig,
    host: PluginHost,
    reporter: Reporter | None = None,
    warn: Callable[[str], None] = lambda line: print(f"warning: {line}", file=sys.stderr),
    before_work: Callable[[], None] | None = None,
) -> Record | None:
    """Run every stage and write ``<out>/result.json``. ``before_work`` is called once every
    check has passed (data loaded, model built), before the first stage starts. Returns the validated record (None on
    the processes of a distributed run other than rank 0, which write nothing).

    A checkpoint in ``--out`` (left by a run that was killed or interrupted) is resumed from;
    Ctrl-C, SIGTERM and CUDA out-of-memory stop the run with the last checkpoint kept. While it
    runs, ``--out`` is locked (`stxbench.paths.run_lock`): a second run into it fails at once.
    Whatever plugin code raises, ``sys.exit()`` included, fails the run with one line naming
    the plugin; a neuron module that breaks the neuron contract is blamed on its backend."""
    last: list[str] = []
    with failures_explained(config, host, last):
        with process_group(config.device) as env:
            rank, world, local_rank = env or (0, 1, 0)
            execution = Execution(
                precision=config.precision,
                workers=resolve_workers(config.workers, config.device, world),
                pin_memory=config.device.startswith("cuda"),
                rank=rank, world_size=world, local_rank=local_rank,
            )
            if not execution.is_main:
                reporter, warn = NullReporter(), lambda line: None
            with run_lock(config.out_dir) if execution.is_main else contextlib.nullcontext():
                if execution.is_main and (config.out_dir / RESULT_FILE).exists():  # finished meanwhile
                    raise UsageError(f"--out {config.out_dir} already holds a finished run ({RESULT_FILE}); "
                                     "choose another --out")
                record = _execute(config, host, execution, reporter or NullReporter(), warn, last,
                                  before_work if execution.is_main else None)
                barrier(execution)  # the others wait until rank 0 has written the record
            return record


def execute_dense(
    config: RunConfig,
    host: PluginHost,
    reporter: Reporter | None = None,
    warn: Callable[[str], None] = lambda line: print(f"warning: {line}", file=sys.stderr),
) -> tuple[float | None, Path]:
    """Stage 1 alone, in one process: train ``config``'s dense model into the cache (or find it
    there); returns its training seconds (None: it was cached) and its path. A sweep runs this
    once per dense model before the runs that share it start. Every epoch is checkpointed in
    ``config.out_dir`` (a timed-out job resumes there); the checkpoint goes once the dense model
    is in the cache. Not a CLI command: the sweep executors call it (stxbench.executors)."""
    last: list[str] = []
    with failures_explained(config, host, last):
        execution = Execution(precision=config.precision, pin_memory=config.device.startswith("cuda"),
                              workers=resolve_workers(config.workers, config.device, 1))
        run = start_run(config, host, execution, reporter or NullReporter(), warn, last)
        seconds, _ = train_or_load_dense(run, build_model(run))
        remove_run_checkpoint(config)
        return seconds, dense_cache_path(run)


def _execute(config: RunConfig, host: PluginHost, execution: Execution, reporter: Reporter,
             warn: Callable[[str], None], last_checkpoint: list[str],
             before_work: Callable[[], None] | None = None) -> Record | None:
    run = start_run(config, host, execution, reporter, warn, last_checkpoint)
    use_cache_dir(config.cache_dir)  # kernels a backend compiles itself (the torch backend's) too
    model = build_model(run)
    compiler = compile_neurons(model, config.cache_dir, warn) if config.compile else None
    if before_work is not None:
        before_work()
    outcome = Outcome(metrics.count_parameters(model), metrics.dense_shapes(model))
    outcome.dense_s, outcome.checkpoint_sha256 = stage_dense(run, model)
    # With a validation split the test set is touched once, at the end: the accuracies before
    # fine-tuning are measured on the validation split (the recovery curve) instead.
    probe = run.recovery_probe()
    if probe is not None:
        probe.before_pruning(model)
    elif run.validation is None:
        outcome.accuracy_dense = run.accuracy(model)
    stage_prune(run, model)
    if run.validation is None:
        outcome.accuracy_pruned = run.accuracy(model)
    outcome.finetune_s = stage_finetune(run, model, probe)
    if not execution.is_main:
        return None  # rank 0 alone evaluates, counts and writes the record
    outcome.final, outcome.rates = final_evaluation(run, model, compiler)
    if probe is not None:
        probe.after_finetuning(model)
        outcome.recovery = probe.result()
    outcome.counts = count_ops(run, model)
    record = make_record(run, model, outcome, compiler)
    write_result(run, record)
    return record


def start_run(config: RunConfig, host: PluginHost, execution: Execution, reporter: Reporter,
              warn: Callable[[str], None], last_checkpoint: list[str]) -> Run:
    """Threads and seeds, the device, the checkpoint to resume (if any), the data: the `Run`."""
    if config.threads:
        torch.set_num_threads(config.threads)
    proto = config.protocol
    if proto.cpu_pin and config.device == "cpu":
        cpu_pin.require(cpu_pin.PINS[proto.cpu_pin])
    seed_everything(config.seed)
    device = process_device(config.device, execution)
    backend = host.backend(config.backend)
    identity = RunIdentity.of_process(config, host, device, execution, backend)
    resume = load_run_checkpoint(config, identity)
    splits, validation = carve_validation(proto, load_splits(proto, host, config.data_root))
    for section in ("train", "finetune"):  # a stage's augmentation must fit the data: say so now
        stage = getattr(proto, section)
        stage_augmentation(stage, splits, section)
        if stage.epoch_samples is not None and stage.epoch_samples > len(splits.train):
            raise UsageError(f"protocol {proto.name}: {section}.epoch_samples = {stage.epoch_samples} "
                             f"exceeds the {len(splits.train)} training samples")
    if execution.distributed:
        check_distributed([proto.train.batch_size, proto.finetune.batch_size], len(splits.train),
                          execution.world_size)
    configure_cuda(device)
    run = Run(config, host, device, splits, backend, config.surrogate, reporter, warn, execution,
              resume=resume, done=dict(resume["done"]) if resume else {},
              last_checkpoint=last_checkpoint, identity=identity, validation=validation)
    run.notify("stxbench_run_start", config=config)
    return run


def final_evaluation(run: Run, model: SpikingModel,
                     compiler: NeuronCompiler | None) -> tuple[EvalResult, metrics.FiringRates]:
    """The timed evaluation over the test split, recording firing rates."""
    batch_size = run.config.protocol.eval.batch_size
    if compiler:  # compile the final neurons' evaluation graphs outside the timed evaluation
        evaluate(model, first_batch(run.splits, batch_size), batch_size, run.device, run.execution)
    with metrics.FiringRates(model) as rates:
        final = evaluate(model, run.splits, batch_size, run.device, run.execution)
    return final, rates


def count_ops(run: Run, model: SpikingModel) -> Counts | None:
    """Op counts on the head of the test split; a pass of its own, so that the evaluation's
    timing stays free of counting. None with --no-counts."""
    if not run.config.counts:
        return None
    ev = run.config.protocol.eval
    return count_test_head(model, run.splits, ev.batch_size, ev.count_samples, run.device, run.execution)


def write_result(run: Run, record: Record) -> None:
    """Write the record; it replaces the run checkpoint as the run's result."""
    write_record(record, run.config.out_dir / RESULT_FILE)
    remove_run_checkpoint(run.config)
    run.notify("stxbench_run_end", record=record)


