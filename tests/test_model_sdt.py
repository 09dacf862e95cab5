"""Spike-driven Transformer (plugin ``model-sdt``): exact parameter counts, the model contract,
binary inputs to every weight matrix, SDSA as the original code computes it, pruners and backends
on it unchanged, op counting with no model-specific code."""

from __future__ import annotations

import functools
import tomllib
from importlib import resources

import pytest
import torch
from torch import nn

from stxbench.api import NeuronSite, Surrogate
from stxbench.measure.counting import count_batches
from stxbench.run.errors import UsageError
from stxbench.host.plugin_host import PluginHost
from stxbench.run.training import train_stage
from stxbench_backend_torch import TorchBackend
from stxbench_dataset_digits import Digits
from stxbench_model_sdt import SDTFamily
from stxbench_model_sdt.model import KV_THRESHOLD
from stxbench_neuron_lif import LIF
from stxbench_pruner_dsp import DSP, DSPParams, LowRankLinear
from stxbench_pruner_l1p import L1P, L1PParams
from tiny_models import tiny_protocol

CPU = torch.device("cpu")


def make_neuron(site: NeuronSite, backend=None, spec=LIF):
    backend = backend or TorchBackend()
    # the forward pass does not depend on the surrogate: take one every backend computes
    surrogate = Surrogate() if "atan" in backend.surrogates else Surrogate(backend.surrogates[0])
    return backend.make_neuron(spec, site, surrogate)


def build(size, input_shape, classes=10, T=4, neuron=make_neuron, **options):
    return SDTFamily().build(size, input_shape=input_shape, num_classes=classes, T=T,
                             make_neuron=neuron, options=options)


def keep_input(store: dict, key: str):
    """A forward pre-hook storing the module's first input (returns None: changes nothing)."""
    def hook(module, args):
        store.setdefault(key, args[0])
    return hook


def keep_io(store: dict, key: str):
    """A forward hook storing (first input, output) (returns None: changes nothing)."""
    def hook(module, args, out):
        store.setdefault(key, (args[0], out))
    return hook


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@functools.cache
def digits():
    return Digits().load(None)


def digit_images(n: int) -> torch.Tensor:
    x = digits().test.tensors[0][:n]
    return digits().prepare(x) if digits().prepare else x


@functools.cache
def _trained_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = build("1-16", (1, 8, 8), T=2, pools=2)
    train_stage(model, digits(), tiny_protocol(6).train, name="dense", seed=0, device=CPU)
    return {k: v.clone() for k, v in model.state_dict().items()}


def trained_tiny() -> nn.Module:
    """sdt-1-16 (T=2, 4 tokens) after 6 epochs on digits: its neurons fire."""
    model = build("1-16", (1, 8, 8), T=2, pools=2)
    model.load_state_dict(_trained_state())
    return model.eval()


# -- parameter counts ---------------------------------------------------------------------


def test_parameter_count_by_hand_for_a_tiny_model():
    # sdt-1-16 on 1x8x8, 10 classes. Stem convs (3x3, no bias): 1*2*9 + 2*4*9 + 4*8*9 + 8*16*9
    # + rpe 16*16*9 = 3834; stem BNs 2*(2+4+8+16+16) = 92. Block: q, k, v without bias
    # 3*16*16 = 768, proj 16*16+16 = 272, fc1 16*64+64 = 1088, fc2 64*16+16 = 1040; BNs
    # 2*(16*4 + 64 + 16) = 288. Head 16*10+10 = 170. Neurons (LIF) hold no parameters.
    assert n_params(build("1-16", (1, 8, 8))) == 3834 + 92 + 768 + 272 + 1088 + 1040 + 288 + 170


@pytest.mark.parametrize(
    "size, shape, classes, options, exact, published",
    [
        # the paper's CIFAR model; its 10.28M is the CIFAR-100 count (the CIFAR-10 one is 10.23M)
        ("2-512", (3, 32, 32), 100, {}, 10_279_588, "10.28"),
        ("2-512", (3, 32, 32), 10, {}, 10_233_418, "10.23"),
        ("8-768", (3, 224, 224), 1000, {}, 66_338_632, "66.34"),  # ImageNet, paper 66.34M
        ("2-256", (2, 64, 64), 10, {"pools": 2, "erode": True}, 2_566_666, "2.57"),  # CIFAR10-DVS
    ],
)
def test_published_sizes(size, shape, classes, options, exact, published):
    model = build(size, shape, classes, **options)
    assert n_params(model) == exact
    assert f"{exact / 1e6:.2f}" == published


