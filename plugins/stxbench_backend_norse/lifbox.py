"""norse ``LIFBoxCell`` adapted to the stxbench neuron contract (imported lazily by the backend)."""

from __future__ import annotations

import warnings

import torch
from torch import nn

with warnings.catch_warnings():  # norse 1.1 warns about torch.jit deprecations on import
    warnings.simplefilter("ignore", DeprecationWarning)
    import norse.torch as norse
    from norse.torch.functional.lif_box import LIFBoxParameters

from stxbench.api import NeuronSite, NeuronSpec, Surrogate, lif


def just_below(theta: torch.Tensor) -> torch.Tensor:
    """The largest float below ``theta`` (per element), with ``theta``'s gradient."""
    return theta + (torch.nextafter(theta.detach(), torch.full_like(theta, -torch.inf)) - theta.detach())


class NorseLIFFamily(nn.Module):
    """LIF / PLIF / sLIF on one ``LIFBoxCell`` with ``dt = 1``."""

    def __init__(self, spec: NeuronSpec, site: NeuronSite, surrogate: Surrogate):
        super().__init__()
        self.spec, self.site, self.surrogate = spec, site, surrogate
        lif.add_learnables(self, spec, site)
        self.lifted = norse.Lift(norse.LIFBoxCell(self._parameters_now(), dt=1.0))
        self.store_v_seq = False
        self.v_seq: torch.Tensor | None = None
        self._charged: list[torch.Tensor] = []

    def _parameters_now(self, device: torch.device | None = None) -> LIFBoxParameters:
        spec = self.spec
        k = lif.decay(self, spec)
        if k is None:
            k = torch.tensor(1.0 / spec.params.tau, device=device)
        theta = torch.as_tensor(lif.threshold(self, spec, self.site), dtype=torch.float32, device=device)
        v_reset = torch.tensor(spec.params.v_reset, device=device)
        return LIFBoxParameters(
            tau_mem_inv=k, v_leak=v_reset, v_th=just_below(theta), v_reset=v_reset,
            method="super", alpha=self.surrogate.alpha, reset_method=self._detached_reset,
        )

    def _detached_reset(self, z, v, reset, th):
        # norse's reset_value with the spike detached; v here is the charged potential H.
        if self.store_v_seq:
            self._charged.append(v.detach())
        z = z.detach()
        return (1 - z) * v + z * reset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.lifted.lifted_module.p = self._parameters_now(x.device)
        self._charged = []
        spikes, _ = self.lifted(x)  # no state given: norse starts from V = v_leak = v_reset
        self.v_seq = torch.stack(self._charged) if self.store_v_seq else None
        self._charged = []
        return spikes

    def extra_repr(self) -> str:
        return f"{self.spec.name}, surrogate={self.surrogate.name}({self.surrogate.alpha})"
