"""The lif family's reference, and the torch backend's native lif, against hand-computed
dynamics (docs/methods.md's equations)."""

import math

import pytest
import torch

from stxbench.api import NeuronSite, NeuronSpec, Surrogate
from stxbench_backend_torch import LIFFamilyNeuron
from stxbench_neuron_lif import LIF, LIFReference
from stxbench_neuron_plif import PLIF

SITE = NeuronSite("n", channels=1, channel_dim=-1, v_threshold=1.0)


@pytest.fixture(params=[LIFReference, LIFFamilyNeuron], ids=["reference", "torch-native"])
def impl(request):
    return request.param


def run(impl, spec, x, site=SITE, surrogate=Surrogate()):
    neuron = impl(spec, site, surrogate)
    neuron.store_v_seq = True
    x = torch.tensor(x, dtype=torch.float32).reshape(-1, 1, 1)
    s = neuron(x)
    return s.flatten().tolist(), neuron.v_seq.flatten().tolist()


def test_lif_membrane_and_spikes_by_hand(impl):
    # H0 = 1.5/2 = .75; H1 = .75 + (.5-.75)/2 = .625; H2 = .625 + (2-.625)/2 = 1.3125 -> spike,
    # reset to 0; H3 = 1/2 = .5
    spikes, h = run(impl, LIF, [1.5, 0.5, 2.0, 1.0])
    assert spikes == [0.0, 0.0, 1.0, 0.0]
    assert h == [0.75, 0.625, 1.3125, 0.5]


def test_exact_tie_at_threshold_fires(impl):
    # H0 = 2/2 = 1.0 == theta: fires (>=), resets; H1 = 1.0 again; H2 = 0; H3 = .5
    spikes, h = run(impl, LIF, [2.0, 2.0, 0.0, 1.0])
    assert spikes == [1.0, 1.0, 0.0, 0.0]
    assert h == [1.0, 1.0, 0.0, 0.5]


def test_attention_threshold_half(impl):
    site = NeuronSite("attn", channels=1, channel_dim=-1, v_threshold=0.5)
    spikes, _ = run(impl, LIF, [1.0, 0.5], site)
    # H0 = .5 >= .5 fires; H1 = .25
    assert spikes == [1.0, 0.0]


def test_plif_starts_as_lif_and_its_decay_learns(impl):
    x = [1.5, 0.5, 2.0, 1.0]
    assert run(impl, PLIF, x) == run(impl, LIF, x)
    neuron = impl(PLIF, SITE, Surrogate())
    assert [n for n, _ in neuron.named_parameters()] == ["w"]
    assert neuron.w.shape == () and neuron.w.item() == 0.0  # w0 = -log(tau0 - 1) = 0
    with torch.no_grad():
        neuron.w.fill_(math.log(1 / 3))  # sigmoid(w) = 1/4, i.e. tau = 4
    neuron.store_v_seq = True
    inp = torch.tensor([2.0, 2.0]).reshape(2, 1, 1)
    neuron(inp).sum().backward()
    # H0 = 2/4 = .5; H1 = .5 + (2 - .5)/4 = .875
    assert neuron.v_seq.flatten().tolist() == pytest.approx([0.5, 0.875], abs=1e-7)
    assert neuron.w.grad is not None and neuron.w.grad.item() != 0.0


@pytest.mark.parametrize(
    "name, expected",
    [
        # d S / d x at x = 1 (H = .5, H - theta = -.5), times dH/dx = 1/2
        ("atan", 0.5 * 1.0 / (1 + (math.pi * 1.0 * -0.5) ** 2)),
        ("sigmoid", 0.5 * 4 * (1 / (1 + math.exp(2))) * (1 - 1 / (1 + math.exp(2)))),
        ("superspike", 0.5 * 1.0 / (1 + 0.5) ** 2),
    ],
)
def test_surrogate_gradients_by_hand(impl, name, expected):
    neuron = impl(LIF, SITE, Surrogate(name))
    x = torch.tensor([[[1.0]]], requires_grad=True)
    neuron(x).sum().backward()
    assert x.grad.item() == pytest.approx(expected, rel=1e-6)


def test_reset_is_detached_from_the_graph(impl):
    # x0 = 2 fires at the tie and resets V to 0. With a detached reset, V0 = H0 * (1 - S0)
    # has dV0/dH0 = 1 - S0 = 0, so the spike at t=1 gets no gradient from x0.
    neuron = impl(LIF, SITE, Surrogate())
    x = torch.tensor([[[2.0]], [[0.0]]], requires_grad=True)
    neuron(x)[1].sum().backward()
    assert x.grad[0].item() == 0.0
    assert x.grad[1].item() != 0.0


def test_state_is_reset_between_batches(impl):
    neuron = impl(LIF, NeuronSite("n", 8, -1), Surrogate())
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(4, 3, 8, generator=gen) * 3
    b = torch.rand(4, 3, 8, generator=gen) * 3
    first = neuron(a)
    neuron(b)
    assert torch.equal(neuron(a), first)


def test_per_channel_parameters_broadcast_over_feature_maps(impl):
    spec = NeuronSpec("pc", "per-channel test neuron", decay="channel", threshold="channel")
    site = NeuronSite("stem", channels=3, channel_dim=-3)
    neuron = impl(spec, site, Surrogate())
    assert neuron.w.shape == (3, 1, 1) and neuron.theta.shape == (3, 1, 1)
    with torch.no_grad():
        neuron.theta[1] = 0.25  # channel 1 fires at a quarter
    x = torch.full((1, 2, 3, 4, 4), 0.6)  # H = .3: only channel 1 reaches its threshold
    s = neuron(x)
    assert s[:, :, 1].eq(1).all() and s[:, :, [0, 2]].eq(0).all()


def test_spec_rejects_nonsense():
    with pytest.raises(ValueError):
        NeuronSpec("bad", "", decay="sometimes")
    with pytest.raises(ValueError):
        NeuronSpec("bad", "", tau=1.0)
