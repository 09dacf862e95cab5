"""Backend ``norse``: neurons on norse's ``LIFBoxCell`` (a LIF without synaptic current), lifted
over time with ``norse.torch.Lift``.

With ``dt = 1`` norse's update ``V + dt * tau_mem_inv * (X + V_leak - V)`` is the spec's charge
(bit for bit when ``1/tau`` is a power of two, or ``tau_mem_inv = sigmoid(w)``; else 1 ulp off).
Adapted on norse's own primitives:

* norse fires on ``>``: the threshold handed to norse is the next float below theta, so that
  ``H > nextafter(theta, -inf)`` is exactly ``H >= theta``;
* norse's default reset keeps the spike in the graph: a ``reset_method`` that detaches it;
* norse's parameters are a NamedTuple, so tensors in it are not module parameters: the
  learnables are registered here (``w``, ``theta``) and the NamedTuple is rebuilt every call;
* norse is stateless: every call starts from norse's own initial state (``state=None``).

norse has SuperSpike (``'super'``, whose alpha it ignores: alpha must be 1) but no ATan and no
Sigmoid surrogate; those are refused, never swapped for another.
"""

from __future__ import annotations

from torch import nn

from stxbench.api import Backend, NeuronSite, NeuronSpec, Surrogate, hookimpl


class NorseBackend(Backend):
    name = "norse"
    summary = "norse 1: LIFBoxCell lifted over T, >= threshold, detached reset (SuperSpike only)"
    library = "norse"
    extra = "norse"
    families = ("lif",)
    surrogates = ("superspike",)
    fixed_alphas = {"superspike": 1.0}

    def make_neuron(self, spec: NeuronSpec, site: NeuronSite, surrogate: Surrogate) -> nn.Module:
        self.check_available()
        self.check_neuron(spec, surrogate)
        from stxbench_backend_norse.lifbox import NorseLIFFamily

        return NorseLIFFamily(spec, site, surrogate)


@hookimpl
def stxbench_add_backends():
    return [NorseBackend()]
