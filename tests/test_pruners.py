"""L1P and DSP on tiny Spikformers: what they touch, exact counts, and output fidelity."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from stxbench.host.plugin_host import PluginHost
from stxbench_neuron_slif import SLIF
from stxbench_pruner_dsp import DSP, DSPParams, LowRankLinear, kept_count, svd_rank
from stxbench_pruner_l1p import L1P, L1PParams, lowest_magnitude_mask
from tiny_models import digits, factory, finetune, logits_on_test_split, tiny_model, trained_tiny_model

ST_SUFFIXES = tuple(f"{m}.linear.weight" for m in ("q", "k", "v", "proj", "fc1", "fc2"))


def test_pruners_are_registered():
    host = PluginHost()
    assert isinstance(host.pruner("l1p"), L1P) and isinstance(host.pruner("dsp"), DSP)


# -- L1P ------------------------------------------------------------------------------------


def test_lowest_magnitude_mask_breaks_ties_by_position():
    mask = lowest_magnitude_mask(torch.tensor([[1.0, 0.5, 1.0], [0.5, 1.0, 1.0]]), 3)
    assert mask.tolist() == [[0.0, 0.0, 1.0], [0.0, 1.0, 1.0]]


def _zeros(model) -> dict[str, int]:
    return {name: int((m.weight == 0).sum()) for name, m in model.st_matrices().items()}


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.9, 0.999])
def test_l1p_global_sparsity_is_exact_and_one_threshold(sparsity):
    model = tiny_model()
    dense = {name: m.weight.detach().clone() for name, m in model.st_matrices().items()}
    L1P().prune(model, L1PParams(sparsity=sparsity, scope="global"))
    L1P().finalize(model)
    total = sum(w.numel() for w in dense.values())  # 4 * 16*16 + 2 * 16*64 = 3072
    assert total == 3072
    assert sum(_zeros(model).values()) == round(sparsity * 3072)
    kept = [dense[n][m.weight != 0].abs() for n, m in model.st_matrices().items()]
    pruned = [dense[n][m.weight == 0].abs() for n, m in model.st_matrices().items()]
    if 0 < sparsity:  # one threshold: every pruned |w| is at most every kept |w|
        assert torch.cat(pruned).max() <= torch.cat(kept).min()


@pytest.mark.parametrize("sparsity", [0.3, 0.9])
def test_l1p_layer_scope_prunes_each_matrix_to_the_request(sparsity):
    model = tiny_model()
    L1P().prune(model, L1PParams(sparsity=sparsity, scope="layer"))
    L1P().finalize(model)
    for name, m in model.st_matrices().items():
        assert _zeros(model)[name] == round(sparsity * m.weight.numel()), name


def test_l1p_touches_only_st_matrix_weights():
    model = trained_tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    L1P().prune(model, L1PParams(sparsity=0.7))
    L1P().finalize(model)
    after = model.state_dict()
    assert after.keys() == before.keys()  # no weight_orig / weight_mask left: footprint is true
    for key, value in after.items():
        if key.endswith(ST_SUFFIXES):
            assert torch.equal(value[value != 0], before[key][value != 0]), key
        else:  # stem, BN, biases, head
            assert torch.equal(value, before[key]), key
    assert all(isinstance(p, nn.Parameter) for p in model.parameters())


def test_l1p_masks_hold_through_finetuning():
    model = trained_tiny_model()
    L1P().prune(model, L1PParams(sparsity=0.8))
    masks = {n: m.weight_mask.clone() for n, m in model.st_matrices().items()}
    start = {n: m.weight.detach().clone() for n, m in model.st_matrices().items()}
    finetune(model)
    L1P().finalize(model)
    for name, m in model.st_matrices().items():
        assert not prune.is_pruned(m)
        assert torch.equal(m.weight != 0, masks[name].bool()), name  # pruned: exactly 0
        assert not torch.equal(m.weight, start[name]), name  # and the kept ones trained


# -- DSP svd --------------------------------------------------------------------------------


def test_svd_rank_formula():
    assert svd_rank(0.5, 64, 64) == 16  # floor(0.5 * 4096 / 128)
    assert svd_rank(0.25, 256, 64) == 12  # floor(0.25 * 16384 / 320) = floor(12.8)
    assert svd_rank(1.0, 16, 16) == 8  # keep=1 is the break-even rank, d/2
    assert svd_rank(0.01, 16, 16) == 1  # at least 1
    assert svd_rank(0.29, 200, 200) == 29  # keep read as the decimal 29/100, not 0.2899999...
    assert kept_count(0.5, 64) == 32 and kept_count(0.001, 64) == 1


def test_svd_factors_split_singular_values_and_reach_dense_at_full_rank():
    torch.manual_seed(0)
    linear = nn.Linear(64, 16)
    x = torch.randn(200, 64)
    ref = linear(x).detach()
    errors = []
    for keep in (0.1, 0.25, 0.5, 0.75, 1.0):
        rank = svd_rank(keep, 16, 64)
        low = LowRankLinear.from_linear(linear, rank)
        assert (low.rank, low.in_features, low.out_features) == (rank, 64, 16)
        # sqrt split: both factors carry the same singular values
        s_first = torch.linalg.svdvals(low.first.weight.detach())
        s_second = torch.linalg.svdvals(low.second.weight.detach())
        assert torch.allclose(s_first, s_second, rtol=1e-5)
        assert torch.equal(low.second.bias, linear.bias)
        with torch.no_grad():
            errors.append(float((low(x) - ref).norm() / ref.norm()))
    assert errors == sorted(errors, reverse=True) and len(set(errors)) == len(errors)
    with torch.no_grad():
        assert (LowRankLinear.from_linear(linear, 16)(x) - ref).abs().max() < 1e-5


def test_dsp_svd_model_error_shrinks_with_keep_and_vanishes_at_full_rank():
    dense = trained_tiny_model()
    ref = logits_on_test_split(dense)
    errors = []
    for keep in (0.1, 0.25, 0.5, 1.0):
        model = trained_tiny_model()
        DSP().prune(model, DSPParams(keep=keep, method="svd"))
        assert all(isinstance(m, LowRankLinear) for m in model.st_matrices().values())
        errors.append(float((logits_on_test_split(model) - ref).norm() / ref.norm()))
    assert errors == sorted(errors, reverse=True) and errors[-1] < errors[0]
    full = trained_tiny_model()
    for name, m in full.st_matrices().items():
        full.replace_module(name, LowRankLinear.from_linear(m, min(m.in_features, m.out_features)))
    out = logits_on_test_split(full)
    assert (out - ref).abs().max() < 1e-4 and torch.equal(out.argmax(1), ref.argmax(1))


def test_dsp_svd_factors_are_fine_tuned():
    model = trained_tiny_model()
    DSP().prune(model, DSPParams(keep=0.5))
    start = {n: (m.first.weight.detach().clone(), m.second.weight.detach().clone())
             for n, m in model.st_matrices().items()}
    finetune(model)
    for name, m in model.st_matrices().items():
        assert not torch.equal(m.first.weight, start[name][0]), name
        assert not torch.equal(m.second.weight, start[name][1]), name


# -- DSP channels ---------------------------------------------------------------------------


def test_dsp_channels_keeps_largest_fc1_rows_and_matches_zeroed_units():
    dense = trained_tiny_model()
    fc1 = dense.get_submodule("blocks.0.mlp.fc1.linear")
    order = fc1.weight.detach().abs().sum(1).argsort(descending=True)
    kept = order[:32].sort().values
    # the same model with the dropped units' fc2 columns zeroed computes what the narrowed one does
    zeroed = trained_tiny_model()
    dropped = order[32:]
    with torch.no_grad():
        zeroed.get_submodule("blocks.0.mlp.fc2.linear").weight[:, dropped] = 0
    model = trained_tiny_model()
    DSP().prune(model, DSPParams(keep=0.5, method="channels"))
    new_fc1 = model.get_submodule("blocks.0.mlp.fc1.linear")
    bn, old_bn = model.get_submodule("blocks.0.mlp.fc1.bn"), dense.get_submodule("blocks.0.mlp.fc1.bn")
    assert torch.equal(new_fc1.weight, fc1.weight[kept]) and torch.equal(new_fc1.bias, fc1.bias[kept])
    for key in ("weight", "bias", "running_mean", "running_var"):
        assert torch.equal(bn.state_dict()[key], old_bn.state_dict()[key][kept]), key
    assert model.get_submodule("blocks.0.mlp.fc1.neuron").site.channels == 32
    assert model.get_submodule("blocks.0.mlp.fc2.linear").weight.shape == (16, 32)
    out, ref = logits_on_test_split(model), logits_on_test_split(zeroed)
    assert torch.allclose(out, ref, atol=1e-5) and torch.equal(out.argmax(1), ref.argmax(1))


def test_dsp_channels_narrows_a_learnable_neuron_keeping_its_kept_channels():
    model = tiny_model(SLIF)
    slot = model.get_submodule("blocks.0.mlp.fc1.neuron")
    with torch.no_grad():
        slot.impl.theta.copy_(torch.arange(64.0) + 1)
    DSP().prune(model, DSPParams(keep=0.25, method="channels"))
    fc1_rows = model.get_submodule("blocks.0.mlp.fc1.linear").weight.shape[0]
    assert fc1_rows == 16 and slot.site.channels == 16 and slot.impl.theta.shape == (16,)
    kept = torch.sort(tiny_model(SLIF).get_submodule("blocks.0.mlp.fc1.linear").weight.abs().sum(1),
                      descending=True, stable=True).indices[:16].sort().values
    assert torch.equal(slot.impl.theta, kept.float() + 1)
    assert model(torch.rand(3, 1, 8, 8)).shape == (3, 10)


# -- DSP svd with a spiking bottleneck ------------------------------------------------------


def test_dsp_bottleneck_default_leaves_earlier_parameters_as_they_were():
    # records made before the field existed resolve to the same dict (names, labels, caches)
    assert DSPParams().model_dump(mode="json") == {"keep": 0.5, "method": "svd"}
    assert DSPParams(bottleneck="spike").model_dump(mode="json") == {"keep": 0.5, "method": "svd", "bottleneck": "spike"}
    with pytest.raises(ValueError, match="bottleneck=spike needs method=svd"):
        DSPParams(method="channels", bottleneck="spike")


def test_dsp_bottleneck_puts_a_neuron_slot_between_the_factors():
    from stxbench.measure import metrics
    from stxbench.models.base import NeuronSlot
    from stxbench_neuron_plif import PLIF

    model = tiny_model(SLIF)  # per-channel learnable neurons: their parameters are not weights
    shapes = metrics.dense_shapes(model)
    slots_before = {name for name, _ in model.neuron_slots()}
    DSP().prune(model, DSPParams(keep=0.5, bottleneck="spike"))
    for name, m in model.st_matrices().items():
        r = svd_rank(0.5, m.out_features, m.in_features)  # 16x16: 4; 16x64 / 64x16: 6
        assert isinstance(m, LowRankLinear) and m.rank == r and m.merged_weight() is None
        assert isinstance(m.neuron, NeuronSlot)
        assert (m.neuron.site.name, m.neuron.site.channels, m.neuron.site.channel_dim) == (f"{name}.neuron", r, -1)
        assert type(m.neuron.impl) is type(model.get_submodule("blocks.0.attn.q.neuron").impl)
    new_slots = {name for name, _ in model.neuron_slots()} - slots_before
    assert new_slots == {f"{name}.neuron" for name in model.st_matrices()}
    stats = {s.name: s for s in metrics.matrix_stats(model, shapes)}
    # weights r*(m+n): 4*32 for q, k, v, proj; 6*80 for fc1, fc2; the sLIF's w and theta
    # (2 x r each) are neuron parameters, counted in params_effective but not as weights
    assert [stats[n].params for n in shapes] == [128, 128, 128, 128, 480, 480]
    neuron_params = sum(p.numel() for n in new_slots for p in model.get_submodule(n).parameters())
    assert neuron_params == 2 * (4 * 4 + 6 * 2)
    assert metrics.params_effective(model, list(stats.values())) == metrics.count_parameters(model)
    # the stage-3 neuron swap reaches the bottleneck too
    model.swap_neurons(factory(PLIF))
    assert type(model.get_submodule("blocks.0.attn.q.linear.neuron").impl) is type(
        model.get_submodule("blocks.0.attn.q.neuron").impl)


def test_dsp_bottleneck_second_factor_is_fed_spikes():
    from stxbench.measure.counting import count_batches
    from stxbench.measure.metrics import FiringRates

    model = trained_tiny_model()
    DSP().prune(model, DSPParams(keep=0.5, bottleneck="spike"))
    splits = digits()
    x = splits.test.tensors[0][:64]
    x = splits.prepare(x) if splits.prepare else x
    slots = [slot for _, slot in model.neuron_slots()]
    with FiringRates(model) as rates:
        counts = count_batches(model, [x], slots)
    assert "blocks.0.mlp.fc1.linear.neuron" in rates.per_layer()
    seconds = [op for op in counts.ops if op.module.endswith(".second")]
    assert len({op.module for op in seconds}) == 6
    assert {op.a_kind for op in seconds} == {"binary"}  # spikes: accumulates, not MACs
    assert {layer.kind for layer in counts.layers if layer.module.endswith(".second")} == {"ac"}
    assert counts.merge_options == []  # a neuron between the factors: no one matrix to price
    assert any(n.module == "blocks.0.attn.q.linear.neuron" and n.updates == 2 * 4 * 4 for n in counts.neurons)
