"""Spikformer: exact parameter counts, shapes, stems, and the model contract pruners rely on."""

import pytest
import torch

from stxbench.api import NeuronSite, Surrogate
from stxbench.run.errors import UsageError
from stxbench.host.plugin_host import PluginHost
from stxbench_backend_torch import TorchBackend
from stxbench_model_spikformer import SpikformerFamily
from stxbench_model_spikformer.spikformer import default_pools
from stxbench_neuron_lif import LIF


def make_neuron(site: NeuronSite):
    return TorchBackend().make_neuron(LIF, site, Surrogate())


def build(size, input_shape, classes=10, T=4, **options):
    return SpikformerFamily().build(
        size, input_shape=input_shape, num_classes=classes, T=T, make_neuron=make_neuron,
        options=options,
    )


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_spikformer_4_384_cifar10_has_exactly_9324730_parameters():
    assert n_params(build("4-384", (3, 32, 32))) == 9_324_730


def test_parameter_count_by_hand_for_a_tiny_model():
    # spikformer-1-16 on 1x8x8, 10 classes. Stem convs (3x3, no bias): 1*2*9 + 2*4*9 + 4*8*9
    # + 8*16*9 + rpe 16*16*9 = 18+72+288+1152+2304 = 3834; stem BNs 2*(2+4+8+16+16) = 92.
    # Block: q,k,v,proj 4*(16*16+16) = 1088, fc1 16*64+64 = 1088, fc2 64*16+16 = 1040;
    # BNs 2*(16*4 + 64 + 16) = 288. Head 16*10+10 = 170.
    assert n_params(build("1-16", (1, 8, 8))) == 3834 + 92 + 1088 + 1088 + 1040 + 288 + 170


def test_st_matrices_are_q_k_v_proj_fc1_fc2_of_every_block():
    model = build("2-32", (1, 8, 8))
    names = list(model.st_matrices())
    assert len(names) == 12
    assert names[:6] == [f"blocks.0.attn.{m}.linear" for m in ("q", "k", "v", "proj")] + [
        "blocks.0.mlp.fc1.linear", "blocks.0.mlp.fc2.linear"]
    assert all(isinstance(m, torch.nn.Linear) for m in model.st_matrices().values())
    hidden = model.hidden_layers()[1]
    assert model.get_submodule(hidden.fc1).out_features == 128
    assert model.get_submodule(hidden.fc2).in_features == 128
    assert model.get_submodule(hidden.neuron).site.channels == 128


def test_neuron_sites_and_attention_threshold():
    model = build("1-32", (3, 32, 32))
    slots = dict(model.neuron_slots())
    # 4 stem + rpe, and per block q, k, v, attn, proj, fc1, fc2
    assert len(slots) == 5 + 7
    assert slots["blocks.0.attn.attn_neuron"].site.v_threshold == 0.5
    assert slots["blocks.0.attn.q.neuron"].site.v_threshold == 1.0
    assert slots["stem.neurons.0"].site.channel_dim == -3
    assert slots["blocks.0.mlp.fc1.neuron"].site.channels == 128


@pytest.mark.parametrize(
    "shape, pools, tokens",
    [((3, 32, 32), 2, 64), ((2, 128, 128), 4, 64), ((1, 28, 28), 2, 49), ((1, 8, 8), 0, 64), ((1, 40), 2, 10)],
)
def test_stem_adapts_to_input_size(shape, pools, tokens):
    assert default_pools(shape) == pools
    model = build("1-16", shape, T=2)
    seen = []
    model.blocks[0].register_forward_pre_hook(lambda m, args: seen.append(args[0].shape))
    out = model(torch.rand(3, *shape))
    assert out.shape == (3, 10)
    assert seen == [(2, 3, tokens, 16)]


def test_temporal_input_is_used_as_given():
    model = build("1-16", (2, 16, 16), T=3).eval()
    seen = []
    model.stem.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    frames = torch.rand(2, 3, 2, 16, 16)  # [B, T, C, H, W]: event frames
    model(frames)
    assert torch.equal(seen[0], frames.transpose(0, 1))
    static = frames[:, 0]  # [B, C, H, W]: repeated over T (direct encoding)
    model(static)
    assert seen[1].shape == (3, 2, 2, 16, 16)
    assert all(torch.equal(seen[1][t], static) for t in range(3))


