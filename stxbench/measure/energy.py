"""Energy from op counts: a counting convention (`stxbench.measure.conventions`) times a named,
versioned cost model, with compute and memory reported apart.

Compute: ``e_mac x MACs + e_ac x (ACs + integer ACs)`` per sample (Horowitz, ISSCC 2014, 45 nm:
a MAC is one multiply plus one add, an AC one add).

Memory (cost models with ``e_byte_pj > 0``): bytes moved per sample, each at ``e_byte_pj``:

* weights: every weight matrix read once per time step it runs, ``value_bytes`` per entry
  (``weights="dense"``), or only its nonzero entries, each with an ``index_bytes`` column index
  (``weights="nonzero"``);
* membrane state: one read and one write of ``value_bytes`` per membrane update (one per neuron
  per time step);
* spikes: one bit per neuron per time step, written.

Activations other than spikes (attention scores, BN outputs) and addressing are not priced.
Records store raw counts and the ids, so energy can be recomputed under any convention and
model (``stxbench energy RESULT.json --convention spikingjelly --cost-model simple``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from stxbench.measure.conventions import CONVENTIONS, DEFAULT_CONVENTION, NoRawCounts, convention
from stxbench.run.errors import UsageError, unknown_choice
from stxbench.record.schema import Counts, Energy, EnergyEstimate, LayerCount, NeuronCount, OpCount

PJ_PER_MJ = 1e9
_SPIKE_BYTES = 1 / 8  # one bit per neuron per time step


@dataclass(frozen=True)
class CostModel:
    id: str
    e_mac_pj: float
    e_ac_pj: float
    description: str
    e_byte_pj: float = 0.0  # 0: compute only
    weights: Literal["dense", "nonzero"] = "dense"
    value_bytes: int = 4  # a weight or a membrane potential (fp32)
    index_bytes: int = 2  # per nonzero weight in the nonzero-only format (16-bit column index)
    source: str = "Horowitz, Computing's energy problem, ISSCC 2014 (45 nm)"

    @property
    def prices_memory(self) -> bool:
        return self.e_byte_pj > 0

    def mj(self, mac: float, ac: float, ac_int: float) -> float:
        """Compute energy per sample (mJ)."""
        return (self.e_mac_pj * mac + self.e_ac_pj * (ac + ac_int)) / PJ_PER_MJ

    def weight_bytes(self, op: OpCount) -> float:
        if not self.prices_memory:
            return 0.0
        if self.weights == "nonzero":
            return op.weight_nonzero_reads * (self.value_bytes + self.index_bytes)
        return op.weight_reads * self.value_bytes

    def neuron_bytes(self, neuron: NeuronCount) -> float:
        if not self.prices_memory:
            return 0.0
        return neuron.updates * (2 * self.value_bytes + _SPIKE_BYTES)


_STEP = ("STEP (NeurIPS 2025 spiking-Transformer benchmark): 3.12 pJ/bit = 24.96 pJ/byte, as in "
         "spikingjelly 2.0 op_counter/simple_energy.py SimpleEnergyCostConfig.fp32 "
         "(model simple_horowitz_step_composite_v1)")
_HOROWITZ_MEMORY = "Horowitz, ISSCC 2014, 45 nm: 64-bit access to a 1 MB SRAM 100 pJ, to DRAM 1.3-2.6 nJ"

COST_MODELS: dict[str, CostModel] = {
    m.id: m
    for m in (
        CostModel("horowitz45-fp32-v1", 4.6, 0.9, "45 nm fp32: mult 3.7 + add 0.9 pJ; add 0.9 pJ"),
        CostModel("horowitz45-fp16-v1", 1.5, 0.4, "45 nm fp16: mult 1.1 + add 0.4 pJ; add 0.4 pJ"),
        CostModel("horowitz45-int8-v1", 0.23, 0.03, "45 nm int8: mult 0.2 + add 0.03 pJ; add 0.03 pJ"),
        CostModel("simple-fp32-v1", 4.6, 0.9, "fp32 compute + 24.96 pJ per byte moved; dense weights",
                  e_byte_pj=24.96, source=_STEP),
        CostModel("simple-fp32-nz-v1", 4.6, 0.9, "fp32 compute + 24.96 pJ per byte moved; nonzero "
                  "weights only, 2-byte index each", e_byte_pj=24.96, weights="nonzero", source=_STEP),
        CostModel("horowitz45-fp32-sram-v1", 4.6, 0.9, "fp32 compute + 12.5 pJ per byte (1 MB SRAM, "
                  "100 pJ per 64-bit access); dense weights", e_byte_pj=12.5, source=_HOROWITZ_MEMORY),
        CostModel("horowitz45-fp32-dram-v1", 4.6, 0.9, "fp32 compute + 162.5 pJ per byte (DRAM, 1.3 nJ "
                  "per 64-bit access); dense weights", e_byte_pj=162.5, source=_HOROWITZ_MEMORY),
    )
}
SHORT_NAMES = {
    "fp32": "horowitz45-fp32-v1", "fp16": "horowitz45-fp16-v1", "int8": "horowitz45-int8-v1",
    "simple": "simple-fp32-v1", "simple-nz": "simple-fp32-nz-v1", "sram": "horowitz45-fp32-sram-v1",
    "dram": "horowitz45-fp32-dram-v1",
}


def cost_model(name: str) -> CostModel:
    """A cost model by id (``horowitz45-int8-v1``) or short name (``int8``)."""
    model_id = SHORT_NAMES.get(name, name)
    if model_id not in COST_MODELS:
        raise unknown_choice("energy model", name, [*SHORT_NAMES, *COST_MODELS])
    return COST_MODELS[model_id]


# -- estimates ----------------------------------------------------------------------------


@dataclass
class LayerEnergy:
    """One row of an estimate: a module's op under the convention, a BatchNorm or a neuron
    layer (memory only)."""

    module: str
    op: str
    kind: str  # mac | ac | ac_int | "-" (a neuron layer: memory only)
    ops_total: int  # over the samples counted, under the convention (integers sum exactly)
    samples: int
    dense: float
    rated_nonzero: float
    rated_numel: float
    compute_mj: float
    memory_bytes: float
    memory_mj: float

    @property
    def ops(self) -> float:
        """Per sample."""
        return self.ops_total / self.samples

    @property
    def mj(self) -> float:
        return self.compute_mj + self.memory_mj

    @property
    def input_rate(self) -> float | None:
        return self.rated_nonzero / self.rated_numel if self.rated_numel and self.kind != "mac" else None


@dataclass
class Estimate:
    convention: str
    cost_model: CostModel
    pricing: str
    merged: list[str]
    layers: list[LayerEnergy] = field(default_factory=list)

    samples: int = 1

    def _sum(self, key: str, kind: str | None = None) -> float:
        return sum(getattr(r, key) for r in self.layers if kind is None or r.kind == kind)

    @property
    def mac(self) -> float:
        return self._sum("ops_total", "mac") / self.samples

    @property
    def ac(self) -> float:
        return self._sum("ops_total", "ac") / self.samples

    @property
    def ac_int(self) -> float:
        return self._sum("ops_total", "ac_int") / self.samples

    @property
    def compute_mj(self) -> float:
        return self.cost_model.mj(self.mac, self.ac, self.ac_int)

    @property
    def memory_bytes(self) -> float:
        return self._sum("memory_bytes")

    @property
    def memory_mj(self) -> float:
        return self.cost_model.e_byte_pj * self.memory_bytes / PJ_PER_MJ

    @property
    def mj_per_sample(self) -> float:
        return self.compute_mj + self.memory_mj

    def record(self) -> EnergyEstimate:
        return EnergyEstimate(
            convention=self.convention, cost_model=self.cost_model.id, pricing=self.pricing,
            merged=self.merged, mac=self.mac, ac=self.ac, ac_int=self.ac_int,
            memory_bytes=self.memory_bytes, compute_mj=self.compute_mj, memory_mj=self.memory_mj,
            mj_per_sample=self.mj_per_sample,
        )


def _op_rows(ops: list[OpCount], conv, model: CostModel, samples: int) -> list[LayerEnergy]:
    """Rows per (module, op, kind under the convention), in order of first appearance. Counts
    are summed as the integers they are (per-sample value x samples), so that this project's
    rule gives the record's ``counts.mac`` etc. exactly."""
    rows: dict[tuple[str, str, str], LayerEnergy] = {}
    for op in ops:
        charged = conv.charge(op)
        nbytes = model.weight_bytes(op)
        if charged is None and not nbytes:
            continue
        kind, n = charged if charged is not None else ("mac", 0.0)
        row = rows.setdefault((op.module, op.op, kind),
                              LayerEnergy(op.module, op.op, kind, 0, samples, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0))
        row.ops_total += round(n * samples)
        row.dense += op.dense if charged is not None else 0.0
        row.rated_nonzero += op.rated_nonzero
        row.rated_numel += op.rated_numel
        row.memory_bytes += nbytes
    for row in rows.values():
        e = model.e_mac_pj if row.kind == "mac" else model.e_ac_pj
        row.compute_mj = e * row.ops / PJ_PER_MJ
        row.memory_mj = model.e_byte_pj * row.memory_bytes / PJ_PER_MJ
    return list(rows.values())


