"""What decides the bits of a run's results besides its options: the device, torch's threads,
the processes, the versions, and the code of stxbench and of the plugins it uses. A checkpoint
keeps these (a resume that differs is refused) and the dense cache is keyed by them (a cached
model is only ever the one this run would have trained)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch

from stxbench.api import Backend
from stxbench.execution import Execution
from stxbench.host import Component, PluginHost
from stxbench.code_identity import code_identity
from stxbench.provenance import numerics_device
from stxbench.runconfig import RunConfig, resolve_device


def stage_one_components(config: RunConfig, host: PluginHost) -> list[Component]:
    """The components the dense stage runs: the base neuron's family, dataset, model, base
    neuron, backend."""
    proto = config.protocol
    return [
        host.get("neuron family", host.neuron(proto.model.base_neuron).family),
        host.get("dataset", proto.data.dataset),
        host.get("model", proto.model.name.partition("-")[0]),
        host.get("neuron", proto.model.base_neuron),
        host.get("backend", config.backend),
    ]


def used_components(config: RunConfig, host: PluginHost) -> list[Component]:
    """The components a run uses: those of stage 1, the fine-tuning neuron (and its family) and
    the pruner."""
    return [*stage_one_components(config, host), host.get("neuron family", host.neuron(config.neuron).family),
            host.get("neuron", config.neuron), host.get("pruner", config.pruner)]


def code_sha256(components: list[Component]) -> str:
    """One sha256 over the code identity (`stxbench.code_identity`) of the core's numbers path
    and of these components' plugin packages."""
    identity = code_identity([c.module for c in components])
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def run_numerics(config: RunConfig, host: PluginHost, device: torch.device, execution: Execution) -> dict[str, Any]:
    """How a run executes, as far as it changes its numbers: the device (CPU or GPU model),
    torch's threads, the processes, whether the neurons are compiled (inductor may reorder a
    parameter gradient's sums: a spikingjelly dense model trained eager is not the compiled
    one), and the code of stxbench and of every plugin it uses."""
    return _numerics(config, host, device, torch.get_num_threads(), execution.world_size)


def _numerics(config: RunConfig, host: PluginHost, device: torch.device, threads: int,
              world_size: int) -> dict[str, Any]:
    """The fields of `run_numerics`, written once for a running process and for a plan."""
    return {
        "device": numerics_device(device), "threads": threads, "world_size": world_size,
        "compile": config.compile, "code": code_sha256(used_components(config, host)),
    }


def dense_bits(config: RunConfig, host: PluginHost, numerics: dict[str, Any], backend: Backend) -> dict[str, Any]:
    """What the dense model's cache key holds besides the protocol's stage 1, the seed and the
    backend: the run's numerics with the code narrowed to what stage 1 runs (so runs of other
    pruners and fine-tuning neurons share the model), the precision and the library versions."""
    return {
        **numerics, "code": code_sha256(stage_one_components(config, host)), "precision": config.precision,
        "torch": torch.__version__, "library": backend.library_version(),
    }


def planned_dense_bits(config: RunConfig, host: PluginHost) -> dict[str, Any]:
    """`dense_bits` of ``config`` run in one process, as a sweep plans it before the run starts:
    its ``--threads`` (or torch's default) and its device as it will resolve."""
    device = torch.device(resolve_device(config.device))
    numerics = _numerics(config, host, device, config.threads or torch.get_num_threads(), world_size=1)
    return dense_bits(config, host, numerics, host.backend(config.backend))
