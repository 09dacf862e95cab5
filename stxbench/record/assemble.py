"""What a run's stages measured (`Outcome`) and the record made of it: metrics, counts, energy
under every convention, timing, provenance."""

from __future__ import annotations

import platform
from dataclasses import dataclass

import torch
from pydantic import ValidationError

from stxbench.measure import metrics
from stxbench.neurons.compile import NeuronCompiler
from stxbench.measure.energy import all_estimates, cost_model, energy_of
from stxbench.run.errors import RunFailed
from stxbench.run.processes import cudnn_settings
from stxbench.models.base import SpikingModel
from stxbench.record.provenance import device_name, git_commit, now_utc
from stxbench.run.context import Run
from stxbench.record.schema import (
    ConfigInfo,
    Counts,
    CpuNumerics,
    ExecutionInfo,
    Metrics,
    NeuronInfo,
    Provenance,
    ProtocolInfo,
    Record,
    Recovery,
    Timing,
)
from stxbench.run.training import EvalResult


@dataclass
class Outcome:
    """What the stages measured, filled in as they run; the record is made of it."""

    params_total: int
    shapes: dict[str, tuple[int, int]]  # every ST matrix's dense (out, in), before pruning
    dense_s: float | None = None  # None: the dense model came from the cache
    checkpoint_sha256: str | None = None  # of the dense checkpoint as loaded or written
    accuracy_dense: float | None = None
    accuracy_pruned: float | None = None
    finetune_s: float = 0.0
    final: EvalResult | None = None
    rates: metrics.FiringRates | None = None
    counts: Counts | None = None
    recovery: Recovery | None = None


def make_record(run: Run, model: SpikingModel, outcome: Outcome, compiler: NeuronCompiler | None) -> Record:
    config, proto = run.config, run.config.protocol
    final, counts = outcome.final, outcome.counts
    stats = metrics.matrix_stats(model, outcome.shapes)
    try:
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
                neurons=neuron_infos(run), baseline=config.baseline,
            ),
            metrics=Metrics(
                accuracy=final.accuracy, accuracy_dense=outcome.accuracy_dense,
                accuracy_pruned=outcome.accuracy_pruned, correct=final.correct, test_samples=final.samples,
                params_total=outcome.params_total, params_effective=metrics.params_effective(model, stats),
                sparsity=metrics.st_sparsity(stats), firing_rate=outcome.rates.overall(),
                firing_rates=outcome.rates.per_layer(), matrices=stats,
            ),
            counts=counts,
            energy=energy_of(counts, cost_model(proto.energy_model), proto.energy_convention) if counts else None,
            energies=all_estimates(counts) if counts else None,
            timing=Timing(
                dense_s=outcome.dense_s, finetune_s=outcome.finetune_s, eval_s=final.seconds,
                samples_per_s=final.samples / final.seconds if final.seconds > 0 else float(final.samples),
                validation_s=run.done.get("validation_s") if outcome.recovery else None,
            ),
            provenance=provenance(run, outcome.checkpoint_sha256, compiler),
            recovery=outcome.recovery,
        )
    except ValidationError as exc:  # a NaN or infinite metric: never written as a number
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise RunFailed(f"the run's results are not a valid record: {where}: {first['msg']} "
                        f"(input {first.get('input')!r})") from None


def provenance(run: Run, checkpoint_sha256: str, compiler: NeuronCompiler | None) -> Provenance:
    """Where the record's numbers came from: the run's identity (`RunIdentity`, built when it
    started), with what only the end of the run knows (the compiled graphs, the dense model's
    sha256)."""
    identity = run.identity
    execution, versions, cpu = identity.execution, identity.versions, identity.numerics.cpu
    return Provenance(
        stxbench=versions.stxbench,
        python=versions.python,
        torch=versions.torch,
        libraries=versions.libraries(),
        platform=platform.platform(),
        device=device_name(run.device),
        threads=identity.numerics.threads,
        cpu_numerics=CpuNumerics(pin=cpu.pin, cpu_kind=str(identity.cpu_kind), aten_capability=cpu.aten_capability,
                                 mkl_branch=cpu.mkl_branch, mkldnn=cpu.mkldnn, ieee_sqrt=cpu.ieee_sqrt)
        if cpu is not None else None,
        execution=ExecutionInfo(
            precision=execution.precision, world_size=execution.world_size,
            dist_backend=torch.distributed.get_backend() if execution.distributed else None,
            data_workers=execution.workers, pin_memory=execution.pin_memory,
            cudnn=cudnn_settings(run.device),
            compile=compiler.info() if compiler else None,
        ),
        git_commit=git_commit(),
        plugin_sha256=dict(identity.code.files),
        code=identity.code.as_dict(),
        checkpoint_sha256=checkpoint_sha256,
        created=now_utc(),
    )


def neuron_infos(run: Run) -> dict[str, NeuronInfo]:
    """The base and fine-tuned neurons' families, and how the backend ran each."""
    infos = {}
    for name in (run.config.protocol.model.base_neuron, run.config.neuron):
        impl = run.host.implementation(run.host.neuron(name), run.backend, run.surrogate)
        infos[name] = NeuronInfo(family=impl.spec.family, implementation=impl.kind)
    return infos
