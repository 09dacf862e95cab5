"""The ``rate`` neuron family and its neuron ``ann``: the activation of a board's ANN twin.

The ANN twin (``stxbench run --baseline ann``, docs/baselines.md) is the protocol's model with
every spiking neuron replaced by this real-valued activation and one time step. It computes,
for each element of each time step::

    Y = clamp(X / theta, 0, 1)          # theta: the site's threshold

the firing rate an integrate-and-fire neuron with threshold ``theta`` reaches under a constant
input ``X`` (no leak, reset by subtraction), so the twin's activations span the spikes' range
[0, 1] and its "firing rate" is the mean rate its activations stand for. It is the clipped
ReLU of ANN-to-SNN conversion (Rueckauer et al., 2017), with the threshold as its scale.

It is not a spiking neuron (`NeuronFamily.spiking` is False): a run refuses it except as the
ANN twin, and the spike-value check skips it. Every backend runs it through this reference.
"""

from __future__ import annotations

import torch
from torch import nn

from stxbench.api import NeuronFamily, NeuronParams, NeuronSite, NeuronSpec, Surrogate, hookimpl


class RateReference(nn.Module):
    """``clamp(x / theta, 0, 1)`` elementwise: the rate of an IF neuron under constant input."""

    spiking = False  # real-valued: the neuron slot's spike-value check skips it

    def __init__(self, spec: NeuronSpec, site: NeuronSite, surrogate: Surrogate):
        super().__init__()
        self.site = site
        self.store_v_seq = False
        self.v_seq: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.store_v_seq:
            self.v_seq = x.detach()
        return (x / self.site.v_threshold).clamp(0.0, 1.0)


class RateFamily(NeuronFamily):
    name = "rate"
    summary = "real-valued rate clamp(x/theta, 0, 1), not spiking: the ANN twin's activation"
    Params = NeuronParams
    Reference = RateReference
    spiking = False


ANN = NeuronSpec(
    name="ann",
    summary="the ANN twin's activation clamp(x/theta, 0, 1), not spiking (stxbench run --baseline ann)",
    family="rate",
    params=NeuronParams(),
)


@hookimpl
def stxbench_add_neuron_families():
    return [RateFamily()]


@hookimpl
def stxbench_add_neurons():
    return [ANN]
