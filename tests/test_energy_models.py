"""Cost models with memory traffic, and a factorised matrix priced as one where that is cheaper:
golden energies worked out by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stxbench.measure.counting import count_batches
from stxbench.measure.energy import COST_MODELS, PJ_PER_MJ, all_estimates, cost_model, energy_of, estimate
from stxbench.run.errors import UsageError
from stxbench_pruner_dsp import LowRankLinear

WEIGHT = torch.tensor([[1.5, 0.0, -2.5, 0.0], [0.0, 0.0, 0.5, 4.25], [-0.75, 0.0, 0.0, 6.5]])
SPIKES = torch.tensor([[1.0, 1.0, 0.0, 1.0], [0.0, 1.0, 1.0, 1.0]])


@pytest.fixture(scope="module")
def linear_counts():
    """Linear 4 -> 3 (6 of 12 weights nonzero) on two spike vectors, then a ReLU standing in
    for a neuron layer (3 membrane updates per sample)."""
    layer = nn.Linear(4, 3)
    with torch.no_grad():
        layer.weight.copy_(WEIGHT)
    model = nn.Sequential(layer, nn.ReLU())
    return count_batches(model, [SPIKES], neurons=[model[1]])


@pytest.mark.parametrize("model_id, bytes_moved, pj_per_byte", [
    # weights 12 x 4 B read once per sample (one time step); membrane 3 updates x (4 B read +
    # 4 B written); spikes 3 x 1 bit: 48 + 24 + 0.375
    ("simple-fp32-v1", 72.375, 24.96),
    # nonzero weights only: 6 x (4 B value + 2 B index) = 36, instead of 48
    ("simple-fp32-nz-v1", 60.375, 24.96),
    ("horowitz45-fp32-sram-v1", 72.375, 12.5),
    ("horowitz45-fp32-dram-v1", 72.375, 162.5),
    ("horowitz45-fp32-v1", 0.0, 0.0),  # compute only
])
def test_memory_traffic_golden(linear_counts, model_id, bytes_moved, pj_per_byte):
    result = estimate(linear_counts, "stxbench", model_id)
    assert result.ac == 4.0  # nonzero pairs per sample (tests/test_counting.py)
    assert result.memory_bytes == bytes_moved
    assert result.compute_mj == pytest.approx(4.0 * 0.9 / PJ_PER_MJ, rel=1e-12)
    assert result.memory_mj == pytest.approx(bytes_moved * pj_per_byte / PJ_PER_MJ, rel=1e-12)
    assert result.mj_per_sample == result.compute_mj + result.memory_mj


def test_every_convention_under_every_model_is_stored(linear_counts):
    stored = all_estimates(linear_counts)
    assert {(e.convention, e.cost_model) for e in stored} == {
        (c, m) for c in ("stxbench", "spikingjelly", "neurobench") for m in COST_MODELS}
    assert all(e.pricing == "as-run" for e in stored)  # nothing here could be merged
    sj = next(e for e in stored if (e.convention, e.cost_model) == ("spikingjelly", "simple-fp32-v1"))
    assert (sj.ac, sj.memory_bytes) == (9.0, 72.375)  # 3 spikes x 3 outputs per sample
    # the record's energy under the default convention is exactly the old formula
    fp32 = cost_model("fp32")
    assert energy_of(linear_counts, fp32).mj_per_sample == fp32.mj(linear_counts.mac, linear_counts.ac,
                                                                  linear_counts.ac_int)


def _factored() -> nn.Sequential:
    """A rank-1 pair for a 4 x 4 matrix: first [0.5, 0.25, 0.5, 0.25], second [1.5, 2.5, 3.5,
    4.5]^T (integer-valued weights would be an integer operand themselves)."""
    low = LowRankLinear(4, 4, 1, bias=False)
    with torch.no_grad():
        low.first.weight.copy_(torch.tensor([[0.5, 0.25, 0.5, 0.25]]))
        low.second.weight.copy_(torch.tensor([[1.5], [2.5], [3.5], [4.5]]))
    return nn.Sequential(low)


# input x = [2, 0, 1, 3] (a residual stream); the bottleneck holds 1 + 0.5 + 0.75 = 2.25 (real)
@pytest.mark.parametrize("convention, model_id, as_run_pj, merged_pj", [
    # stxbench: first factor 6 integer ACs (2 + 1 + 3, one weight per column), second 4 MACs:
    # 5.4 + 18.4 = 23.8 pJ; as one 4 x 4 matrix: 6 x 4 = 24 integer ACs = 21.6 pJ: merged
    ("stxbench", "fp32", 23.8, 21.6),
    # spikingjelly: 4 + 4 dense MACs = 36.8 pJ; merged 16 MACs = 73.6 pJ: kept factored
    ("spikingjelly", "fp32", 36.8, 73.6),
    # neurobench: nonzero pairs as MACs: 3 + 4 = 32.2 pJ; merged 3 x 4 = 12 MACs = 55.2 pJ
    ("neurobench", "fp32", 32.2, 55.2),
    # with memory, weights read: 8 x 4 B factored, 16 x 4 B merged, at 24.96 pJ/B
    ("stxbench", "simple", 23.8 + 32 * 24.96, 21.6 + 64 * 24.96),
])
def test_factored_matrix_priced_as_one_where_cheaper(convention, model_id, as_run_pj, merged_pj):
    counts = count_batches(_factored(), [torch.tensor([[2.0, 0.0, 1.0, 3.0]])])
    assert [o.module for o in counts.merge_options] == ["0"]
    as_run = estimate(counts, convention, model_id)
    best = estimate(counts, convention, model_id, merge=True)
    assert as_run.mj_per_sample * PJ_PER_MJ == pytest.approx(as_run_pj, rel=1e-12)
    assert as_run.merged == [] and as_run.pricing == "as-run"
    assert best.pricing == "merge-if-cheaper"
    if merged_pj < as_run_pj:
        assert best.merged == ["0"]
        assert best.mj_per_sample * PJ_PER_MJ == pytest.approx(merged_pj, rel=1e-12)
    else:
        assert best.merged == [] and best.mj_per_sample == as_run.mj_per_sample


def test_a_spiking_bottleneck_cannot_be_merged():
    from stxbench.models.base import NeuronSlot
    from stxbench.api import NeuronSite

    model = _factored()
    model[0].neuron = NeuronSlot(NeuronSite("0.neuron", 1, -1), lambda site: nn.Identity())
    counts = count_batches(model, [torch.tensor([[2.0, 0.0, 1.0, 3.0]])])
    assert counts.merge_options == []


def test_unknown_names_are_one_line():
    with pytest.raises(UsageError, match="unknown counting convention 'syops'.*valid: neurobench, spikingjelly, stxbench"):
        estimate(None, "syops")
    with pytest.raises(UsageError, match="unknown energy model 'hbm'.*valid: .*simple"):
        cost_model("hbm")
