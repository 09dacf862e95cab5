"""One run, in the stages of DESIGN.md: dense training (cached) -> pruning -> neuron swap and
fine-tuning -> evaluation -> record."""

from __future__ import annotations

import os
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
from stxbench.checkpoints import (
    dense_checkpoint_path,
    load_dense,
    load_run_checkpoint,
    remove_run_checkpoint,
    run_checkpoint_path,
    save_dense,
    save_run_checkpoint,
)
from stxbench.compile import NeuronCompiler, compile_neurons, first_batch, use_cache_dir
from stxbench.counting import count_test_head
from stxbench.data import load_splits
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
from stxbench.provenance import device_name, git_commit, now_utc, sha256_file
from stxbench.record import (
    ConfigInfo,
    ExecutionInfo,
    Metrics,
    Provenance,
    ProtocolInfo,
    Record,
    Timing,
    write_record,
)
from stxbench.runconfig import RunConfig
from stxbench.training import NullReporter, Reporter, evaluate, seed_everything, train_stage

RESULT_FILE = "result.json"


def default_cache_dir() -> Path:
    env = os.environ.get("STXBENCH_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "stxbench"


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
    result = train_stage(
        model,
        run.splits,
        run.config.protocol.train,
        name="dense",
        seed=run.config.seed,
        device=run.device,
        reporter=run.reporter,
        on_epoch_end=run.on_epoch_end("dense"),
        execution=ex,
        resume=resume and resume["progress"],
        on_checkpoint=run.checkpointer("dense", model),
    )
    if ex.is_main:
        save_dense(path, model)
    broadcast_state(model, ex)  # the others wait here while rank 0 writes
    return result.seconds, path


# -- stages 2 and 3 -----------------------------------------------------------------------


def stage_prune(run: Run, model: SpikingModel) -> None:
    pruner = run.host.pruner(run.config.pruner)
    params = pruner.Params(**run.config.pruner_params)
    pruner.prune(model, params)
    model.to(run.device)


def stage_finetune(run: Run, model: SpikingModel) -> float:
    spec = run.host.neuron(run.config.neuron)
    model.swap_neurons(run.make_neuron_factory(spec))
    resume = run.resume_of("finetune")
    if resume is not None:
        model.load_state_dict(resume["model"])
    model.to(run.device)
    result = train_stage(
        model,
        run.splits,
        run.config.protocol.finetune,
        name="finetune",
        seed=run.config.seed,
        device=run.device,
        reporter=run.reporter,
        on_epoch_end=run.on_epoch_end("finetune"),
        execution=run.execution,
        resume=resume and resume["progress"],
        on_checkpoint=run.checkpointer("finetune", model),
    )
    run.host.pruner(run.config.pruner).finalize(model)
    return result.seconds


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


def _execute(config: RunConfig, host: PluginHost, execution: Execution, reporter: Reporter,
             warn: Callable[[str], None], last_checkpoint: list[str]) -> Record | None:
    if config.threads:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    proto = config.protocol
    resume = load_run_checkpoint(config)
    if resume is not None and execution.is_main:
        progress = resume["progress"]
        warn(f"resuming from {run_checkpoint_path(config)}: {resume['stage']} epoch {progress['epoch']}")
    splits = load_splits(proto, host, config.data_root)
    if execution.distributed:
        check_distributed([proto.train.batch_size, proto.finetune.batch_size], len(splits.train),
                          execution.world_size)
    device = process_device(config.device, execution)
    configure_cuda(device)
    backend = host.backend(config.backend)
    run = Run(config, host, device, splits, backend, config.surrogate, reporter, warn, execution,
              resume=resume, done=dict(resume["done"]) if resume else {},
              last_checkpoint=last_checkpoint)
    run.notify("stxbench_run_start", config=config)
    main = execution.is_main

    use_cache_dir(config.cache_dir)  # kernels a backend compiles itself (the torch backend's) too
    model = build_model(run)
    compiler = compile_neurons(model, config.cache_dir, warn) if config.compile else None
    params_total = metrics.count_parameters(model)
    shapes = metrics.dense_shapes(model)
    dense_s, checkpoint = stage_dense(run, model)
    if run.resume_of("finetune") is not None:
        dense_s = run.done.get("dense_s")  # the dense stage ran before the interruption
    run.done["dense_s"] = dense_s
    # Evaluation runs on rank 0 alone, over the whole test split, exactly as in one process.
    if main:
        accuracy_dense = evaluate(model, splits, proto.eval.batch_size, run.device, execution).accuracy

    stage_prune(run, model)
    if main:
        accuracy_pruned = evaluate(model, splits, proto.eval.batch_size, run.device, execution).accuracy
    finetune_s = stage_finetune(run, model)
    if not main:
        return None

    if compiler:  # compile the final neurons' evaluation graphs outside the timed evaluation
        evaluate(model, first_batch(splits, proto.eval.batch_size), proto.eval.batch_size, run.device, execution)
    with metrics.FiringRates(model) as rates:
        final = evaluate(model, splits, proto.eval.batch_size, run.device, execution)
    stats = metrics.matrix_stats(model, shapes)
    counts = None
    if config.counts:  # a pass of its own, so that eval timing stays free of counting
        counts = count_test_head(model, splits, proto.eval.batch_size, proto.eval.count_samples, run.device)

    record = Record(
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
            accuracy=final.accuracy, accuracy_dense=accuracy_dense, accuracy_pruned=accuracy_pruned,
            correct=final.correct, test_samples=final.samples, params_total=params_total,
            params_effective=metrics.params_effective(model, stats),
            sparsity=metrics.st_sparsity(stats), firing_rate=rates.overall(),
            firing_rates=rates.per_layer(), matrices=stats,
        ),
        counts=counts,
        energy=energy_of(counts, cost_model(proto.energy_model)) if counts else None,
        timing=Timing(
            dense_s=dense_s, finetune_s=finetune_s, eval_s=final.seconds,
            samples_per_s=final.samples / final.seconds if final.seconds > 0 else float(final.samples),
        ),
        provenance=provenance(run, checkpoint, compiler),
    )
    write_record(record, config.out_dir / RESULT_FILE)
    remove_run_checkpoint(config)  # the record is the run's result now
    run.notify("stxbench_run_end", record=record)
    return record


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
