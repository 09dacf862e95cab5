"""Backend ``torch``: the lif family in plain PyTorch, no SNN library.

Its LIF / PLIF / sLIF are the lif family's *native* implementation on PyTorch, the one a faster
kernel may replace: ``stxbench parity`` holds it to the family's reference
(``stxbench_neuron_lif.LIFReference``), which it equals bit for bit. It follows
`stxbench.api.NeuronSpec` operation for operation (the same expression order as spikingjelly's
LIFNode): a ``>=`` threshold, a hard reset whose spike is detached from the graph, and a fresh
state ``V = v_reset`` at every call. Neurons of any other family run on this backend through
their family's reference.
"""

from __future__ import annotations

import torch
from torch import nn

from stxbench.api import Backend, NeuronSite, NeuronSpec, Surrogate, hookimpl, lif, spike

__all__ = ["LIFFamilyNeuron", "TorchBackend", "spike"]


class LIFFamilyNeuron(nn.Module):
    """Multi-step LIF / PLIF / sLIF on ``[T, B, ...]``, as `NeuronSpec` defines them."""

    def __init__(self, spec: NeuronSpec, site: NeuronSite, surrogate: Surrogate):
        super().__init__()
        self.spec, self.site, self.surrogate = spec, site, surrogate
        lif.add_learnables(self, spec, site)
        self.store_v_seq = False
        self.v_seq: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec = self.spec
        k = lif.decay(self, spec)
        theta = lif.threshold(self, spec, self.site)
        v_reset, tau = spec.params.v_reset, spec.params.tau
        v = torch.full_like(x[0], v_reset)
        spikes, hs = [], []
        # unbind, not x[t]: the backward of T selects writes T zero-filled [T, ...] gradients
        # and adds them up; unbind's backward is one stack (1.1x eager, 1.3x compiled fwd+bwd)
        for x_t in x.unbind(0):
            h = lif.charge(v, x_t, v_reset, tau, k)
            s = spike(h - theta, self.surrogate)
            s_d = s.detach()
            v = h * (1.0 - s_d) + v_reset * s_d
            spikes.append(s)
            if self.store_v_seq:
                hs.append(h.detach())
        if self.store_v_seq:
            self.v_seq = torch.stack(hs)
        return torch.stack(spikes)

    def extra_repr(self) -> str:
        return f"{self.spec.name}, surrogate={self.surrogate.name}({self.surrogate.alpha})"


class TorchBackend(Backend):
    name = "torch"
    summary = "plain PyTorch (no SNN library): the lif family, native"
    families = ("lif",)

    def make_neuron(self, spec: NeuronSpec, site: NeuronSite, surrogate: Surrogate) -> nn.Module:
        self.check_neuron(spec, surrogate)
        from stxbench_backend_torch.fused import FusedLIFFamilyNeuron

        return FusedLIFFamilyNeuron(spec, site, surrogate)


@hookimpl
def stxbench_add_backends():
    return [TorchBackend()]