# -- the model contract ---------------------------------------------------------------------


def test_st_matrices_are_q_k_v_proj_fc1_fc2_linears_and_hidden_layers_are_fc1_units():
    model = build("2-32", (1, 8, 8))
    names = list(model.st_matrices())
    assert names[:6] == [f"blocks.0.attn.{m}.linear" for m in ("q", "k", "v", "proj")] + [
        "blocks.0.mlp.fc1.linear", "blocks.0.mlp.fc2.linear"]
    assert len(names) == 12
    assert all(type(m) is nn.Linear for m in model.st_matrices().values())
    assert [model.get_submodule(n).bias is None for n in names[:4]] == [True, True, True, False]
    layer = model.hidden_layers()[1]
    assert model.get_submodule(layer.fc1).out_features == 128
    assert model.get_submodule(layer.bn).num_features == 128
    assert model.get_submodule(layer.neuron).site.channels == 128  # fc2's input neuron
    assert model.get_submodule(layer.fc2).in_features == 128
    # hidden == width: the code adds the stream to the hidden units, so none may be removed
    assert build("1-16", (1, 8, 8), mlp_ratio=1).hidden_layers() == []


def test_neuron_sites_and_the_sdsa_threshold():
    model = build("1-32", (3, 32, 32))
    slots = dict(model.neuron_slots())
    # 4 stem; per block the shortcut, q, k, v, SDSA, fc1 and fc2 neurons; the head neuron
    assert len(slots) == 4 + 7 + 1
    assert slots["blocks.0.attn.kv_neuron"].site.v_threshold == KV_THRESHOLD == 0.5
    assert all(s.site.v_threshold == 1.0 for n, s in slots.items() if n != "blocks.0.attn.kv_neuron")
    assert slots["stem.neurons.0"].site.channel_dim == -3
    assert slots["blocks.0.mlp.fc1.neuron"].site.channels == 32
    assert slots["blocks.0.mlp.fc2.neuron"].site.channels == 128


@pytest.mark.parametrize("shape, pools, tokens", [((3, 32, 32), 2, 64), ((1, 8, 8), 1, 16),
                                                   ((1, 28, 28), 2, 49), ((1, 40), 2, 10)])
def test_stem_and_temporal_input(shape, pools, tokens):
    model = build("1-16", shape, T=2, pools=pools)
    seen = []
    model.blocks[0].register_forward_pre_hook(lambda m, args: seen.append(args[0].shape) and None)
    assert model(torch.rand(3, *shape)).shape == (3, 10)
    assert seen == [(2, 3, tokens, 16)]
    stem_in = []
    model.stem.register_forward_pre_hook(lambda m, args: stem_in.append(args[0]) and None)
    frames = torch.rand(3, 2, *shape)  # [B, T, ...]: used as given, time first
    model(frames)
    assert torch.equal(stem_in[0], frames.transpose(0, 1))


def test_bad_sizes_and_options_are_user_errors():
    for size, match in [("big", "DEPTH-WIDTH"), ("1-20", "multiple of 8"), ("0-16", "depth")]:
        with pytest.raises(UsageError, match=match):
            build(size, (1, 8, 8))
    for options, match in [({"heads_count": 2}, "unknown sdt option"), ({"heads": 3}, "head count"),
                           ({"erode": 1}, "true/false"), ({"pools": 5}, "0..4"),
                           ({"pools": "2"}, "pools must be a whole number"),
                           ({"mlp_ratio": "4"}, "mlp_ratio must be a number")]:
        with pytest.raises(UsageError, match=match):
            build("1-16", (1, 8, 8), **options)
    with pytest.raises(UsageError, match="erode"):
        build("1-16", (1, 40), erode=True)


def test_the_family_is_an_entry_point_plugin():
    host = PluginHost()
    assert "sdt" in host.names("model")
    assert host.get("model", "sdt").plugin == "model-sdt"


# -- spike-driven: binary matmul inputs, membrane shortcut, SDSA -----------------------------


