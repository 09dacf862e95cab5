"""sLIF: equal to LIF at initialisation (plug-and-play), and learnable per channel."""

from __future__ import annotations

import torch

from stxbench.host.plugin_host import PluginHost
from stxbench_backend_torch import LIFFamilyNeuron
from stxbench_neuron_slif import SLIF
from tiny_models import digits, factory, finetune, logits_on_test_split, tiny_model, trained_tiny_model


def slif_neurons(model) -> dict[str, LIFFamilyNeuron]:
    return {name: slot.impl for name, slot in model.neuron_slots()}


def test_slif_is_registered_with_channel_decay_and_threshold():
    spec = PluginHost().neuron("slif")
    assert (spec.decay, spec.threshold, spec.tau, spec.v_reset) == ("channel", "channel", 2.0, 0.0)


def test_slif_initial_constants_per_site():
    model = tiny_model(SLIF)
    for name, neuron in slif_neurons(model).items():
        channels = model.get_submodule(name).site.channels
        assert neuron.w.shape[0] == channels and neuron.theta.shape[0] == channels
        assert torch.all(neuron.w.sigmoid() == 0.5)  # k = 1/tau exactly
        expected = 0.5 if name.endswith("attn_neuron") else 1.0
        assert torch.all(neuron.theta == expected), name


def test_swapping_slif_into_trained_model_changes_no_prediction():
    model = trained_tiny_model()
    before = logits_on_test_split(model)
    predictions = before.argmax(1)
    labels = digits().test.tensors[1]
    # the test is only meaningful on a model that learned something
    assert len(predictions.unique()) >= 8 and (predictions == labels).float().mean() > 0.4
    model.swap_neurons(factory(SLIF))
    after = logits_on_test_split(model)
    assert torch.equal(before, after)  # bit for bit, not just the argmax


def test_slif_thresholds_and_decays_get_gradients_and_move_in_finetuning():
    model = trained_tiny_model()
    model.swap_neurons(factory(SLIF))
    model.train()
    x, y = (t[:64] for t in digits().train.tensors)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    for name, neuron in slif_neurons(model).items():
        assert neuron.w.grad is not None and neuron.w.grad.abs().sum() > 0, name
        assert neuron.theta.grad is not None and neuron.theta.grad.abs().sum() > 0, name
    model.zero_grad(set_to_none=True)
    start = {name: (n.w.detach().clone(), n.theta.detach().clone()) for name, n in slif_neurons(model).items()}
    finetune(model)  # no weight decay: only gradients can move w and theta
    for name, neuron in slif_neurons(model).items():
        w0, theta0 = start[name]
        assert not torch.equal(neuron.w, w0), name
        assert not torch.equal(neuron.theta, theta0), name
        # per channel: the channels learn different constants
        assert len(neuron.w.detach().unique()) > 1, name
