"""snntorch ``Leaky`` adapted to the stxbench neuron contract (imported lazily by the backend)."""

from __future__ import annotations

import snntorch
import torch
from snntorch import surrogate as snn_surrogate
from torch import nn

from stxbench.api import NeuronSite, NeuronSpec, Surrogate, lif


def _fire_on_tie(ctx, input_: torch.Tensor, alpha: float) -> torch.Tensor:
    """snntorch's surrogate forward with ``>=`` in place of ``>``."""
    ctx.save_for_backward(input_)
    ctx.alpha = ctx.slope = alpha  # ATan reads ctx.alpha, the sigmoids ctx.slope
    return (input_ >= 0).to(input_.dtype)


class ATanGE(snn_surrogate.ATan):
    forward = staticmethod(_fire_on_tie)


class FastSigmoidGE(snn_surrogate.FastSigmoid):
    forward = staticmethod(_fire_on_tie)


class SigmoidGE(snn_surrogate.Sigmoid):
    forward = staticmethod(_fire_on_tie)

    @staticmethod
    def backward(ctx, grad_output):
        # snntorch: slope*exp(-slope*u) / (exp(-slope*u) + 1)^2, inf/inf = NaN for slope*u < -88
        (input_,) = ctx.saved_tensors
        s = torch.sigmoid(ctx.slope * input_)
        return grad_output * ctx.slope * s * (1 - s), None


SURROGATES = {"atan": ATanGE, "sigmoid": SigmoidGE, "superspike": FastSigmoidGE}


class ExactLeaky(snntorch.Leaky):
    """``Leaky`` whose state function charges with the spec's expression (bit-exact with it).

    ``decay`` (``k``, or None for ``1/tau``) is set by the owner before each sequence."""

    tau: float
    decay: torch.Tensor | None = None

    def _base_state_function(self, input_: torch.Tensor) -> torch.Tensor:
        # self.mem is U * (1 - reset) here: snntorch's "zero" reset has just been applied.
        return lif.charge(self.mem, input_, 0.0, self.tau, self.decay)


class SnntorchLIFFamily(nn.Module):
    """LIF / PLIF / sLIF on one ``ExactLeaky``, fed one time step at a time."""

    def __init__(self, spec: NeuronSpec, site: NeuronSite, surrogate: Surrogate):
        super().__init__()
        self.spec, self.site, self.surrogate = spec, site, surrogate
        lif.add_learnables(self, spec, site)
        grad_fn = SURROGATES[surrogate.name]
        alpha = surrogate.alpha
        self.leaky = ExactLeaky(
            beta=1.0 - 1.0 / spec.params.tau, threshold=site.v_threshold,
            spike_grad=lambda u: grad_fn.apply(u, alpha), reset_mechanism="zero", reset_delay=True,
        )
        self.leaky.tau = spec.params.tau
        # Leaky's constants are buffers; ours are the learnables above, so keep its buffers out
        # of state dicts (a checkpoint then loads into any backend).
        for name, buffer in list(self.leaky.named_buffers(recurse=False)):
            self.leaky.register_buffer(name, buffer, persistent=False)
        # snntorch lists every neuron in a class-level registry for its init_hidden resets; we
        # pass the state explicitly, and the registry would keep swapped-out neurons alive.
        snntorch.SpikingNeuron.instances.remove(self.leaky)
        self.store_v_seq = False
        self.v_seq: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        leaky = self.leaky
        leaky.decay = lif.decay(self, self.spec)
        if self.spec.params.threshold != "fixed":
            leaky.threshold = lif.threshold(self, self.spec, self.site)
        mem = torch.zeros_like(x[0])  # fresh state for every batch, passed explicitly
        spikes, charged = [], []
        for x_t in x.unbind(0):  # one stack in the backward, not T zero-filled selects
            spk, mem = leaky(x_t, mem)
            spikes.append(spk)
            if self.store_v_seq:
                charged.append(mem.detach())
        self.v_seq = torch.stack(charged) if self.store_v_seq else None
        # Drop every reference into this call's graph, and leave the same idle state after
        # every call (torch.compile guards on it: a last-call-shaped mem made it recompile).
        leaky.mem = mem.new_zeros(0)  # as Leaky._init_mem leaves it
        leaky.decay = None
        if self.spec.params.threshold != "fixed":
            leaky.threshold = leaky.threshold.detach()
        return torch.stack(spikes)

    def extra_repr(self) -> str:
        return f"{self.spec.name}, surrogate={self.surrogate.name}({self.surrogate.alpha})"
