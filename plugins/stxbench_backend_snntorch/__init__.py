"""Backend ``snntorch``: neurons on snntorch's ``Leaky``, looped over time.

snntorch's ``Leaky(reset_mechanism="zero")`` keeps the charged potential H as its ``mem`` and
applies the (detached) reset one step late, which is the contract's hard reset. Three things are
adapted, each on snntorch's own primitives:

* the threshold rule: snntorch fires on ``>``; its surrogate classes are subclassed with a ``>=``
  forward (their backward is snntorch's), so spikes agree at exact ties;
* the arithmetic: ``Leaky`` computes ``beta * U + X/tau`` (1-2 ulp from the spec); the state
  function is overridden to compute ``U + (X - U) / tau`` (or ``* k``), which is bit-exact;
* the sigmoid surrogate's backward, which in snntorch overflows to NaN when ``slope * u < -88``,
  is computed as ``slope * s * (1 - s)`` (the same derivative, finite everywhere).

Learnables are the contract's ``w`` and ``theta``, passed to ``Leaky`` each call; its own buffers
(beta, threshold, ...) are kept out of state dicts, so checkpoints move between backends.
snntorch resets to zero only, so ``v_reset`` must be 0; its ``fast_sigmoid`` equals SuperSpike
only with slope (alpha) 1.
"""

from __future__ import annotations

from torch import nn

from stxbench.api import Backend, NeuronSite, NeuronSpec, Surrogate, UsageError, hookimpl


class SnntorchBackend(Backend):
    name = "snntorch"
    summary = "snntorch 1: Leaky (reset to zero) looped over T, >= threshold, exact arithmetic"
    library = "snntorch"
    extra = "snntorch"
    families = ("lif",)
    fixed_alphas = {"superspike": 1.0}

    def check_neuron(self, spec: NeuronSpec, surrogate: Surrogate) -> None:
        super().check_neuron(spec, surrogate)
        if spec.params.v_reset != 0.0:
            raise UsageError(
                f"backend 'snntorch' resets to zero only; neuron '{spec.name}' has v_reset={spec.params.v_reset}"
            )

    def make_neuron(self, spec: NeuronSpec, site: NeuronSite, surrogate: Surrogate) -> nn.Module:
        self.check_available()
        self.check_neuron(spec, surrogate)
        from stxbench_backend_snntorch.leaky import SnntorchLIFFamily

        return SnntorchLIFFamily(spec, site, surrogate)


@hookimpl
def stxbench_add_backends():
    return [SnntorchBackend()]