def test_every_weight_matrix_reads_spikes_and_the_stream_is_a_membrane():
    model = trained_tiny()
    inputs = {}
    binary_readers = [*model.st_matrix_names(), "stem.convs.1", "stem.convs.2", "stem.convs.3",
                      "stem.rpe_conv", "head", "blocks.0.attn.kv_sum"]
    for name in binary_readers:
        model.get_submodule(name).register_forward_pre_hook(keep_input(inputs, name))
    streams = []
    model.blocks[0].register_forward_hook(lambda m, args, out: streams.append(out) and None)
    model(digit_images(64))
    for name, x in inputs.items():
        assert ((x == 0) | (x == 1)).all(), name
        assert x.sum() > 0, f"{name} saw no spike"
    # the residual stream is real-valued: the shortcut adds to membranes, not to spikes
    assert not torch.equal(streams[0], streams[0].round())


def test_counting_sees_accumulates_only_in_the_blocks_and_the_sdsa_column_sum():
    model = trained_tiny()
    x = digit_images(64)
    counts = count_batches(model, [x], [s for _, s in model.neuron_slots()])
    rows = {(r.module, r.kind): r for r in counts.layers}
    assert counts.ac_int == 0 and not [r for r in counts.layers if r.kind == "ac_int"]
    assert [r.module for r in counts.layers if r.kind == "mac"] == ["stem.convs.0"]  # the image
    assert {m for m, k in rows if m.startswith("blocks.")} == {
        *model.st_matrix_names(), "blocks.0.attn.kv_sum"}
    # SDSA's cost: one accumulate per nonzero entry of k * v (the masks are no synaptic ops)
    attn = model.blocks[0].attn
    kv = {}
    attn.kv_sum.register_forward_pre_hook(keep_input(kv, "x"))
    with torch.no_grad():
        model(x)
    row = rows[("blocks.0.attn.kv_sum", "ac")]
    assert row.effective_ops * 64 == int(kv["x"].count_nonzero())
    assert row.input_rate == pytest.approx(float(kv["x"].mean()))
    assert row.dense_ops * 64 == kv["x"].numel()


def test_sdsa_is_q_masked_by_the_fired_column_sums_of_k_and_v():
    model = trained_tiny()
    attn = model.blocks[0].attn
    seen = {}
    for name in ("q", "k", "v", "kv_neuron"):
        attn.get_submodule(name).register_forward_hook(keep_io(seen, name))
    attn.proj.linear.register_forward_pre_hook(keep_input(seen, "proj"))
    with torch.no_grad():
        model(digit_images(32))
    q, k, v = (seen[n][1] for n in ("q", "k", "v"))
    column_sum = (k * v).sum(dim=-2, keepdim=True)
    assert torch.equal(seen["kv_neuron"][0], column_sum)
    assert torch.equal(seen["proj"], q * seen["kv_neuron"][1])


