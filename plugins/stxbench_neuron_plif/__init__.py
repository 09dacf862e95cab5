"""Neuron ``plif``: parametric LIF (Fang et al., ICCV 2021).

As LIF, with ``1/tau = sigmoid(w)`` and one learnable scalar ``w`` per layer, initialised to
``w0 = -log(tau0 - 1)`` (tau0 = 2 gives w0 = 0, so PLIF starts exactly as LIF).
"""

from stxbench.api import LIFParams, NeuronSpec, hookimpl

PLIF = NeuronSpec(
    name="plif",
    summary="parametric LIF: one learnable decay 1/tau = sigmoid(w) per layer (Fang et al. 2021)",
    family="lif",
    params=LIFParams(decay="layer", threshold="fixed", tau=2.0),
)


@hookimpl
def stxbench_add_neurons():
    return [PLIF]
