"""A sample's counts never depend on its batch neighbours, and counting runs in the evaluation's
precision."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stxbench.api import Surrogate
from stxbench.measure.counting import OpCounter, count_batches
from stxbench.run.processes import Execution
from stxbench.host.plugin_host import PluginHost
from stxbench.measure.op_rules import SMALL_INT_MAX, Layout, layout, sample_kinds

T = 2


@pytest.fixture(scope="module")
def event_model():
    """spikformer-1-16 on 2x16x16 event frames ([B, T, 2, 16, 16], as the DVS datasets give),
    in float64 so that a sample computes bit-identically alone and in a batch."""
    host = PluginHost(())
    backend, lif = host.backend("torch"), host.neuron("lif")
    torch.manual_seed(0)
    model = host.model_family("spikformer").build(
        "1-16", input_shape=(2, 16, 16), num_classes=11, T=T, options={"pools": 2},
        make_neuron=lambda site: backend.make_neuron(lif, site, Surrogate("atan", None)),
    )
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.bias.copy_(torch.rand(module.bias.shape, generator=gen) * 2)
    return model.double().eval()


def _frames(seed: int, hot: int | None = None, binary: bool = False) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    top = 2 if binary else 4
    x = torch.randint(0, top, (1, T, 2, 16, 16), generator=gen).double()
    if hot is not None:
        x[0, 1, 0, 5, 7] = hot  # one pixel of `hot` events in the second frame
    return x


def _raw(model, x) -> dict[tuple, dict[str, int]]:
    """Per (module, op, kinds): every stored count summed over the samples (integers)."""
    neurons = [slot for _, slot in model.neuron_slots()]
    counts = count_batches(model, [x], neurons)
    n = counts.samples
    out = {}
    for op in counts.ops:
        values = op.model_dump(exclude={"module", "module_type", "op", "a_kind", "b_kind"})
        out[(op.module, op.op, op.a_kind, op.b_kind)] = {k: round(v * n) for k, v in values.items()}
    for neuron in counts.neurons:
        out[(neuron.module, "neuron")] = {"updates": round(neuron.updates * n)}
    return out


def _add(*parts):
    total: dict[tuple, dict[str, int]] = {}
    for part in parts:
        for key, values in part.items():
            row = total.setdefault(key, dict.fromkeys(values, 0))
            for name, value in values.items():
                row[name] += value
    return total


def test_event_frames_count_the_same_alone_and_in_a_batch(event_model):
    # a: counts 0..3 per pixel (integers); b: the same kind of frame with one pixel of 300 events
    # (> SMALL_INT_MAX, so b's frames are real-valued to the rule); c: at most one event per pixel
    a, b, c = _frames(0), _frames(1, hot=300), _frames(2, binary=True)
    assert 300 > SMALL_INT_MAX
    alone = [_raw(event_model, s) for s in (a, b, c)]
    together = _raw(event_model, torch.cat([a, b, c]))
    assert together == _add(*alone)
    # the first convolution, per sample: a's frames are integer accumulates, b's MACs, c's ACs
    first = {key[2]: values for key, values in together.items() if key[0] == "stem.convs.0"}
    assert set(first) == {"int", "real", "binary"}
    assert first["int"] == alone[0][("stem.convs.0", "convolution", "int", "real")]
    # b's MACs: 2 -> 2 channels, 3x3 padding 1 on 16x16: rows and columns each reach 16 x 3 - 2
    # = 46 real taps, so 46^2 x 2 x 2 products per time step, 9 x 256 x 4 with the padded taps
    assert (first["real"]["dense"], first["real"]["dense_padded"]) == (46**2 * 4 * T, 9 * 256 * 4 * T)
    # deciding over the whole batch (the old rule) would have made a's convolution MACs
    assert first["int"]["value_pairs"] > 0 and first["binary"]["nonzero_pairs"] > 0


def test_sample_kinds_follow_the_time_first_layout():
    # [T=2, B=3, N=2, C=2] flattened to rows as a Linear sees it: sample 1 holds a 2, sample 2
    # a 0.5, sample 0 only spikes
    x = torch.zeros(2, 3, 2, 2)
    x[0, 0, 0, 0] = 1.0
    x[1, 1, 1, 1] = 2.0
    x[0, 2, 1, 0] = 0.5
    lay = layout(2 * 3 * 2, batch=3, time_steps=2)
    assert lay == Layout(steps=2, batch=3, inner=2)
    assert sample_kinds(x.reshape(12, 2), lay).tolist() == [0, 2, 3]  # binary, int, real
    assert layout(3, batch=3, time_steps=2) == Layout(1, 3, 1)  # the head: [B, C]
    assert layout(5, batch=3, time_steps=2) is None  # no whole number of rows per sample


def test_counting_runs_under_the_evaluations_autocast():
    # bf16 autocast casts the weight to bfloat16 for the matmul; spikes and their pairs are
    # exact in bf16, and the cast weight is still recognised as the weight (its reads counted)
    layer = nn.Linear(4, 3)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.5, 0.0, -2.5, 0.0], [0.0, 0.0, 0.5, 4.25], [-0.75, 0.0, 0.0, 6.5]]))
    model = nn.Sequential(layer)
    x = torch.tensor([[1.0, 1.0, 0.0, 1.0], [0.0, 1.0, 1.0, 1.0]])
    seen = []
    model.register_forward_hook(lambda m, args, out: seen.append(out.dtype))
    fp32 = count_batches(model, [x])
    bf16 = count_batches(model, [x], execution=Execution(precision="bf16"))
    assert seen == [torch.float32, torch.bfloat16]
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    assert (bf16.ac, bf16.mac) == (fp32.ac, fp32.mac) == (4.0, 0.0)
    assert bf16.ops[0].weight_reads == fp32.ops[0].weight_reads == 12.0
    assert bf16.ops[0].weight_nonzero_reads == 6.0


def test_weights_are_read_once_per_time_step():
    class Repeat(nn.Module):
        """[B, 4] repeated over T=3 time steps, then the Linear: [T, B, 4]."""

        T = 3

        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3, bias=False)

        def forward(self, x):
            return self.fc(x.unsqueeze(0).expand(self.T, *x.shape))

    model = Repeat()
    with torch.no_grad(), OpCounter(model) as counter:
        model(torch.ones(2, 4))
        counter.samples += 2
    op = counter.counts().ops[0]
    assert (op.weight_reads, op.dense) == (3 * 12.0, 3 * 12.0)  # 12 weights x 3 steps per sample
