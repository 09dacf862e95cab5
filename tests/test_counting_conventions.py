"""Counting conventions: golden counts by hand on tiny models, and each foreign convention held
to that library's own counter on the same Spikformer and inputs, exactly.

The libraries decide "binary" over each call's whole batch; stxbench decides per sample. So the
libraries run one sample at a time (their decision is then per sample too) and their counts are
summed, while stxbench counts the batch in one pass.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stxbench.measure.conventions import convention_counts
from stxbench.measure.counting import count_batches
from stxbench.measure.energy import estimate
from stxbench.host.plugin_host import PluginHost
from tiny_models import lively_spikformer
from stxbench_pruner_dsp import DSP, DSPParams

# 3 outputs x 4 inputs; nonzero weights per input column k: 2, 0, 2, 2 (column 1 fully pruned)
WEIGHT = torch.tensor([[1.5, 0.0, -2.5, 0.0], [0.0, 0.0, 0.5, 4.25], [-0.75, 0.0, 0.0, 6.5]])


def _linear() -> nn.Sequential:
    layer = nn.Linear(4, 3)
    with torch.no_grad():
        layer.weight.copy_(WEIGHT)
        layer.bias.fill_(0.5)
    return nn.Sequential(layer)


def _per_sample(x: torch.Tensor, model: nn.Module, name: str):
    counts = count_batches(model, [x])
    c = convention_counts(counts, name)
    return c.mac, c.ac, c.ac_int


@pytest.mark.parametrize("name, expected", [
    # spikes x = [[1,1,0,1], [0,1,1,1]]: x nonzeros per column 1, 2, 1, 2
    # stxbench: nonzero pairs 1*2 + 2*0 + 1*2 + 2*2 = 8 over 2 samples -> 4 ACs
    ("stxbench", (0.0, 4.0, 0.0)),
    # spikingjelly: 6 spikes x 3 outputs (zero weights included) = 18 -> 9 ACs
    ("spikingjelly", (0.0, 9.0, 0.0)),
    # neurobench: the input is in {-1,0,1}: ACs, nonzero pairs as stxbench
    ("neurobench", (0.0, 4.0, 0.0)),
])
def test_linear_on_spikes(name, expected):
    x = torch.tensor([[1.0, 1.0, 0.0, 1.0], [0.0, 1.0, 1.0, 1.0]])
    assert _per_sample(x, _linear(), name) == expected


@pytest.mark.parametrize("name, expected", [
    # x = [2, 0, 1, 3] meets 2, 0, 2, 2 nonzero weights: 2*2 + 1*2 + 3*2 = 12 integer ACs
    ("stxbench", (0.0, 0.0, 12.0)),
    # not binary: every product is a MAC, 4 x 3 = 12
    ("spikingjelly", (12.0, 0.0, 0.0)),
    # not in {-1,0,1}: MACs, nonzero pairs only: columns 0, 2, 3 meet 2 + 2 + 2 = 6
    ("neurobench", (6.0, 0.0, 0.0)),
])
def test_linear_on_a_residual_stream(name, expected):
    assert _per_sample(torch.tensor([[2.0, 0.0, 1.0, 3.0]]), _linear(), name) == expected


@pytest.mark.parametrize("name, expected", [
    ("stxbench", (12.0, 0.0, 0.0)),  # negative values: real, dense MACs
    ("spikingjelly", (12.0, 0.0, 0.0)),
    # {-1, 0, 1} is NeuroBench's spike: ACs on nonzero pairs, columns 0, 1, 3: 2 + 0 + 2 = 4
    ("neurobench", (0.0, 4.0, 0.0)),
])
def test_linear_on_signed_spikes(name, expected):
    assert _per_sample(torch.tensor([[1.0, -1.0, 0.0, 1.0]]), _linear(), name) == expected


def _conv() -> nn.Sequential:
    # 1 -> 2 channels, 3x3, padding 1. Output channel 0: all nine taps nonzero; channel 1 only
    # the top-left tap.
    conv = nn.Conv2d(1, 2, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0].fill_(0.5)
        conv.weight[1, 0, 0, 0] = -1.0
    return nn.Sequential(conv)


@pytest.mark.parametrize("name, expected", [
    # 3x3 image with its diagonal set (tests/test_counting.py: 19 nonzero pairs)
    ("stxbench", (0.0, 19.0, 0.0)),
    # a spike reaches every output its valid taps reach, x 2 channels, zero weights included:
    # corner (0,0) 4 outputs, centre 9, corner (2,2) 4 -> 17 x 2 = 34
    ("spikingjelly", (0.0, 34.0, 0.0)),
    ("neurobench", (0.0, 19.0, 0.0)),
])
def test_padded_conv_on_spikes(name, expected):
    assert _per_sample(torch.eye(3).view(1, 1, 3, 3), _conv(), name) == expected


@pytest.mark.parametrize("name, expected", [
    # real input: stxbench counts products of real entries: 49 valid taps x 2 channels = 98
    ("stxbench", (98.0, 0.0, 0.0)),
    # spikingjelly counts the padded taps too: 9 taps x 9 positions x 2 channels = 162
    ("spikingjelly", (162.0, 0.0, 0.0)),
    # neurobench: nonzero pairs: channel 0 all 49 valid taps; channel 1 only its top-left tap,
    # which lands inside for the 4 outputs o with o - 1 >= 0 in both axes -> 53
    ("neurobench", (53.0, 0.0, 0.0)),
])
def test_padded_conv_on_a_real_image(name, expected):
    assert _per_sample(torch.full((1, 1, 3, 3), 0.3), _conv(), name) == expected


@pytest.mark.parametrize("affine, name, share", [
    # BatchNorm1d(3) after the Linear: 3 normalised elements per sample; with affine
    # parameters SpikingJelly charges x_hat * gamma + beta as one MAC each
    (True, "spikingjelly", 3.0),
    (False, "spikingjelly", 0.0),
    (True, "stxbench", 0.0),
    (True, "neurobench", 0.0),
])
def test_batchnorm(affine, name, share):
    x = torch.tensor([[0.5, 0.25, 0.75, 1.5], [0.1, 0.2, 0.3, 0.4]])
    with_bn = nn.Sequential(_linear()[0], nn.BatchNorm1d(3, affine=affine)).eval()
    assert _per_sample(x, with_bn, name)[0] - _per_sample(x, _linear(), name)[0] == share


# -- the libraries' own counters ----------------------------------------------------------------

T, BATCH = 2, 4


def _lively(host: PluginHost):
    """spikformer-1-16 on 8x8 input, T=2, with raised BN biases so that every layer fires,
    then DSP svd on every ST matrix (real bottlenecks) and half of fc2's weights zeroed where
    it stays dense (spikes meeting zero weights), so that every case of every rule occurs:
    spikes x dense and x pruned weights, residual integers, real bottlenecks, padded convs, BN."""
    model, gen = lively_spikformer(host, T)
    fc2 = model.get_submodule("blocks.0.mlp.fc2.linear")
    DSP().prune(model, DSPParams(keep=0.5))
    model.replace_module("blocks.0.mlp.fc2.linear", fc2)  # keep fc2 dense, then prune half of it
    with torch.no_grad():
        fc2.weight[:, ::2] = 0.0
    return model, torch.rand(BATCH, 1, 8, 8, generator=gen)


@pytest.fixture(scope="module")
def lively():
    return _lively(PluginHost(()))


def _module_totals(counts, name: str) -> dict[str, dict[str, int]]:
    """Per module and kind, summed over every sample counted."""
    out: dict[str, dict[str, int]] = {}
    for row in estimate(counts, name, "fp32").layers:
        kinds = out.setdefault(row.module, {})
        kinds[row.kind] = kinds.get(row.kind, 0) + row.ops_total
    return out


def test_spikingjelly_convention_equals_spikingjelly_counters(lively):
    op_counter = pytest.importorskip("spikingjelly.activation_based.op_counter",
                                     reason="spikingjelly 2.0 (and loguru) not installed")
    model, x = lively
    counts = count_batches(model, [x])
    synops, macs = op_counter.SynOpCounter(), op_counter.MACCounter()
    for i in range(BATCH):
        with torch.no_grad(), op_counter.DispatchCounterMode([synops, macs]):
            model(x[i:i + 1])
    root = type(model).__name__

    def scoped(counter) -> dict[str, int]:
        return {scope.removeprefix(f"{root}."): sum(ops.values()) for scope, ops in counter.get_counts().items()}

    theirs_ac, theirs_mac = scoped(synops), scoped(macs)
    ours = _module_totals(counts, "spikingjelly")
    kinds = {kind for per in ours.values() for kind in per}
    assert kinds == {"ac", "mac"}
    for module, per in ours.items():
        assert per.get("ac", 0) == theirs_ac.get(module, 0), module
        assert per.get("mac", 0) == theirs_mac.get(module, 0), module
    sj = convention_counts(counts, "spikingjelly")
    assert (sj.ac * BATCH, sj.mac * BATCH) == (synops.get_total(), macs.get_total())
    # every case occurred: real bottlenecks, the padded first conv and BN as MACs; spikes
    # meeting a pruned fc2 as ACs larger than its nonzero pairs
    assert ours["blocks.0.attn.q.linear.second"]["mac"] > 0 and ours["stem.bns.0"]["mac"] > 0
    assert ours["blocks.0.mlp.fc2.linear"]["ac"] > _module_totals(counts, "stxbench")["blocks.0.mlp.fc2.linear"]["ac"]


def test_neurobench_convention_equals_neurobench_synaptic_operations(lively):
    pytest.importorskip("neurobench", reason="neurobench 2.3 not installed (pip install --no-deps neurobench==2.3.0)")
    from neurobench.metrics.workload import SynapticOperations
    from neurobench.models import TorchModel

    model, x = lively
    counts = count_batches(model, [x])
    wrapped = TorchModel(model)
    wrapped.register_hooks()
    metric = SynapticOperations()
    try:
        for i in range(BATCH):
            wrapped.reset_hooks()
            with torch.no_grad():
                preds = wrapped(x[i:i + 1])
            result = metric(wrapped, preds, (x[i:i + 1], None))
    finally:
        wrapped.cleanup_hooks()
    nb = convention_counts(counts, "neurobench")
    assert (nb.mac, nb.ac, nb.ac_int) == (result["Effective_MACs"], result["Effective_ACs"], 0.0)
    dense = sum(op.dense for op in counts.ops if op.module_type in ("Linear", "Conv2d"))
    assert dense == pytest.approx(result["Dense"], rel=1e-12)
    assert nb.mac > 0 and nb.ac > 0
    # attention matmuls are not NeuroBench layers: its ACs are below stxbench's by exactly them
    attention = sum(row.ops_total for row in estimate(counts, "stxbench", "fp32").layers
                    if row.module in ("blocks.0.attn.qk", "blocks.0.attn.av"))
    assert attention > 0
