"""An adaptive-threshold LIF neuron family (``alif``) and its neuron ``alif``: a third-party
stxbench plugin that imports nothing from stxbench but `stxbench.api`.

The adaptive threshold follows Bellec et al., "Long short-term memory and Learning-to-learn in
networks of spiking neurons" (NeurIPS 2018): each neuron's threshold is ``theta0 + beta * a``,
where the adaptation ``a`` decays with its own time constant and jumps with each spike. The
membrane is stxbench's LIF (charge as the lif family, detached hard reset), not Bellec's soft
reset. On time-first input ``[T, B, ...]``, with ``rho = exp(-1 / tau_adapt)``::

    H[t]     = V[t-1] + (X[t] - (V[t-1] - V_reset)) / tau      # charge, as LIF
    theta[t] = theta0 + beta_c * a[t-1]                         # adaptive threshold
    S[t]     = 1[H[t] >= theta[t]]
    V[t]     = H[t] * (1 - S[t]) + V_reset * S[t]               # hard reset, S detached
    a[t]     = rho * a[t-1] + (1 - rho) * S[t]                  # decays, jumps with each spike

starting from ``V[-1] = V_reset`` and ``a[-1] = 0`` at every call. ``theta0`` is the site's
threshold (1; 0.5 for Spikformer's attention neuron). The adaptation strength ``beta_c`` is
learnable, one per channel, initialised to ``beta`` and left free (training may turn it
negative). The spike keeps its surrogate gradient in the adaptation (as in Bellec et al., BPTT
runs through the threshold); only the reset is detached.

With ``beta = 0`` (the neuron ``alif``) ALIF computes exactly what LIF computes until
fine-tuning moves ``beta_c``, so it drops into a trained LIF model like sLIF does.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import nn

from stxbench.api import NeuronFamily, NeuronParams, NeuronSite, NeuronSpec, Surrogate, hookimpl, spike


class ALIFParams(NeuronParams):
    tau: float = Field(2.0, gt=1.0, description="membrane time constant")
    tau_adapt: float = Field(20.0, gt=0.0, description="time constant of the adaptation a")
    beta: float = Field(0.0, description="initial adaptation strength (learnable per channel)")
    v_reset: float = Field(0.0, description="reset and resting potential")


class ALIFReference(nn.Module):
    """The equations above in plain torch: how every backend runs the ``alif`` family."""

    def __init__(self, spec: NeuronSpec, site: NeuronSite, surrogate: Surrogate):
        super().__init__()
        self.params, self.site, self.surrogate = spec.params, site, surrogate
        # learnables are registered parameters, named by meaning; one per channel
        self.beta = nn.Parameter(torch.full(site.param_shape(), self.params.beta))
        self.store_v_seq = False  # when True, keep the charged potential H in v_seq
        self.v_seq: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.params
        rho = math.exp(-1.0 / p.tau_adapt)
        v = torch.full_like(x[0], p.v_reset)  # fresh state at every call
        a = torch.zeros_like(x[0])
        spikes, charged = [], []
        for x_t in x.unbind(0):
            h = v + (x_t - (v - p.v_reset)) / p.tau
            s = spike(h - (self.site.v_threshold + self.beta * a), self.surrogate)
            s_detached = s.detach()
            v = h * (1.0 - s_detached) + p.v_reset * s_detached
            a = rho * a + (1.0 - rho) * s
            spikes.append(s)
            if self.store_v_seq:
                charged.append(h.detach())
        self.v_seq = torch.stack(charged) if self.store_v_seq else None
        return torch.stack(spikes)


class ALIFFamily(NeuronFamily):
    name = "alif"
    summary = "adaptive-threshold LIF (Bellec et al. 2018): theta0 + beta*a, a decays and jumps per spike"
    Params = ALIFParams
    Reference = ALIFReference
    meanings = {"beta": "adaptation_strength"}


ALIF = NeuronSpec(
    name="alif",
    summary="ALIF, tau=2, tau_adapt=20, learnable per-channel adaptation from 0 (equals LIF at init)",
    family="alif",
    params=ALIFParams(),
)


@hookimpl
def stxbench_add_neuron_families():
    return [ALIFFamily()]


@hookimpl
def stxbench_add_neurons():
    return [ALIF]