def _under(module: str, path: str) -> bool:
    return path.startswith(module + ".")


def estimate(counts: Counts, convention_name: str = DEFAULT_CONVENTION,
             model: CostModel | str = "horowitz45-fp32-v1", merge: bool = False) -> Estimate:
    """Energy per sample of a record's counts under a convention and a cost model.

    ``merge``: price each factorised matrix that can run as one (``counts.merge_options``) as
    that one matrix where this costs less under the same convention and model; the estimate
    names them in ``merged``. Raises `UsageError` when the record lacks what is asked."""
    conv = convention(convention_name)
    model = cost_model(model) if isinstance(model, str) else model
    pricing = "merge-if-cheaper" if merge else "as-run"
    if counts.ops is None:
        if conv.name != DEFAULT_CONVENTION or model.prices_memory or merge:
            raise NoRawCounts()
        return _legacy(counts, model)
    n = counts.samples
    ops = list(counts.ops)
    merged = []
    if merge:
        for option in counts.merge_options or []:
            factored = [op for op in ops if _under(option.module, op.module)]
            as_run = sum(r.mj for r in _op_rows(factored, conv, model, n))
            as_one = sum(r.mj for r in _op_rows(option.ops, conv, model, n))
            if factored and as_one < as_run:
                ops = [op for op in ops if not _under(option.module, op.module)] + list(option.ops)
                merged.append(option.module)
    result = Estimate(conv.name, model, pricing, merged, _op_rows(ops, conv, model, n), samples=n)
    for bn in counts.batchnorm or []:
        macs = conv.batchnorm(bn)
        if macs:
            result.layers.append(LayerEnergy(bn.module, "batch_norm", "mac", round(macs * n), n, bn.elements,
                                             0.0, 0.0, model.e_mac_pj * macs / PJ_PER_MJ, 0.0, 0.0))
    for neuron in counts.neurons or []:
        nbytes = model.neuron_bytes(neuron)
        if nbytes:
            result.layers.append(LayerEnergy(neuron.module, "neuron", "-", 0, n, 0.0, 0.0, 0.0, 0.0, nbytes,
                                             model.e_byte_pj * nbytes / PJ_PER_MJ))
    return result


