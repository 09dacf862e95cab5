"""Backend ``torch``: the pure-PyTorch reference for the LIF family.

Every other backend is checked against this one by ``stxbench parity``. It follows
`stxbench.api.NeuronSpec` operation for operation (the same expression order as spikingjelly's
LIFNode, so the two agree bit for bit): a ``>=`` threshold, a hard reset whose spike is
detached from the graph, and a fresh state ``V = v_reset`` at every call.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from stxbench import lif
from stxbench.api import Backend, NeuronSite, NeuronSpec, Surrogate
from stxbench.hookspecs import hookimpl
from stxbench.lif import THRESHOLD_FLOOR  # noqa: F401  (re-exported: sLIF's floor)


class _Spike(torch.autograd.Function):
    """Heaviside ``x >= 0`` forward; the named surrogate's derivative backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, name: str, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.name, ctx.alpha = name, alpha
        return (x >= 0).to(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        alpha = ctx.alpha
        if ctx.name == "atan":
            a = alpha / 2
            ax = math.pi * a * x
            g = a / (1 + ax * ax) * grad
        elif ctx.name == "sigmoid":
            s = (x * alpha).sigmoid()
            g = grad * (1.0 - s) * s * alpha
        else:  # superspike
            g = alpha * grad / torch.pow(torch.abs(x) + 1.0, 2)
        return g, None, None


def spike(x: torch.Tensor, surrogate: Surrogate) -> torch.Tensor:
    return _Spike.apply(x, surrogate.name, surrogate.alpha)


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
        v_reset = spec.v_reset
        v = torch.full_like(x[0], v_reset)
        spikes, hs = [], []
        # unbind, not x[t]: the backward of T selects writes T zero-filled [T, ...] gradients
        # and adds them up; unbind's backward is one stack (1.1x eager, 1.3x compiled fwd+bwd)
        for x_t in x.unbind(0):
            h = lif.charge(v, x_t, v_reset, spec.tau, k)
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
    summary = "pure-PyTorch reference implementation (no SNN library)"

    def make_neuron(self, spec: NeuronSpec, site: NeuronSite, surrogate: Surrogate) -> nn.Module:
        self.check_neuron(spec, surrogate)
        from stxbench_backend_torch.fused import FusedLIFFamilyNeuron

        return FusedLIFFamilyNeuron(spec, site, surrogate)


@hookimpl
def stxbench_add_backends():
    return [TorchBackend()]
