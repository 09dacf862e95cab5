"""The ``lif`` neuron family (LIF, PLIF, sLIF and any other setting of `LIFParams`), its plain-torch
reference implementation, and the neuron ``lif``: Spikformer's leaky integrate-and-fire neuron.

The family's equations, on time-first input ``[T, B, ...]``::

    k      = 1/tau                 (decay "fixed": computed as a division by tau)
           | sigmoid(w)            (decay "layer": one learnable w; "channel": one per channel)
    theta  = the site's threshold  (threshold "fixed")
           | max(theta_c, 1e-3)    (threshold "channel": one learnable theta_c per channel)
    H[t]   = V[t-1] + (X[t] - (V[t-1] - V_reset)) * k          # V[-1] = V_reset
    S[t]   = 1[H[t] >= theta]
    V[t]   = H[t] * (1 - S[t]) + V_reset * S[t]                # hard reset, S detached

with ``w`` initialised to ``-log(tau - 1)`` (so ``sigmoid(w) == 1/tau``, exactly 0.5 for tau = 2)
and ``theta_c`` to the site's threshold. The neuron ``lif``: tau = 2, theta = 1 (0.5 in the
attention layer), V_reset = 0, nothing learnable.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from stxbench.api import LIFParams, NeuronFamily, NeuronSite, NeuronSpec, Surrogate, hookimpl, lif, spike


class LIFReference(nn.Module):
    """The lif family's equations, written out in plain torch: the definition every native
    implementation (the ``torch`` backend's, spikingjelly's, snntorch's, norse's) is held to."""

    def __init__(self, spec: NeuronSpec, site: NeuronSite, surrogate: Surrogate):
        super().__init__()
        self.params, self.site, self.surrogate = spec.params, site, surrogate
        if self.params.decay != "fixed":
            shape = () if self.params.decay == "layer" else site.param_shape()
            self.w = nn.Parameter(torch.full(shape, -math.log(self.params.tau - 1.0)))
        if self.params.threshold != "fixed":
            self.theta = nn.Parameter(torch.full(site.param_shape(), site.v_threshold))
        self.store_v_seq = False
        self.v_seq: torch.Tensor | None = None

    def threshold(self) -> float | torch.Tensor:
        if self.params.threshold == "fixed":
            return self.site.v_threshold
        return self.theta.clamp_min(lif.THRESHOLD_FLOOR)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.params
        k = None if p.decay == "fixed" else self.w.sigmoid()
        theta = self.threshold()
        v = torch.full_like(x[0], p.v_reset)
        spikes, charged = [], []
        for x_t in x.unbind(0):
            if k is None:
                h = v + (x_t - (v - p.v_reset)) / p.tau
            else:
                h = v + (x_t - (v - p.v_reset)) * k
            s = spike(h - theta, self.surrogate)
            s_detached = s.detach()
            v = h * (1.0 - s_detached) + p.v_reset * s_detached
            spikes.append(s)
            if self.store_v_seq:
                charged.append(h.detach())
        self.v_seq = torch.stack(charged) if self.store_v_seq else None
        return torch.stack(spikes)


class LIFFamily(NeuronFamily):
    name = "lif"
    summary = "leaky integrate-and-fire, hard reset; decay and threshold fixed or learnable (LIF, PLIF, sLIF)"
    Params = LIFParams
    Reference = LIFReference
    meanings = {"w": "decay_w", "theta": "threshold"}

    def parity_value(self, meaning, initial, site, generator):
        if meaning == "decay_w":
            return torch.randn(initial.shape, generator=generator) * 0.5
        return site.v_threshold * (0.6 + 0.8 * torch.rand(initial.shape, generator=generator))

    def ties(self, module, spec, site):
        if not isinstance(module, LIFReference) or module.v_seq is None:
            return None
        with torch.no_grad():
            return int((module.v_seq == module.threshold()).sum())


LIF = NeuronSpec(
    name="lif",
    summary="leaky integrate-and-fire, tau=2, fixed threshold (Spikformer's neuron)",
    family="lif",
    params=LIFParams(decay="fixed", threshold="fixed", tau=2.0),
)


@hookimpl
def stxbench_add_neuron_families():
    return [LIFFamily()]


@hookimpl
def stxbench_add_neurons():
    return [LIF]
