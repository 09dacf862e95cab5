"""Op counts against hand arithmetic: every number here is worked out in the comments."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stxbench.measure.counting import OpCounter, count_batches
from stxbench.run.errors import RunFailed
from stxbench_model_spikformer.spikformer import MatMul

# 3 outputs x 4 inputs; nonzero weights per input column k: 2, 0, 2, 2 (column 1 fully pruned)
# (real values: integer-valued weights would themselves be an integer operand)
WEIGHT = torch.tensor([[1.5, 0.0, -2.5, 0.0], [0.0, 0.0, 0.5, 4.25], [-0.75, 0.0, 0.0, 6.5]])


def _linear() -> nn.Linear:
    layer = nn.Linear(4, 3)
    with torch.no_grad():
        layer.weight.copy_(WEIGHT)
        layer.bias.fill_(0.5)
    return layer


def _single_row(counts):
    assert len(counts.layers) == 1
    return counts.layers[0]


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_linear_binary_input_with_pruned_weights(mode):
    # x nonzeros per column k over both samples: 1, 2, 1, 2
    # pairs = 1*2 + 2*0 + 1*2 + 2*2 = 8 over 2 samples (4 each: sample 0 meets 2+0+2, sample 1 0+2+2)
    x = torch.tensor([[1.0, 1.0, 0.0, 1.0], [0.0, 1.0, 1.0, 1.0]])
    model = nn.Sequential(_linear())
    context = torch.inference_mode() if mode == "inference_mode" else torch.no_grad()
    with context:
        counts = count_batches(model, [x])
    row = _single_row(counts)
    # no_grad sees the decomposed addmm; inference_mode sees aten.linear whole
    assert (row.module, row.op, row.kind) == ("0", "addmm" if mode == "no_grad" else "linear", "ac")
    assert row.effective_ops == 4.0 and row.dense_ops == 12.0  # dense: 4 x 3 per sample
    assert row.input_rate == 0.75  # 6 of 8 inputs fire
    assert (counts.ac, counts.mac, counts.ac_int, counts.samples) == (4.0, 0.0, 0.0, 2)


def test_linear_time_first_input_counts_every_time_step():
    # [T=3, B=2, 4]: the same two samples at every step -> 3 x 8 pairs over 2 samples
    x = torch.tensor([[1.0, 1.0, 0.0, 1.0], [0.0, 1.0, 1.0, 1.0]]).expand(3, 2, 4)
    layer = _linear()
    with torch.no_grad(), OpCounter(layer) as counter:
        layer(x)
        counter.samples += 2
    assert counter.counts().ac == 12.0  # 24 / 2


def test_integer_residual_input_is_value_times_nonzero_fanout():
    # x = [2, 0, 1, 3] meets 2, 0, 2, 2 nonzero weights: 2*2 + 0 + 1*2 + 3*2 = 12 integer ACs
    x = torch.tensor([[2.0, 0.0, 1.0, 3.0]])
    counts = count_batches(nn.Sequential(_linear()), [x])
    row = _single_row(counts)
    assert (row.kind, row.effective_ops, row.dense_ops, row.input_rate) == ("ac_int", 12.0, 12.0, 0.75)
    assert (counts.ac_int, counts.ac, counts.mac) == (12.0, 0.0, 0.0)


def test_real_input_is_mac_for_every_product():
    # the head: a real input meets every weight, zero or not: 2 samples x 4 x 3 = 24 MACs
    x = torch.tensor([[0.5, 0.25, 0.0, 1.5], [0.1, 0.2, 0.3, 0.4]])
    counts = count_batches(nn.Sequential(_linear()), [x])
    row = _single_row(counts)
    assert (row.kind, row.effective_ops, row.dense_ops, row.input_rate) == ("mac", 12.0, 12.0, None)


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qk = MatMul()
        self.av = MatMul()

    def forward(self, q, kt, v):
        return self.av(self.qk(q, kt) * 0.125, v)


def test_spike_by_spike_matmul_and_attention_rows():
    # q [2x3] @ k^T [3x2], both binary, as [T=1, B=1, heads=1, N, d]
    q = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]]).view(1, 1, 1, 2, 3)
    kt = torch.tensor([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0]]).view(1, 1, 1, 3, 2)
    # v [2x3] binary; attn = q @ k^T * 0.125 = [[2, 1], [1, 2]] * 0.125 (no zero entry)
    v = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]).view(1, 1, 1, 2, 3)
    model = Attention()
    with torch.no_grad(), OpCounter(model) as counter:
        model(q, kt, v)
        counter.samples += 1
    rows = {row.module: row for row in counter.counts().layers}
    # qk: q column nonzeros 2, 1, 1; k^T row nonzeros 2, 1, 1 -> 4 + 1 + 1 = 6 pairs
    # (= the sum of q @ k^T, 2+1+1+2); dense 2 x 3 x 2 = 12; q fires 4 of 6
    assert (rows["qk"].op, rows["qk"].kind, rows["qk"].effective_ops, rows["qk"].dense_ops) == ("bmm", "ac", 6.0, 12.0)
    assert rows["qk"].input_rate == pytest.approx(4 / 6)
    # av: attn column nonzeros 2, 2; v row nonzeros 2, 1 -> 4 + 2 = 6; dense 2 x 2 x 3 = 12;
    # the binary operand is v (3 of 6 fire)
    assert (rows["av"].kind, rows["av"].effective_ops, rows["av"].dense_ops, rows["av"].input_rate) == ("ac", 6.0, 12.0, 0.5)


def test_real_times_binary_skips_zero_real_entries():
    # attn [[0.25, 0], [0.5, 0.125]] @ v [[1, 0, 1], [0, 0, 1]]: attn column nonzeros 2, 1;
    # v row nonzeros 2, 1 -> 4 + 1 = 5 pairs (the zero attention entry meets no spike)
    attn = torch.tensor([[0.25, 0.0], [0.5, 0.125]])
    v = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    model = MatMul()
    with torch.no_grad(), OpCounter(model) as counter:
        model(attn, v)
        counter.samples += 1
    row = counter.counts().layers[0]
    assert (row.module, row.op, row.kind, row.effective_ops, row.dense_ops) == ("(root)", "mm", "ac", 5.0, 12.0)


def _conv() -> nn.Conv2d:
    # 1 -> 2 channels, 3x3, padding 1. Output channel 0: all nine taps nonzero; channel 1: only
    # the top-left tap. Nonzero weights per tap, summed over output channels: 2 at (0,0), else 1.
    conv = nn.Conv2d(1, 2, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0].fill_(0.5)
        conv.weight[1, 0, 0, 0] = -1.0
    return conv


def test_conv_with_padding_counts_border_pairs():
    # 3x3 binary image with its diagonal set. Output o reads input o - 1 + t through tap t.
    #   pixel (0,0) is read by taps t in {0,1}^2 (the others fall outside): 2 + 1 + 1 + 1 = 5
    #   pixel (1,1) is read by all nine taps:                                2 + 8 x 1     = 10
    #   pixel (2,2) is read by taps t in {1,2}^2, never (0,0):               4 x 1         = 4
    # -> 19 pairs. Dense: every pixel x every tap that reaches it, per output channel:
    #   corners 4 taps, edges 6, centre 9 -> 4*4 + 4*6 + 9 = 49, x 2 channels = 98
    #   (counting the padded taps too, as SpikingJelly's MAC counter does, would give 162)
    x = torch.eye(3).view(1, 1, 3, 3)
    counts = count_batches(nn.Sequential(_conv()), [x])
    row = _single_row(counts)
    assert (row.op, row.kind, row.effective_ops, row.dense_ops) == ("convolution", "ac", 19.0, 98.0)
    assert row.input_rate == pytest.approx(3 / 9)


def test_conv_with_real_input_is_mac_without_padded_taps():
    x = torch.full((1, 1, 3, 3), 0.3)
    counts = count_batches(nn.Sequential(_conv()), [x])
    assert (counts.mac, counts.ac, _single_row(counts).kind) == (98.0, 0.0, "mac")


def _brute_conv1d_pairs(x, w, stride, padding, dilation, groups, transposed):
    """Loop over every (input entry, weight tap) pair that lands on an output entry."""
    n, c_in, length = x.shape
    k = w.shape[-1]
    if transposed:  # weight [C_in, C_out/g, k]; input i reaches output i*stride - padding + t*dilation
        out_len = (length - 1) * stride - 2 * padding + dilation * (k - 1) + 1

        def lands(i, t):
            return 0 <= i * stride - padding + t * dilation < out_len

        def weights(ci, t):
            return w[ci, :, t]
    else:  # weight [C_out, C_in/g, k]; output o reads input o*stride - padding + t*dilation
        out_len = (length + 2 * padding - dilation * (k - 1) - 1) // stride + 1
        per_group, out_per_group = c_in // groups, w.shape[0] // groups

        def lands(i, t):
            o, rest = divmod(i + padding - t * dilation, stride)
            return rest == 0 and 0 <= o < out_len

        def weights(ci, t):
            g = ci // per_group
            return w[g * out_per_group:(g + 1) * out_per_group, ci % per_group, t]
    pairs = dense = 0
    for b in range(n):
        for ci in range(c_in):
            for i in range(length):
                for t in range(k):
                    if lands(i, t):
                        met = weights(ci, t)
                        dense += len(met)
                        pairs += int(bool(x[b, ci, i])) * int((met != 0).sum())
    return pairs, dense


@pytest.mark.parametrize("pruned", [True, False])  # a weight without zeros takes a shortcut
@pytest.mark.parametrize(
    "stride, padding, dilation, groups, transposed",
    [(1, 1, 1, 1, False), (2, 2, 1, 2, False), (1, 3, 2, 1, False), (3, 0, 2, 2, False),
     (2, 1, 1, 2, True), (1, 2, 2, 1, True)],
)
def test_conv1d_variants_match_a_brute_force_loop(stride, padding, dilation, groups, transposed, pruned):
    gen = torch.Generator().manual_seed(stride * 100 + padding * 10 + dilation + groups)
    x = (torch.rand(2, 4, 9, generator=gen) < 0.4).float()
    if transposed:
        conv = nn.ConvTranspose1d(4, 6, 3, stride, padding, groups=groups, dilation=dilation, bias=False)
    else:
        conv = nn.Conv1d(4, 6, 3, stride, padding, dilation, groups, bias=False)
    with torch.no_grad():
        keep = torch.rand(conv.weight.shape, generator=gen) < 0.6
        conv.weight.copy_(torch.where(keep | (not pruned), conv.weight.sign() + (conv.weight == 0), 0.0) * 0.7)
    pairs, dense = _brute_conv1d_pairs(x, conv.weight, stride, padding, dilation, groups, transposed)
    row = _single_row(count_batches(nn.Sequential(conv), [x]))
    assert (row.effective_ops * 2, row.dense_ops * 2) == (pairs, dense)


def test_samples_and_neuron_updates_accumulate_over_batches():
    # two batches (3 + 1 samples) of the binary input of the first test; a ReLU stands in for
    # the neuron: each element of its input is one update (3 per sample)
    x = torch.tensor([[1.0, 1.0, 0.0, 1.0], [0.0, 1.0, 1.0, 1.0]])
    model = nn.Sequential(_linear(), nn.ReLU())
    counts = count_batches(model, [x[[0, 1, 0]], x[[1]]], neurons=[model[1]])
    # pairs per sample: 4 for either input -> 16 over 4 samples
    assert (counts.samples, counts.ac, counts.neuron_updates) == (4, 4.0, 3.0)


def test_composite_ops_are_decomposed_under_inference_mode():
    # einsum arrives whole under inference_mode; the bmm inside it must still be counted:
    # a column nonzeros 2, 1, 1 x b row nonzeros 2, 1, 1 -> 6 pairs (as in the q @ k^T case)
    class Einsum(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("b", torch.tensor([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0]]))

        def forward(self, a):
            return torch.einsum("bij,jk->bik", a, self.b)

    a = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    with torch.inference_mode():
        counts = count_batches(Einsum(), [a.unsqueeze(0)])
    row = _single_row(counts)
    assert (row.module, row.op, row.kind, row.effective_ops, row.dense_ops) == ("(root)", "bmm", "ac", 6.0, 12.0)


def test_uncountable_synaptic_op_fails_the_count():
    class Dot(nn.Module):
        def forward(self, x):
            return torch.dot(x, x)

    with pytest.raises(RunFailed, match="aten.dot.default in module '\\(root\\)'.*cannot count"):
        count_batches(Dot(), [torch.ones(3)])


def test_nothing_counted_fails_instead_of_reporting_zero():
    with pytest.raises(RunFailed, match="no synaptic op"):
        count_batches(nn.ReLU(), [torch.ones(2, 3)])
    with pytest.raises(RunFailed, match="no samples"):
        count_batches(nn.Sequential(_linear()), [])


@pytest.mark.parametrize(
    "values, kind",
    [
        ([0.0, 1.0, 1.0], "binary"),
        ([0.0, 0.0], "binary"),  # a silent layer: nothing fires, nothing is charged
        ([0.0, 2.0, 4.0], "int"),
        ([0.0, 255.0], "int"),
        ([0.0, 256.0], "real"),  # not small: above SMALL_INT_MAX
        ([0.0, 1.0, -1.0], "signed"),  # {-1, 0, 1}: NeuroBench's spikes; real to this rule
        ([0.0, -2.0], "real"),  # negative
        ([0.0, -1.0, 2.0], "real"),
        ([0.0, 0.5, 1.0], "real"),
        ([0.0, 1.0 - 2**-24], "real"),  # the float32 just below 1
        ([0.0, float("nan")], "real"),
    ],
)
def test_operand_classification(values, kind):
    from stxbench.measure.op_rules import classify

    assert classify(torch.tensor(values)).kind == kind


def test_broadcast_matmul_counts_every_matrix_it_meets():
    # a [2, 3, 4, 5] @ b [3, 5, 6]: b's 3 matrices are broadcast over a's first dim; pairs are
    # sum over (i, j, k) of a[i, j]'s nonzeros in column k times b[j]'s nonzeros in row k
    gen = torch.Generator().manual_seed(3)
    a = (torch.rand(2, 3, 4, 5, generator=gen) < 0.5).float()
    b = (torch.rand(3, 5, 6, generator=gen) < 0.5).float()
    expected = int(torch.einsum("ijmk,jkn->", a, b))
    with torch.no_grad(), OpCounter(MatMul()) as counter:
        counter.model(a, b)
        counter.samples += 1
    counts = counter.counts()
    assert counts.ac == expected and sum(op.dense for op in counts.ops) == 2 * 3 * 4 * 5 * 6


@pytest.mark.parametrize("stride, padding, dilation", [(1, 1, 1), (2, (0, 2), 1), (1, 2, (2, 1))])
def test_dense_conv2d_shortcut_equals_the_counting_convolution(stride, padding, dilation):
    # integer frames into a 2-D convolution without zero weights, against the same convolution
    # with one zero weight (which takes the general path) plus that one weight's pairs
    gen = torch.Generator().manual_seed(7)
    x = torch.randint(0, 3, (3, 2, 7, 6), generator=gen).float()
    conv = nn.Conv2d(2, 4, (3, 2), stride, padding, dilation, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.rand(conv.weight.shape, generator=gen) + 0.5)
    dense = count_batches(nn.Sequential(conv), [x])
    with torch.no_grad():
        conv.weight[0, 0, 0, 0] = 0.0
    pruned = count_batches(nn.Sequential(conv), [x])
    one = nn.Conv2d(2, 1, (3, 2), stride, padding, dilation, bias=False)
    with torch.no_grad():
        one.weight.zero_()
        one.weight[0, 0, 0, 0] = 1.0
        values = float(one(x).sum())  # what the zeroed weight met: x's values through that tap
        pairs = float(one((x != 0).float()).sum())
    n = x.shape[0]
    assert dense.ac_int * n == pruned.ac_int * n + values
    assert sum(o.nonzero_pairs for o in dense.ops) * n == sum(o.nonzero_pairs for o in pruned.ops) * n + pairs
    assert [o.dense for o in dense.ops] == [o.dense for o in pruned.ops]
