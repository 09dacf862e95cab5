"""One run, in the stages of DESIGN.md: dense training (cached) -> pruning -> neuron swap and
fine-tuning -> evaluation -> record."""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import stxbench
from stxbench import metrics
from stxbench.api import Backend, DataSplits, NeuronSpec, Surrogate
from stxbench.augment import stage_augmentation
from stxbench.checkpoints import (
    dense_checkpoint_path,
    load_dense,
    load_run_checkpoint,
    remove_run_checkpoint,
    run_checkpoint_path,
    save_dense,
    save_run_checkpoint,
)
from stxbench.compile import NeuronCompiler, compile_neurons, first_batch
from stxbench.counting import count_test_head
from stxbench.data import carve_validation, load_splits
from stxbench.energy import cost_model, energy_of
from stxbench.errors import RunFailed, RunInterrupted, UsageError
from stxbench.execution import (
    Execution,
    barrier,
    broadcast_flag,
    broadcast_state,
    check_distributed,
    configure_cuda,
    cudnn_settings,
    process_device,
    process_group,
    resolve_workers,
)
from stxbench.host import PluginHost
from stxbench.models.base import SpikingModel
from stxbench.protocol import StageSection
from stxbench.provenance import device_name, git_commit, now_utc, sha256_file
from stxbench.recovery import RecoveryProbe
from stxbench.record import (
    ConfigInfo,
    Counts,
    ExecutionInfo,
    Metrics,
    Provenance,
    ProtocolInfo,
    Record,
    Recovery,
    Timing,
    write_record,
)
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
    #: the protocol's validation split (carved from the training set), if it has one
    validation: torch.utils.data.Dataset | None = None

    def resume_of(self, stage: str) -> dict[str, Any] | None:
        return self.resume if self.resume and self.resume["stage"] == stage else None

    def checkpointer(self, stage: str, model: SpikingModel):
        """Saves the run checkpoint after every epoch of ``stage`` (rank 0 only)."""
        if not self.execution.is_main:
            return None

        def save(progress: dict[str, Any]) -> None:
            save_run_checkpoint(self.config, stage, model, progress, self.done)
            self.last_checkpoint[:] = [f"{stage} epoch {progress['epoch']}"]

        return save

    def make_neuron_factory(self, spec: NeuronSpec):
        return lambda site: self.backend.make_neuron(spec, site, self.surrogate)

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


def stage_dense(run: Run, model: SpikingModel) -> tuple[float | None, Path]:
    """Stage 1: the dense model (`train_or_load_dense`) and the seconds it took to train (None
    when it came from the cache; a run resumed in stage 3 keeps those of its dense stage)."""
    seconds, path = train_or_load_dense(run, model)
    if run.resume_of("finetune") is not None:
        seconds = run.done.get("dense_s")  # the dense stage ran before the interruption
    run.done["dense_s"] = seconds
    return seconds, path


def train_or_load_dense(run: Run, model: SpikingModel) -> tuple[float | None, Path]:
    """Train the dense model with the base neuron, or load it from the cache. In a distributed
    run rank 0 reads and writes the cache and the others take its weights."""
    ex = run.execution
    path = dense_checkpoint_path(run.config, ex)
    resume = run.resume_of("dense")
    if resume is None:
        cached = ex.is_main and load_dense(path, model, run.warn)
        if broadcast_flag(cached, ex, run.device):
            model.to(run.device)
            broadcast_state(model, ex)
            return None, path
    else:
        model.load_state_dict(resume["model"])
    seconds = run.train(model, "dense", run.config.protocol.train)
    if ex.is_main:
        save_dense(path, model)
    broadcast_state(model, ex)  # the others wait here while rank 0 writes
    return seconds, path


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
        model.load_state_dict(resume["model"])
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
) -> Record | None:
    """Run every stage and write ``<out>/result.json``. Returns the validated record (None on
    the processes of a distributed run other than rank 0, which write nothing).

    A checkpoint in ``--out`` (left by a run that was killed or interrupted) is resumed from;
    Ctrl-C and CUDA out-of-memory stop the run with the last checkpoint kept."""
    last: list[str] = []
    try:
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
            record = _execute(config, host, execution, reporter or NullReporter(), warn, last)
            barrier(execution)  # the others wait until rank 0 has written the record
            return record
    except KeyboardInterrupt:
        raise RunInterrupted("interrupted", config.out_dir, last[0] if last else None) from None
    except torch.cuda.OutOfMemoryError:
        raise RunInterrupted(
            f"CUDA out of memory (train batch {config.protocol.train.batch_size}, fine-tune batch "
            f"{config.protocol.finetune.batch_size}): free the GPU or lower the batch size "
            "(--set train.batch_size=..., which makes the run unofficial)",
            config.out_dir, last[0] if last else None, exit_code=1,
        ) from None
    except (UsageError, RunFailed):
        raise
    except Exception as exc:
        culprit = host.blame(exc)
        if culprit is None:
            raise  # a bug in stxbench itself: keep the traceback
        raise RunFailed(culprit) from None


