"""Energy from op counts, under a named, versioned cost table.

``E = e_mac * MACs + e_ac * (ACs + integer ACs)`` per sample. The tables are Horowitz's
45 nm figures (ISSCC 2014): a MAC is one multiply plus one add, an AC one add. Records store
raw counts and the table's id, so energy can be recomputed under any table
(``stxbench energy RESULT.json --model int8``).
"""

from __future__ import annotations

from dataclasses import dataclass

from stxbench.errors import unknown_choice
from stxbench.record import Counts, Energy, LayerCount

PJ_PER_MJ = 1e9


@dataclass(frozen=True)
class CostModel:
    id: str
    e_mac_pj: float
    e_ac_pj: float
    description: str

    def mj(self, mac: float, ac: float, ac_int: float) -> float:
        return (self.e_mac_pj * mac + self.e_ac_pj * (ac + ac_int)) / PJ_PER_MJ


COST_MODELS: dict[str, CostModel] = {
    m.id: m
    for m in (
        CostModel("horowitz45-fp32-v1", 4.6, 0.9, "45 nm fp32: mult 3.7 + add 0.9 pJ; add 0.9 pJ"),
        CostModel("horowitz45-fp16-v1", 1.5, 0.4, "45 nm fp16: mult 1.1 + add 0.4 pJ; add 0.4 pJ"),
        CostModel("horowitz45-int8-v1", 0.23, 0.03, "45 nm int8: mult 0.2 + add 0.03 pJ; add 0.03 pJ"),
    )
}
SHORT_NAMES = {"fp32": "horowitz45-fp32-v1", "fp16": "horowitz45-fp16-v1", "int8": "horowitz45-int8-v1"}


def cost_model(name: str) -> CostModel:
    """A cost table by id (``horowitz45-int8-v1``) or short name (``int8``)."""
    model_id = SHORT_NAMES.get(name, name)
    if model_id not in COST_MODELS:
        raise unknown_choice("energy model", name, [*SHORT_NAMES, *COST_MODELS])
    return COST_MODELS[model_id]


def energy_of(counts: Counts, model: CostModel) -> Energy:
    """The record's ``energy``: recomputing ``model.mj(counts.mac, counts.ac, counts.ac_int)``
    from the stored per-sample counts gives ``mj_per_sample`` exactly."""
    return Energy(
        model_id=model.id, e_mac_pj=model.e_mac_pj, e_ac_pj=model.e_ac_pj,
        mj_per_sample=model.mj(counts.mac, counts.ac, counts.ac_int),
    )


def layer_mj(layer: LayerCount, model: CostModel) -> float:
    """One layer's share of the energy per sample, in mJ."""
    if layer.kind == "mac":
        return model.mj(layer.effective_ops, 0.0, 0.0)
    return model.mj(0.0, layer.effective_ops, 0.0)
