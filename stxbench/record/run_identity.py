"""A run's identity: everything besides its options that decides the bits of its results, built
once per run (`RunIdentity.of_process`) and read by every part that must know it.

- the dense cache keys its model by it (`RunIdentity.dense_key`): a cached model is only ever the
  one this run would have trained;
- a run checkpoint keeps it (`RunIdentity.resume_key`), and a resume that differs is refused;
- a sweep plans its dense tasks by it (`RunIdentity.planned`), before the run's process exists;
- the record's provenance is written from it: the CPU kind and the CPU numerics in effect, the
  execution settings, the versions, the code identity and the raw hashes of the plugin files.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass
from typing import Any

import torch

import stxbench
from stxbench.run import cpu_pin
from stxbench.neurons.contract import Backend
from stxbench.record.code_identity import CORE, code_identity, package_name, raw_sha256
from stxbench.run.processes import Execution
from stxbench.host.plugin_host import Component, PluginHost
from stxbench.record.provenance import CpuKind, numerics_device, this_cpu
from stxbench.run.resolve import resolve_device
from stxbench.run.config import RunConfig


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


def _frozen(mapping: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(mapping.items()))


@dataclass(frozen=True)
class CodeIdentity:
    """The code on the run's path (`stxbench.record.code_identity`): one digest per package, the core's
    numbers path included; the packages stage 1 runs; the raw sha256 of every plugin file."""

    packages: tuple[tuple[str, str], ...]
    stage_one: frozenset[str]
    files: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, config: RunConfig, host: PluginHost) -> CodeIdentity:
        used = [c.module for c in used_components(config, host)]
        stage_one = {CORE} | {package_name(c.module) for c in stage_one_components(config, host) if c.module}
        return cls(_frozen(code_identity(used)), frozenset(stage_one), _frozen(raw_sha256(used)))

    def as_dict(self) -> dict[str, str]:
        """``{package: digest}``, as a record's ``provenance.code`` holds it."""
        return dict(self.packages)

    def sha256(self, packages: frozenset[str] | None = None) -> str:
        """One sha256 over the digests of ``packages`` (all of the run's by default)."""
        chosen = {k: v for k, v in self.packages if packages is None or k in packages}
        return hashlib.sha256(json.dumps(chosen, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class CpuNumericsState:
    """The CPU numerics in effect in the run's process (`cpu_pin.current`) and the protocol's pin."""

    pin: str | None
    aten_capability: str
    mkl_branch: str | None
    mkldnn: bool
    ieee_sqrt: bool

    @classmethod
    def here(cls, pin: str | None) -> CpuNumericsState:
        return cls(pin=pin, **cpu_pin.current())


@dataclass(frozen=True)
class Numerics:
    """How the run executes, as far as it changes its numbers: the device (CPU or GPU model),
    torch's threads, the processes, whether the neurons are compiled (inductor may reorder a
    parameter gradient's sums: a spikingjelly dense model trained eager is not the compiled
    one), the precision, and on a CPU the numerics in effect (None on a GPU, and in a plan: the
    process that will run it is not started yet)."""

    device: str
    threads: int
    world_size: int
    compile: bool
    precision: str
    cpu: CpuNumericsState | None


@dataclass(frozen=True)
class Versions:
    stxbench: str
    python: str
    torch: str
    #: the SNN library of the backend and its version (None: the backend uses none)
    library: str | None
    library_version: str | None

    def libraries(self) -> dict[str, str]:
        return {self.library: self.library_version} if self.library else {}


@dataclass(frozen=True)
class ProtocolIdentity:
    name: str
    sha256: str
    #: the protocol's stage 1, the seed and the backend (`Protocol.dense_key`)
    dense_key: str


@dataclass(frozen=True)
class RunIdentity:
    protocol: ProtocolIdentity
    cpu_kind: CpuKind
    numerics: Numerics
    execution: Execution
    code: CodeIdentity
    versions: Versions

    @classmethod
    def of_process(cls, config: RunConfig, host: PluginHost, device: torch.device, execution: Execution,
                   backend: Backend) -> RunIdentity:
        """The identity of the run ``config`` in this process, once its threads, device and CPU
        pin are set (`stxbench.run.stages.start_run`)."""
        cpu = CpuNumericsState.here(config.protocol.cpu_pin) if device.type == "cpu" else None
        return cls._build(config, host, device, execution, backend, torch.get_num_threads(), cpu)

    @classmethod
    def planned(cls, config: RunConfig, host: PluginHost) -> RunIdentity:
        """The identity of ``config`` run in one process, as a sweep plans it before the run starts:
        its ``--threads`` (or torch's default) and its device as it will resolve."""
        device = torch.device(resolve_device(config.device))
        execution = Execution(precision=config.precision, pin_memory=config.device.startswith("cuda"))
        return cls._build(config, host, device, execution, host.backend(config.backend),
                          config.threads or torch.get_num_threads(), None)

    @classmethod
    def _build(cls, config: RunConfig, host: PluginHost, device: torch.device, execution: Execution,
               backend: Backend, threads: int, cpu: CpuNumericsState | None) -> RunIdentity:
        proto = config.protocol
        return cls(
            protocol=ProtocolIdentity(proto.name, config.protocol_sha256, proto.dense_key(config.seed, config.backend)),
            cpu_kind=this_cpu(),
            numerics=Numerics(device=numerics_device(device), threads=threads, world_size=execution.world_size,
                              compile=config.compile, precision=config.precision, cpu=cpu),
            execution=execution,
            code=CodeIdentity.of(config, host),
            versions=Versions(stxbench.__version__, platform.python_version(), torch.__version__,
                              backend.library, backend.library_version()),
        )

    def resume_key(self) -> dict[str, Any]:
        """What a run checkpoint keeps of how its run executed, and a resume must match: the
        device, threads, processes, compiled neurons and the code of the whole run."""
        n = self.numerics
        return {"device": n.device, "threads": n.threads, "world_size": n.world_size, "compile": n.compile,
                "code": self.code.sha256()}

    def dense_key(self) -> str:
        """What the dense model's cache is keyed by: the protocol's stage 1, the seed and the
        backend, and all else that changes the trained weights: the run's numerics with the code
        narrowed to what stage 1 runs (so runs of other pruners and fine-tuning neurons share the
        model), the precision and the library versions."""
        n = self.numerics
        bits = {"device": n.device, "threads": n.threads, "world_size": n.world_size, "compile": n.compile,
                "code": self.code.sha256(self.code.stage_one), "precision": n.precision,
                "torch": self.versions.torch, "library": self.versions.library_version}
        return hashlib.sha256(f"{self.protocol.dense_key}{json.dumps(bits, sort_keys=True)}".encode()).hexdigest()