@dataclass
class Outcome:
    """What the stages measured, filled in as they run; the record is made of it."""

    params_total: int
    shapes: dict[str, tuple[int, int]]  # every ST matrix's dense (out, in), before pruning
    dense_s: float | None = None  # None: the dense model came from the cache
    checkpoint: Path | None = None  # the dense checkpoint
    accuracy_dense: float | None = None
    accuracy_pruned: float | None = None
    finetune_s: float = 0.0
    final: EvalResult | None = None
    rates: metrics.FiringRates | None = None
    counts: Counts | None = None
    recovery: Recovery | None = None


def _execute(config: RunConfig, host: PluginHost, execution: Execution, reporter: Reporter,
             warn: Callable[[str], None], last_checkpoint: list[str]) -> Record | None:
    run = start_run(config, host, execution, reporter, warn, last_checkpoint)
    model = build_model(run)
    compiler = compile_neurons(model, config.cache_dir, warn) if config.compile else None
    outcome = Outcome(metrics.count_parameters(model), metrics.dense_shapes(model))
    outcome.dense_s, outcome.checkpoint = stage_dense(run, model)
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
    """Threads and seeds, the checkpoint to resume (if any), the data, the device: the `Run`."""
    if config.threads:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    proto = config.protocol
    resume = load_run_checkpoint(config)
    if resume is not None and execution.is_main:
        progress = resume["progress"]
        warn(f"resuming from {run_checkpoint_path(config)}: {resume['stage']} epoch {progress['epoch']}")
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
    device = process_device(config.device, execution)
    configure_cuda(device)
    backend = host.backend(config.backend)
    run = Run(config, host, device, splits, backend, config.surrogate, reporter, warn, execution,
              resume=resume, done=dict(resume["done"]) if resume else {},
              last_checkpoint=last_checkpoint, validation=validation)
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
    return count_test_head(model, run.splits, ev.batch_size, ev.count_samples, run.device)


def make_record(run: Run, model: SpikingModel, outcome: Outcome, compiler: NeuronCompiler | None) -> Record:
    config, proto = run.config, run.config.protocol
    final, counts = outcome.final, outcome.counts
    stats = metrics.matrix_stats(model, outcome.shapes)
    return Record(
        protocol=ProtocolInfo(
            name=proto.name, sha256=config.protocol_sha256, official=config.official,
            overrides=config.overrides,
        ),
        config=ConfigInfo(
            neuron=config.neuron, pruner=config.pruner, pruner_params=config.pruner_params,
            backend=config.backend, seed=config.seed, dataset=proto.data.dataset,
            model=proto.model.name, T=proto.model.T, base_neuron=proto.model.base_neuron,
            surrogate=config.surrogate.name, surrogate_alpha=config.surrogate.alpha,
        ),
        metrics=Metrics(
            accuracy=final.accuracy, accuracy_dense=outcome.accuracy_dense,
            accuracy_pruned=outcome.accuracy_pruned, correct=final.correct, test_samples=final.samples,
            params_total=outcome.params_total, params_effective=metrics.params_effective(model, stats),
            sparsity=metrics.st_sparsity(stats), firing_rate=outcome.rates.overall(),
            firing_rates=outcome.rates.per_layer(), matrices=stats,
        ),
        counts=counts,
        energy=energy_of(counts, cost_model(proto.energy_model)) if counts else None,
        timing=Timing(
            dense_s=outcome.dense_s, finetune_s=outcome.finetune_s, eval_s=final.seconds,
            samples_per_s=final.samples / final.seconds if final.seconds > 0 else float(final.samples),
            validation_s=run.done.get("validation_s") if outcome.recovery else None,
        ),
        provenance=provenance(run, outcome.checkpoint, compiler),
        recovery=outcome.recovery,
    )


def write_result(run: Run, record: Record) -> None:
    """Write the record; it replaces the run checkpoint as the run's result."""
    write_record(record, run.config.out_dir / RESULT_FILE)
    remove_run_checkpoint(run.config)
    run.notify("stxbench_run_end", record=record)


def provenance(run: Run, checkpoint: Path, compiler: NeuronCompiler | None) -> Provenance:
    execution, backend = run.execution, run.backend
    return Provenance(
        stxbench=stxbench.__version__,
        python=platform.python_version(),
        torch=torch.__version__,
        libraries={backend.library: backend.library_version()} if backend.library else {},
        platform=platform.platform(),
        device=device_name(run.device),
        threads=torch.get_num_threads(),
        execution=ExecutionInfo(
            precision=execution.precision, world_size=execution.world_size,
            dist_backend=torch.distributed.get_backend() if execution.distributed else None,
            data_workers=execution.workers, pin_memory=execution.pin_memory,
            cudnn=cudnn_settings(run.device),
            compile=compiler.info() if compiler else None,
        ),
        git_commit=git_commit(),
        plugin_sha256=run.host.plugin_sha256(used_components(run.config, run.host)),
        checkpoint_sha256=sha256_file(checkpoint),
        created=now_utc(),
    )


def used_components(config: RunConfig, host: PluginHost):
    proto = config.protocol
    return [
        host.get("dataset", proto.data.dataset),
        host.get("model", proto.model.name.partition("-")[0]),
        host.get("neuron", proto.model.base_neuron),
        host.get("neuron", config.neuron),
        host.get("pruner", config.pruner),
        host.get("backend", config.backend),
    ]