def test_light_stem_is_one_patchify_conv_and_the_rpe_conv():
    # spikformer-1-16, patch 4 on 1x8x8: conv 1*16*4*4 = 256, BN 2*16 = 32; rpe conv 16*16*9 =
    # 2304, BN 32; the block and head as in the tiny model above: 1088 + 1088 + 1040 + 288 + 170
    model = build("1-16", (1, 8, 8), patch=4)
    assert n_params(model) == 256 + 32 + 2304 + 32 + 1088 + 1088 + 1040 + 288 + 170
    assert [name for name, _ in model.neuron_slots()][:2] == ["stem.neurons.0", "stem.rpe_neuron"]
    seen = []
    model.blocks[0].register_forward_pre_hook(lambda m, args: seen.append(args[0].shape))
    assert model(torch.rand(3, 1, 8, 8)).shape == (3, 10)
    assert seen == [(4, 3, 4, 16)]  # (8 / 4)^2 = 4 tokens
    st = sum(m.weight.numel() for m in build("4-64", (1, 28, 28), patch=7).st_matrices().values())
    assert st / n_params(build("4-64", (1, 28, 28), patch=7)) > 0.8  # block-dominated


@pytest.mark.parametrize("options, message", [
    ({"patch": 3}, r"spikformer patch 3 must divide the input size \(8, 8\)"),
    ({"patch": 4, "pools": 2}, "comes without pools"),
    ({"patch": 0}, "whole number >= 1"),
    ({"patch": True}, "whole number >= 1"),
])
def test_bad_light_stems_are_user_errors(options, message):
    with pytest.raises(UsageError, match=message):
        build("1-16", (1, 8, 8), **options)


def test_bad_sizes_and_options_are_user_errors():
    with pytest.raises(UsageError, match="DEPTH-WIDTH"):
        build("big", (1, 8, 8))
    with pytest.raises(UsageError, match="multiple of 8"):
        build("1-20", (1, 8, 8))
    with pytest.raises(UsageError, match="unknown spikformer option"):
        build("1-16", (1, 8, 8), heads_count=2)


def test_the_model_family_is_a_registered_plugin():
    from stxbench.record.code_identity import raw_sha256

    host = PluginHost()
    assert host.names("model") == ["linear", "sdt", "spikformer"]
    component = host.get("model", "spikformer")
    assert component.plugin == "model-spikformer" and host.is_builtin(component.plugin)
    # a record's plugin hashes cover the model's files, as they cover every other plugin's
    assert sorted(raw_sha256([component.module])) == [
        "stxbench_model_spikformer/__init__.py", "stxbench_model_spikformer/spikformer.py"]


def test_weight_decay_spares_biases_norms_and_neuron_constants():
    from stxbench.api import NeuronSpec
    from stxbench.run.training import parameter_groups

    slif = NeuronSpec("slif", "", decay="channel", threshold="channel")
    model = SpikformerFamily().build(
        "1-16", input_shape=(1, 8, 8), num_classes=10, T=2, options={},
        make_neuron=lambda site: TorchBackend().make_neuron(slif, site, Surrogate()))
    decay, no_decay = parameter_groups(model, 0.01)
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    # decayed: the 5 stem kernels, 6 ST matrices and the head weight; nothing else
    assert len(decay["params"]) == 5 + 6 + 1 and all(p.ndim >= 2 for p in decay["params"])
    stem_theta = model.stem.neurons[0].impl.theta  # shape (2, 1, 1): not a weight matrix
    assert any(p is stem_theta for p in no_decay["params"])
    assert sum(p.numel() for g in (decay, no_decay) for p in g["params"]) == sum(
        p.numel() for p in model.parameters())


def test_the_paper_regime_boards_model_is_block_dominated_by_hand():
    """mnist1d-paper's spikformer-2-64 on (1, 40) with one pool: the ST-block matrices the pruners
    touch hold 79.8 % of the parameters (the board's first criterion, docs/measured/paper-regime-pilot.md).
    1-D stem convs (k = 3, no bias): 1*8*3 + 8*16*3 + 16*32*3 + 32*64*3 + rpe 64*64*3 = 20,376;
    stem BNs 2*(8+16+32+64+64) = 368. Per block: matrices 4*64*64 + 2*64*256 = 49,152, their
    biases 4*64 + 256 + 64 = 576, BNs 2*(4*64 + 256 + 64) = 1,152. Head 64*10 + 10 = 650."""
    from stxbench.run.protocol import load_protocol

    protocol = load_protocol("mnist1d-paper")
    assert (protocol.model.name, dict(protocol.model.options)) == ("spikformer-2-64", {"pools": 1})
    model = build("2-64", (1, 40), pools=1)
    matrices = sum(m.weight.numel() for m in model.st_matrices().values())
    assert matrices == 2 * 49_152 == 98_304
    assert n_params(model) == 20_376 + 368 + 2 * (49_152 + 576 + 1_152) + 650 == 123_154
    assert matrices / n_params(model) >= 0.70