def _original_sdsa_masks(q, k, v, kv_neuron, heads, grid):
    """The code's dvs_mode path (module/ms_conv.py) on its own tensor layouts."""
    pool = nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 1, 1), padding=(0, 1, 1))
    T, B, N, C = q.shape

    def maps(t):  # tokens -> [T, B, C, H, W]
        return t.transpose(-1, -2).reshape(T, B, C, *grid)

    def split(t):  # [T, B, C, H, W] -> [T, B, heads, N, C/heads]
        return t.flatten(3).transpose(-1, -2).reshape(T, B, N, heads, C // heads).permute(0, 1, 3, 2, 4)

    q, k, v = split(maps(q)), split(pool(maps(k))), split(pool(maps(v)))
    kv = pool(k.mul(v)).sum(dim=-2, keepdim=True)
    fired = kv_neuron(kv.transpose(2, 3).reshape(T, B, 1, C))  # our neuron is on [T, B, 1, C]
    fired = fired.reshape(T, B, 1, heads, C // heads).transpose(2, 3)
    x = pool(q.mul(fired))
    return x.transpose(3, 4).reshape(T, B, C, N).transpose(-1, -2)


def test_erode_matches_the_original_dvs_mode():
    torch.manual_seed(0)
    model = build("1-32", (2, 16, 16), T=2, pools=1, heads=4, erode=True).train()
    attn = model.blocks[0].attn
    seen = {}
    for name in ("q", "k", "v"):
        attn.get_submodule(name).register_forward_hook(keep_io(seen, name))
    attn.proj.linear.register_forward_pre_hook(keep_input(seen, "proj"))
    with torch.no_grad():
        model(torch.rand(3, 2, 2, 16, 16) * 3)
    q, k, v = (seen[n][1] for n in ("q", "k", "v"))
    assert q.sum() > 0 and k.sum() > 0 and v.sum() > 0
    expected = _original_sdsa_masks(q, k, v, attn.kv_neuron, 4, (8, 8))
    assert expected.sum() > 0
    assert torch.equal(seen["proj"], expected)


# -- pruners and backends unchanged ----------------------------------------------------------


def test_every_pruner_works_unchanged():
    x = digit_images(16)
    model = trained_tiny()
    L1P().prune(model, L1PParams(sparsity=0.5))
    L1P().finalize(model)
    weights = torch.cat([m.weight.flatten() for m in model.st_matrices().values()])
    assert int((weights == 0).sum()) == round(0.5 * weights.numel())
    assert model(x).shape == (16, 10)

    model = trained_tiny()
    dense = model(x)
    DSP().prune(model, DSPParams(keep=1.0, method="svd"))
    assert all(isinstance(m, LowRankLinear) for m in model.st_matrices().values())
    full = trained_tiny()
    for name, m in full.st_matrices().items():  # full rank reproduces the model
        full.replace_module(name, LowRankLinear.from_linear(m, min(m.in_features, m.out_features)))
    assert torch.allclose(full(x), dense, atol=1e-4)

    model = trained_tiny()
    DSP().prune(model, DSPParams(keep=0.5, method="channels"))
    assert model.blocks[0].mlp.fc1.linear.out_features == 32
    assert model.blocks[0].mlp.fc2.neuron.site.channels == 32
    assert model.blocks[0].mlp.fc2.linear.in_features == 32
    assert model(x).shape == (16, 10)


def test_backends_run_it_unchanged():
    x = digit_images(16)
    reference = trained_tiny()
    host = PluginHost()
    ran = 0
    for name in host.names("backend"):
        backend = host.backend(name)
        if backend.library_version() is None:
            continue
        model = build("1-16", (1, 8, 8), T=2, pools=2,
                      neuron=lambda site, b=backend: make_neuron(site, b))
        model.load_state_dict(reference.state_dict())
        with torch.no_grad():
            assert torch.allclose(model.eval()(x), reference(x), atol=1e-5), name
        ran += 1
    assert ran == 4  # torch, spikingjelly, snntorch, norse (installed in the test environment)


# -- the CPU protocol -----------------------------------------------------------------------


def _protocol(name):
    text = (resources.files("stxbench") / "protocols" / f"{name}.toml").read_text()
    return tomllib.loads(text)


def test_digits_sdt_sits_beside_digits():
    """Same data, split, T, recipe and pruner defaults as ``digits``; only the model differs."""
    sdt, spikformer = _protocol("digits-sdt"), _protocol("digits")
    assert sdt["model"].pop("name") == "sdt-1-64" and spikformer["model"].pop("name") == "spikformer-1-64"
    for key in ("name", "description"):
        sdt.pop(key), spikformer.pop(key)
    assert sdt == spikformer


def test_a_tiny_sdt_run_through_the_cli(cli, tmp_path):
    from conftest import TINY_PROTOCOL

    path = tmp_path / "tiny-sdt.toml"
    path.write_text(TINY_PROTOCOL.format(dense_epochs=2).replace("spikformer-1-32", "sdt-1-32"))
    out = tmp_path / "run"
    result = cli("run", "--protocol", str(path), "--pruner", "dsp", "--set", "method=channels",
                 "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "-q")
    assert result.code == 0, result.stderr
    import json

    record = json.loads((out / "result.json").read_text())
    assert record["config"]["model"] == "sdt-1-32"
    assert record["counts"]["ac_int"] == 0 and record["counts"]["ac"] > 0
    bad = cli("run", "--protocol", str(path), "--set", "model.options.heads=3", "--out",
              str(tmp_path / "bad"), "--cache-dir", str(tmp_path / "cache"), "-q")
    assert bad.code == 2 and "head count" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "bad" / "result.json").exists()
