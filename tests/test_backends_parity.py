"""Every backend's native lif family against the family's reference: each neuron x backend x
surrogate it supports, on float32 random and on quantised inputs (frequent exact ties at the
threshold)."""

import pytest
import torch
from backends_util import ALL_BACKENDS, LIF, NEURONS, SLIF, make_backend

from stxbench.neurons import parity
from stxbench.api import NeuronSite, NeuronSpec, Surrogate
from stxbench_neuron_lif import LIFFamily, LIFReference

CASES = [
    pytest.param(backend.values[0], spec, surrogate, kind, id=f"{backend.id}-{spec.name}-{surrogate}-{kind}",
                 marks=backend.marks)
    for backend in ALL_BACKENDS
    for spec in NEURONS
    for surrogate in ("atan", "sigmoid", "superspike")
    if not (backend.id == "norse" and surrogate != "superspike")  # norse has SuperSpike only
    for kind in parity.INPUTS
]


@pytest.mark.parametrize("backend_name, spec, surrogate, kind", CASES)
def test_backend_matches_the_reference(backend_name, spec, surrogate, kind):
    row = parity.check(LIFFamily(), make_backend(backend_name), spec, Surrogate(surrogate), inputs=(kind,))
    assert row.problems == []
    assert row.spikes_compared == 2 * (4 * 4 * 6 * 16 + 4 * 2 * 3 * 5 * 5)  # two settings
    assert row.spikes_differing == 0
    # bit-identical: torch and spikingjelly always; norse since 1/tau = 1/2 and sigmoid(w)
    # multiply exactly as the reference does; snntorch with its state function made exact
    assert row.max_dv == 0.0
    assert row.grad_input <= parity.GRAD_TOLERANCE
    if spec.decay != "fixed" or spec.threshold != "fixed":
        assert row.grad_params is not None and row.grad_params <= parity.GRAD_TOLERANCE
    if kind == "quantised":
        assert row.ties > 20  # the case this input exists for: H exactly at threshold
    assert row.passed


@pytest.mark.parametrize("backend_name", ALL_BACKENDS)
def test_tau_three_stays_within_tolerance(backend_name):
    # 1/3 is not a power of two: norse multiplies by a rounded 1/tau, 1 ulp from dividing
    lif3 = NeuronSpec("lif3", "LIF with tau = 3", tau=3.0)
    row = parity.check(LIFFamily(), make_backend(backend_name), lif3, Surrogate("superspike"), inputs=("random",))
    assert row.passed, row
    assert row.max_dv <= 1e-6


@pytest.mark.parametrize("backend_name", ALL_BACKENDS)
def test_a_tie_at_exactly_the_threshold_fires(backend_name):
    backend = make_backend(backend_name)
    surrogate = Surrogate("superspike")  # the one surrogate every backend has

    def run(spec, site, x, set_theta=None):
        neuron = backend.make_neuron(spec, site, surrogate)
        if set_theta is not None:
            with torch.no_grad():
                neuron.theta.fill_(set_theta)
        neuron.store_v_seq = True
        spikes = neuron(torch.tensor(x).reshape(-1, 1, 1))
        return spikes.flatten().tolist(), neuron.v_seq.flatten().tolist()

    one = NeuronSite("n", channels=1, channel_dim=-1, v_threshold=1.0)
    # H0 = 2/2 = 1.0 == theta fires and resets; H1 = 1.0 fires again; H2 = 0; H3 = 0.5
    assert run(LIF, one, [2.0, 2.0, 0.0, 1.0]) == ([1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.5])
    attention = NeuronSite("attn", channels=1, channel_dim=-1, v_threshold=0.5)
    assert run(LIF, attention, [1.0, 0.5]) == ([1.0, 0.0], [0.5, 0.25])
    # sLIF with a learnt threshold of 0.75: H = 1.5/2 = 0.75 is a tie
    assert run(SLIF, one, [1.5, 0.0], set_theta=0.75) == ([1.0, 0.0], [0.75, 0.0])


@pytest.mark.parametrize("backend_name", ALL_BACKENDS)
@pytest.mark.parametrize("spec", NEURONS, ids=lambda s: s.name)
def test_learnables_are_registered_parameters_with_the_reference_names(backend_name, spec):
    site = NeuronSite("maps", channels=3, channel_dim=-3)
    ref = LIFReference(spec, site, Surrogate("superspike"))
    neuron = make_backend(backend_name).make_neuron(spec, site, Surrogate("superspike"))
    # same state-dict keys and values: a checkpoint moves between backends
    assert list(neuron.state_dict()) == list(ref.state_dict())
    for key, value in ref.state_dict().items():
        assert torch.equal(neuron.state_dict()[key], value)
    assert {n for n, p in neuron.named_parameters()} == {n for n, p in ref.named_parameters()}
    if spec.decay != "fixed":
        optimiser = torch.optim.SGD(neuron.parameters(), lr=1.0)
        neuron(torch.rand(3, 2, 3, 4, 4) * 4).sum().backward()
        optimiser.step()
        assert not torch.equal(neuron.w, ref.w)  # the optimiser reaches the library's decay
