"""The per-layer names a record may hold: those of its protocol's model (and the sample counts
its data fix).

A record lists firing rates per neuron layer, statistics per ST-block matrix and op counts per
module. Each name must be one the protocol's model has, and each at most once, so an entry
cannot pad itself with layers the model does not have (or hide one it has). The model is built
once per protocol on the meta device (no memory, no weights; identity neurons, since a neuron
layer's name is its slot's), from the dataset's input shape, and its names are cached.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from stxbench.measure.counting import COUNTED_OPS, ROOT
from stxbench.data.splits import load_splits
from stxbench.run.errors import RunFailed, UsageError
from stxbench.host.plugin_host import PluginHost
from stxbench.leaderboard.problem import Problem
from stxbench.run.protocol import Protocol
from stxbench.record.schema import Record

#: a pruner may replace an ST-block matrix with a module of its own (a low-rank pair): op
#: counts then name the matrix's children, ``<matrix>.<child>``
_CHILD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: how many unknown names one line shows
_SHOWN = 3


@dataclass(frozen=True)
class ModelNames:
    model: str
    neurons: frozenset[str]  # neuron slots (firing-rate keys)
    matrices: dict[str, tuple[int, int]]  # ST-block matrices and their dense (out, in) shapes
    modules: frozenset[str]  # every module, "(root)" for the model itself
    test_samples: int  # the dataset's test split
    count_samples: int  # of those, the ones op counting counts (the protocol's count_samples)

    def _in_a_matrix(self, name: str) -> bool:
        """``<matrix>.<child>``: a module a pruner put inside an ST-block matrix it replaced
        (a low-rank pair's factors, DSP's bottleneck neuron)."""
        parent, _, child = name.rpartition(".")
        return parent in self.matrices and bool(_CHILD.fullmatch(child))

    def is_counted_module(self, name: str) -> bool:
        return name in self.modules or self._in_a_matrix(name)

    def is_neuron(self, name: str) -> bool:
        return name in self.neurons or self._in_a_matrix(name)


def build_names(protocol: Protocol, host: PluginHost) -> ModelNames:
    """The names of the protocol's model; `UsageError` if it cannot be built here (its data are
    not on this machine, its model family is not installed)."""
    splits = load_splits(protocol, host, None)  # a dataset that needs a folder refuses: UsageError
    family_name, _, size = protocol.model.name.partition("-")
    with torch.device("meta"):
        model = host.model_family(family_name).build(
            size, input_shape=splits.input_shape, num_classes=splits.num_classes, T=protocol.model.T,
            make_neuron=lambda site: nn.Identity(), options=dict(protocol.model.options),
        )
    matrices = {name: (m.out_features, m.in_features) for name, m in model.st_matrices().items()}
    modules = frozenset(name or ROOT for name, _ in model.named_modules())
    test = len(splits.test)
    return ModelNames(protocol.model.name, frozenset(n for n, _ in model.neuron_slots()), matrices, modules,
                      test, min(protocol.eval.count_samples, test))


def _unknown(field: str, names: list[str], what: str) -> Problem:
    shown = ", ".join(names[:_SHOWN])
    more = f" (+{len(names) - _SHOWN} more)" if len(names) > _SHOWN else ""
    return Problem(field, f"{len(names)} name(s) that are not {what}: {shown}{more}")


def _duplicates(names: list[str]) -> list[str]:
    seen, dup = set(), []
    for name in names:
        if name in seen:
            dup.append(name)
        seen.add(name)
    return dup


def name_problems(record: Record, names: ModelNames) -> list[Problem]:
    """Per-layer names the model does not have, or has once but the record lists twice, and
    neuron layers or matrices the record leaves out."""
    found = []
    m, model = record.metrics, names.model
    if m.test_samples != names.test_samples:
        found.append(Problem("metrics.test_samples", f"{m.test_samples}, but the protocol's test split holds "
                                                     f"{names.test_samples}"))
    c = record.counts
    if c is not None and (c.samples, c.subset) != (names.count_samples, f"test[:{names.count_samples}]"):
        found.append(Problem("counts.samples", f"{c.samples} ({c.subset}), but the protocol counts the first "
                                               f"{names.count_samples} test samples"))
    rates = list(m.firing_rates)
    unknown = [n for n in rates if not names.is_neuron(n)]
    if unknown:
        found.append(_unknown("metrics.firing_rates", unknown, f"neuron layers of {model}"))
    missing = sorted(names.neurons - set(rates))
    if missing:
        found.append(Problem("metrics.firing_rates", f"no rate for the neuron layer(s) {', '.join(missing[:_SHOWN])}"
                             + (f" (+{len(missing) - _SHOWN} more)" if len(missing) > _SHOWN else "")))
    matrix_names = [s.name for s in m.matrices]
    unknown = [n for n in matrix_names if n not in names.matrices]
    if unknown:
        found.append(_unknown("metrics.matrices", unknown, f"ST-block matrices of {model}"))
    if _duplicates(matrix_names):
        found.append(Problem("metrics.matrices", f"lists {_duplicates(matrix_names)[0]} more than once"))
    missing = [n for n in names.matrices if n not in matrix_names]
    if missing:
        found.append(Problem("metrics.matrices", f"no statistics for {', '.join(missing[:_SHOWN])}"
                             + (f" (+{len(missing) - _SHOWN} more)" if len(missing) > _SHOWN else "")))
    for stat in m.matrices:
        shape = names.matrices.get(stat.name)
        if shape is not None and tuple(stat.shape) != shape:
            found.append(Problem(f"metrics.matrices[{stat.name}].shape",
                                 f"{list(stat.shape)} but {model} has {list(shape)}"))
    if record.counts is not None:
        layers = record.counts.layers
        unknown = [layer.module for layer in layers if not names.is_counted_module(layer.module)]
        if unknown:
            found.append(_unknown("counts.layers", unknown, f"modules of {model}"))
        ops = [layer.op for layer in layers if layer.op not in COUNTED_OPS]
        if ops:
            found.append(_unknown("counts.layers", ops, "ops that op counting counts"))
        keys = [f"{layer.module}:{layer.op}:{layer.kind}" for layer in layers]
        if _duplicates(keys):
            found.append(Problem("counts.layers", f"lists {_duplicates(keys)[0]} more than once"))
        found += _raw_count_problems(record.counts, names)
    return found


def _raw_count_problems(counts, names: ModelNames) -> list[Problem]:
    """The raw per-op, BatchNorm and neuron rows (`stxbench.measure.conventions`) name the model's own
    modules, ops and neuron layers, each row once."""
    found = []
    model = names.model
    ops = counts.ops or []
    unknown = [row.module for row in ops if not names.is_counted_module(row.module)]
    if unknown:
        found.append(_unknown("counts.ops", unknown, f"modules of {model}"))
    bad_ops = [row.op for row in ops if row.op not in COUNTED_OPS]
    if bad_ops:
        found.append(_unknown("counts.ops", bad_ops, "ops that op counting counts"))
    dup = _duplicates([f"{r.module}:{r.op}:{r.a_kind}:{r.b_kind}" for r in ops])
    if dup:
        found.append(Problem("counts.ops", f"lists {dup[0]} more than once"))
    bns = [row.module for row in counts.batchnorm or []]
    unknown = [n for n in bns if n not in names.modules]
    if unknown:
        found.append(_unknown("counts.batchnorm", unknown, f"modules of {model}"))
    if _duplicates(bns):
        found.append(Problem("counts.batchnorm", f"lists {_duplicates(bns)[0]} more than once"))
    neurons = [row.module for row in counts.neurons or []]
    unknown = [n for n in neurons if not names.is_neuron(n)]
    if unknown:
        found.append(_unknown("counts.neurons", unknown, f"neuron layers of {model}"))
    if _duplicates(neurons):
        found.append(Problem("counts.neurons", f"lists {_duplicates(neurons)[0]} more than once"))
    return found


#: (protocol hash, model family) -> names, or why they cannot be had here; shared by every
#: check in the process (building needs the dataset's input shape: seconds, once)
_CACHE: dict[tuple[str, str], ModelNames | str] = {}


def names_for(protocol: Protocol, host: PluginHost) -> ModelNames | str:
    """The protocol's model names, or why they cannot be had on this machine."""
    try:
        family = host.model_family(protocol.model.name.partition("-")[0])
    except UsageError as exc:
        return str(exc)
    key = (protocol.sha256(), f"{type(family).__module__}.{type(family).__qualname__}")
    if key not in _CACHE:
        try:
            _CACHE[key] = build_names(protocol, host)
        except (UsageError, RunFailed) as exc:
            _CACHE[key] = str(exc)
    return _CACHE[key]
