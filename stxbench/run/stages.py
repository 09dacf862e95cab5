"""One run, in the stages of docs/methods.md: dense training (cached) -> pruning -> neuron swap and
fine-tuning -> evaluation -> record."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from stxbench.run import cpu_pin

from stxbench.measure import metrics
from stxbench.neurons.contract import Backend, NeuronSpec
from stxbench.neurons.site import Surrogate
from stxbench.data.contract import DataSplits
from stxbench.data.augment import stage_augmentation
from stxbench.run.checkpoints import (
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
from stxbench.neurons.compile import NeuronCompiler, compile_neurons, first_batch, use_cache_dir
from stxbench.measure.counting import count_test_head
from stxbench.data.splits import carve_validation, load_splits
from stxbench.run.errors import UsageError
from stxbench.run.processes import (
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
from stxbench.host.plugin_host import PluginHost
from stxbench.run.failures import failures_explained
from stxbench.models.base import SpikingModel
from stxbench.run.paths import run_lock
from stxbench.run.protocol import StageSection
from stxbench.measure.recovery import RecoveryProbe
from stxbench.record.schema import Counts, Record, write_record
from stxbench.record.assemble import Outcome, make_record
from stxbench.record.run_identity import RunIdentity
from stxbench.run.config import RunConfig
from stxbench.run.context import Run, build_model, dense_cache_path, load_resumed_model
from stxbench.run.training import (
    EvalResult,
    NullReporter,
    Reporter,
    StageHooks,
    evaluate,
    seed_everything,
    train_stage,
)

RESULT_FILE = "result.json"


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


def warn_on_stderr(line: str) -> None:
    print(f"warning: {line}", file=sys.stderr)


def execution_of(config: RunConfig, rank: int = 0, world_size: int = 1, local_rank: int = 0) -> Execution:
    """How ``config`` executes in this process (one of ``world_size``): its precision, data
    workers and memory pinning, and its rank."""
    return Execution(precision=config.precision, workers=resolve_workers(config.workers, config.device, world_size),
                     pin_memory=config.device.startswith("cuda"), rank=rank, world_size=world_size,
                     local_rank=local_rank)


def execute(
    config: RunConfig,
    host: PluginHost,
    reporter: Reporter | None = None,
    warn: Callable[[str], None] = warn_on_stderr,
    before_work: Callable[[], None] | None = None,
) -> Record | None:
    """Run every stage and write ``<out>/result.json``. ``before_work`` is called once every
    check has passed (data loaded, model built), before the first stage starts. Returns the validated record (None on
    the processes of a distributed run other than rank 0, which write nothing).

    A checkpoint in ``--out`` (left by a run that was killed or interrupted) is resumed from;
    Ctrl-C, SIGTERM and CUDA out-of-memory stop the run with the last checkpoint kept. While it
    runs, ``--out`` is locked (`stxbench.run.paths.run_lock`): a second run into it fails at once.
    Whatever plugin code raises, ``sys.exit()`` included, fails the run with one line naming
    the plugin; a neuron module that breaks the neuron contract is blamed on its backend."""
    last: list[str] = []
    with failures_explained(config, host, last):
        with process_group(config.device) as env:
            execution = execution_of(config, *(env or (0, 1, 0)))
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
    warn: Callable[[str], None] = warn_on_stderr,
) -> tuple[float | None, Path]:
    """Stage 1 alone, in one process: train ``config``'s dense model into the cache (or find it
    there); returns its training seconds (None: it was cached) and its path. A sweep runs this
    once per dense model before the runs that share it start. Every epoch is checkpointed in
    ``config.out_dir`` (a timed-out job resumes there); the checkpoint goes once the dense model
    is in the cache. Not a CLI command: the sweep executors call it (stxbench.executors)."""
    last: list[str] = []
    with failures_explained(config, host, last):
        run = start_run(config, host, execution_of(config), reporter or NullReporter(), warn, last)
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


