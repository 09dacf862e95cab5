"""One run, in the stages of DESIGN.md: dense training (cached) -> pruning -> neuron swap and
fine-tuning -> evaluation -> record."""

from __future__ import annotations

import hashlib
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

import stxbench
from stxbench import metrics
from stxbench.api import Backend, DataSplits, NeuronSpec, Surrogate
from stxbench.compile import compile_neurons, first_batch
from stxbench.counting import count_test_head
from stxbench.data import load_splits
from stxbench.energy import cost_model, energy_of
from stxbench.errors import RunFailed
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
    atomic_write_text,
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


def dense_checkpoint_path(config: RunConfig, execution: Execution = Execution()) -> Path:
    key = config.protocol.dense_key(config.seed, config.backend)
    variant = {k: v for k, v in (("precision", execution.precision), ("world_size", execution.world_size))
               if v != getattr(Execution, k)}
    if variant:  # bf16 or data-parallel training gives other weights than the default
        key = hashlib.sha256(f"{key}{sorted(variant.items())}".encode()).hexdigest()
    return config.cache_dir / "dense" / f"{config.protocol.name}-{key[:24]}.pt"


def _load_checkpoint(path: Path, model: SpikingModel, warn) -> bool:
    """Load a cached dense checkpoint if it is present and intact."""
    digest_path = path.with_suffix(".sha256")
    if not path.exists() or not digest_path.exists():
        return False
    if sha256_file(path) != digest_path.read_text().strip():
        warn(f"cached dense checkpoint {path} is corrupted (sha256 mismatch); retraining it")
        return False
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return True


def _save_checkpoint(path: Path, model: SpikingModel) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
    digest = sha256_file(tmp)
    os.replace(tmp, path)
    atomic_write_text(path.with_suffix(".sha256"), digest + "\n")


def stage_dense(run: Run, model: SpikingModel) -> tuple[float | None, Path]:
    """Train the dense model with the base neuron, or load it from the cache. In a distributed
    run rank 0 reads and writes the cache and the others take its weights."""
    ex = run.execution
    path = dense_checkpoint_path(run.config, ex)
    cached = ex.is_main and _load_checkpoint(path, model, run.warn)
    if broadcast_flag(cached, ex, run.device):
        model.to(run.device)
        broadcast_state(model, ex)
        return None, path
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
    )
    if ex.is_main:
        _save_checkpoint(path, model)
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
    the processes of a distributed run other than rank 0, which write nothing)."""
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
        record = _execute(config, host, execution, reporter or NullReporter(), warn)
        barrier(execution)  # the others wait until rank 0 has written the record
        return record


def _execute(config: RunConfig, host: PluginHost, execution: Execution, reporter: Reporter,
             warn: Callable[[str], None]) -> Record | None:
    if config.threads:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    proto = config.protocol
    splits = load_splits(proto, host, config.data_root)
    if execution.distributed:
        check_distributed([proto.train.batch_size, proto.finetune.batch_size], len(splits.train),
                          execution.world_size)
    device = process_device(config.device, execution)
    configure_cuda(device)
    backend = host.backend(config.backend)
    run = Run(config, host, device, splits, backend, config.surrogate, reporter, warn, execution)
    run.notify("stxbench_run_start", config=config)
    main = execution.is_main

    model = build_model(run)
    compiler = compile_neurons(model, config.cache_dir, warn) if config.compile else None
    params_total = metrics.count_parameters(model)
    shapes = metrics.dense_shapes(model)
    dense_s, checkpoint = stage_dense(run, model)
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
        provenance=Provenance(
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
            plugin_sha256=host.plugin_sha256(used_components(config, host)),
            checkpoint_sha256=sha256_file(checkpoint),
            created=now_utc(),
        ),
    )
    write_record(record, config.out_dir / RESULT_FILE)
    run.notify("stxbench_run_end", record=record)
    return record


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


__all__ = ["execute", "default_cache_dir", "RESULT_FILE", "RunFailed"]
