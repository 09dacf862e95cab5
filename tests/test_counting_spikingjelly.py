"""Cross-check against SpikingJelly 2.0's ``activation_based.op_counter`` on one model and batch.

Both count at the ATen dispatch level and attribute to modules, so every Spikformer layer can be
compared row by row. Where the conventions agree the numbers must be equal; where they differ,
each test says how and checks the difference exactly:

* binary input x dense weights (stem convs 1-3, rpe conv, proj, fc2) and spike x spike
  (``q @ k^T``): SynOps == our ACs;
* real x binary (``attn @ v``): SpikingJelly charges every attention entry a spike meets,
  zero or not (nnz(v) x N); we charge nonzero pairs only;
* a pruned weight: SpikingJelly charges nnz(x) x out_features; we skip the zero weights;
* residual-stream inputs {0,1,2,...} (q, k, v, fc1): SpikingJelly sees no binary operand and
  counts dense MACs; we count integer ACs (value x nonzero fan-out) over the same dense size;
* the real-valued first conv: both MACs, but SpikingJelly counts the taps that fall on zero
  padding too; we count products of real operand entries only.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stxbench.measure.counting import count_batches
from stxbench.host.plugin_host import PluginHost
from tiny_models import lively_spikformer

op_counter = pytest.importorskip(
    "spikingjelly.activation_based.op_counter", reason="spikingjelly 2.0 (and loguru) not installed"
)

T, BATCH = 2, 4


@pytest.fixture(scope="module")
def lively_model():
    """spikformer-1-16 on 8x8 digits-shaped input, T=2, with BN biases raised so that every
    layer fires (an untrained model is nearly silent)."""
    host = PluginHost(())
    model, gen = lively_spikformer(host, T)
    return model, torch.rand(BATCH, 1, 8, 8, generator=gen)


def _spikingjelly_counts(model, x):
    synops, macs = op_counter.SynOpCounter(), op_counter.MACCounter()
    with torch.no_grad(), op_counter.DispatchCounterMode([synops, macs]):
        model(x)
    root = type(model).__name__

    def per_module(counter):
        return {
            scope.removeprefix(f"{root}."): sum(ops.values()) for scope, ops in counter.get_counts().items()
        }

    return per_module(synops), per_module(macs)


def test_spikformer_layers_against_spikingjelly(lively_model):
    model, x = lively_model
    ours = {row.module: row for row in count_batches(model, [x]).layers}
    synops, macs = _spikingjelly_counts(model, x)

    def total(name):  # our per-sample numbers back to the batch
        return ours[name].effective_ops * BATCH

    every_layer_fires = [name for name, row in ours.items() if row.effective_ops == 0]
    assert every_layer_fires == []

    for name in ["stem.convs.1", "stem.convs.2", "stem.convs.3", "stem.rpe_conv",
                 "blocks.0.attn.qk", "blocks.0.attn.proj.linear", "blocks.0.mlp.fc2.linear"]:
        assert ours[name].kind == "ac"
        assert total(name) == synops[name], name

    av = ours["blocks.0.attn.av"]
    n_tokens = 4  # 8x8 pooled twice
    spikes_in_v = round(av.input_rate * av.dense_ops * BATCH / n_tokens)
    assert synops["blocks.0.attn.av"] == spikes_in_v * n_tokens
    assert total("blocks.0.attn.av") < synops["blocks.0.attn.av"]  # zero attention entries skipped

    for name in ["blocks.0.attn.q.linear", "blocks.0.attn.k.linear", "blocks.0.attn.v.linear",
                 "blocks.0.mlp.fc1.linear"]:
        assert ours[name].kind == "ac_int", name
        assert synops[name] == 0 and macs[name] == ours[name].dense_ops * BATCH, name

    assert ours["head"].kind == "mac" and total("head") == macs["head"] == 16 * 10 * BATCH

    # first conv, 1 -> 2 channels, 3x3, padding 1 on 8x8, run at T steps: SpikingJelly counts
    # 64 x 9 taps per (sample, step, channel); we count 22 x 22 = 484 (rows and columns each
    # reach 8 x 3 - 2 = 22 real taps): 92 padded taps x 2 channels x T x BATCH apart
    assert ours["stem.convs.0"].kind == "mac"
    assert total("stem.convs.0") == 484 * 2 * T * BATCH
    assert macs["stem.convs.0"] - total("stem.convs.0") == 92 * 2 * T * BATCH


def test_pruned_linear_against_spikingjelly():
    layer = nn.Linear(4, 3, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.5, 0.0, -2.5, 0.0], [0.0, 0.0, 0.5, 4.25], [-0.75, 0.0, 0.0, 6.5]]))
    x = torch.tensor([[1.0, 1.0, 0.0, 1.0], [0.0, 1.0, 1.0, 1.0]])
    ours = count_batches(nn.Sequential(layer), [x])
    synops, _ = _spikingjelly_counts(nn.Sequential(layer), x)
    # SpikingJelly: 6 input spikes x 3 outputs = 18; ours: 8 nonzero pairs (see test_counting)
    assert (synops["0"], ours.ac * 2) == (18, 8.0)
