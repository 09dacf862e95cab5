"""spikingjelly nodes that meet the stxbench neuron contract (imported lazily by the backend)."""

from __future__ import annotations

import logging

import torch
from spikingjelly.activation_based import neuron
from spikingjelly.activation_based import surrogate as sj_surrogate
from torch import nn

from stxbench.api import NeuronSite, NeuronSpec, Surrogate, lif

# spikingjelly's custom ops make torch look for triton kernels; without triton (any CPU machine)
# torch logs "Triton not available" at every first call: harmless, and noise in our output.
logging.getLogger("torch._library.triton").setLevel(logging.ERROR)

#: stxbench surrogate -> spikingjelly's class of the same formula (`stxbench.api.Surrogate`).
SURROGATES = {"atan": sj_surrogate.ATan, "sigmoid": sj_surrogate.Sigmoid, "superspike": sj_surrogate.SuperSpike}


def surrogate_function(surrogate: Surrogate) -> sj_surrogate.SurrogateFunctionBase:
    return SURROGATES[surrogate.name](alpha=surrogate.alpha)


def drop_state(node: neuron.BaseNode) -> None:
    """Put the membrane memory back to its reset value (a float) after a call: the next call
    starts afresh anyway, no tensor of this call's graph is kept alive, and ``torch.compile``
    sees the same entry state every call (else it recompiles when the last call's ``v``
    differs in shape or requires_grad)."""
    node._memories["v"] = node._memories_rv["v"]


class _FreshStateNode:
    """For spikingjelly's native nodes: reset the node's state before every call, and turn the
    post-reset potential spikingjelly stores in ``v_seq`` into the charged potential H the
    contract asks for (H[t] recomputed from V[t-1] with the same expression, so it is exact)."""

    spec: NeuronSpec

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        self.reset()
        spikes = super().forward(x_seq)
        if self.store_v_seq:
            with torch.no_grad():
                v_after = self.v_seq
                v_before = torch.cat([torch.full_like(v_after[:1], self.spec.params.v_reset), v_after[:-1]])
                self.v_seq = lif.charge(v_before, x_seq, self.spec.params.v_reset, self.spec.params.tau, self._decay())
        drop_state(self)
        return spikes


def node_options(spec: NeuronSpec, site: NeuronSite, surrogate: Surrogate) -> dict:
    """What every node here shares: the contract's threshold, hard reset (detached), surrogate,
    multi-step mode (spikingjelly's default 's' would treat [T, B, ...] as one step)."""
    return dict(
        v_threshold=float(site.v_threshold), v_reset=float(spec.params.v_reset),
        surrogate_function=surrogate_function(surrogate), detach_reset=True, step_mode="m",
    )


class StxLIFNode(_FreshStateNode, neuron.LIFNode):
    def __init__(self, spec: NeuronSpec, site: NeuronSite, surrogate: Surrogate):
        super().__init__(tau=float(spec.params.tau), decay_input=True, **node_options(spec, site, surrogate))
        self.spec = spec

    def _decay(self) -> None:
        return None


class StxParametricLIFNode(_FreshStateNode, neuron.ParametricLIFNode):
    """spikingjelly's PLIF already holds ``w`` (``1/tau = sigmoid(w)``, ``w0 = -log(tau0 - 1)``)."""

    def __init__(self, spec: NeuronSpec, site: NeuronSite, surrogate: Surrogate):
        super().__init__(init_tau=float(spec.params.tau), decay_input=True, **node_options(spec, site, surrogate))
        self.spec = spec

    def _decay(self) -> torch.Tensor:
        return self.w.sigmoid()


class StxLIFFamilyNode(neuron.SimpleBaseNode):
    """Any LIF-family neuron (sLIF: per-channel ``w`` and ``theta``) on spikingjelly's custom-node
    interface: its step loop, fire (surrogate) and detached hard reset; our charge and threshold."""

    def __init__(self, spec: NeuronSpec, site: NeuronSite, surrogate: Surrogate):
        super().__init__(**node_options(spec, site, surrogate))
        self.spec, self.site = spec, site
        lif.add_learnables(self, spec, site)
        self.store_v_seq = False
        self.v_seq: torch.Tensor | None = None

    def neuronal_charge(self, x: torch.Tensor) -> None:
        self.v = lif.charge(self.v, x, self.spec.params.v_reset, self.spec.params.tau, self._k)

    def neuronal_fire(self) -> torch.Tensor:
        if self.store_v_seq:
            self._charged.append(self.v.detach())
        return self.surrogate_function(self.v - self._theta)

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        self.reset()
        self.v = torch.full_like(x_seq[0], self.spec.params.v_reset)  # SimpleBaseNode starts at 0.0
        self._k = lif.decay(self, self.spec)
        self._theta = lif.threshold(self, self.spec, self.site)
        self._charged: list[torch.Tensor] = []
        spikes = super().forward(x_seq)
        self.v_seq = torch.stack(self._charged) if self.store_v_seq else None
        self._k = self._theta = self._charged = None  # drop graph references between calls
        drop_state(self)
        return spikes


def build(spec: NeuronSpec, site: NeuronSite, surrogate: Surrogate) -> nn.Module:
    if spec.params.threshold == "fixed" and spec.params.decay == "fixed":
        return StxLIFNode(spec, site, surrogate)
    if spec.params.threshold == "fixed" and spec.params.decay == "layer":
        return StxParametricLIFNode(spec, site, surrogate)
    return StxLIFFamilyNode(spec, site, surrogate)