def _legacy(counts: Counts, model: CostModel) -> Estimate:
    """A record from before per-op counts: this project's rule from its layer rows."""
    n = counts.samples
    rows = [
        LayerEnergy(layer.module, layer.op, layer.kind, round(layer.effective_ops * n), n, layer.dense_ops,
                    layer.input_rate or 0.0, 1.0 if layer.input_rate is not None else 0.0,
                    layer_mj(layer, model), 0.0, 0.0)
        for layer in counts.layers
    ]
    return Estimate(DEFAULT_CONVENTION, model, "as-run", [], rows, samples=n)


def checked_estimate(counts: Counts, convention_name: str, model: CostModel | str, merge: bool = False,
                     where: str = "the record") -> Estimate:
    """`estimate`, with a record too old for the question as one `UsageError` line."""
    try:
        return estimate(counts, convention_name, model, merge)
    except NoRawCounts:
        raise UsageError(
            f"{where} predates per-op raw counts, so it holds energy under the stxbench "
            "convention and compute-only cost models only; re-run it to get other conventions, "
            "memory cost models and merged pricing"
        ) from None


def all_estimates(counts: Counts) -> list[EnergyEstimate]:
    """What a record stores: every convention under every cost model, as run, and, where a
    factorised matrix could run as one, priced merge-if-cheaper too."""
    out = []
    for name in CONVENTIONS:
        for model in COST_MODELS.values():
            out.append(estimate(counts, name, model).record())
            if counts.merge_options:
                out.append(estimate(counts, name, model, merge=True).record())
    return out


def energy_of(counts: Counts, model: CostModel, convention_name: str = DEFAULT_CONVENTION) -> Energy:
    """The record's ``energy``: under the protocol's convention and model, as run. For the
    ``stxbench`` convention and a compute-only model, ``model.mj(counts.mac, counts.ac,
    counts.ac_int)`` gives ``mj_per_sample`` exactly."""
    if convention_name == DEFAULT_CONVENTION and not model.prices_memory:
        mj = model.mj(counts.mac, counts.ac, counts.ac_int)
    else:
        mj = estimate(counts, convention_name, model).mj_per_sample
    return Energy(model_id=model.id, e_mac_pj=model.e_mac_pj, e_ac_pj=model.e_ac_pj,
                  mj_per_sample=mj, convention=convention_name)


def layer_mj(layer: LayerCount, model: CostModel) -> float:
    """One layer row's compute share of the energy per sample (this project's rule), in mJ."""
    if layer.kind == "mac":
        return model.mj(layer.effective_ops, 0.0, 0.0)
    return model.mj(0.0, layer.effective_ops, 0.0)
