"""Neuron ``lif``: Spikformer's leaky integrate-and-fire neuron.

``H = V + (X - (V - V_reset)) / tau``, ``S = 1[H >= theta]``, hard reset to ``V_reset``
(detached); tau = 2, theta = 1 (0.5 in the attention layer), V_reset = 0. Nothing is learnable.
"""

from stxbench.api import NeuronSpec, hookimpl

LIF = NeuronSpec(
    name="lif",
    summary="leaky integrate-and-fire, tau=2, fixed threshold (Spikformer's neuron)",
    decay="fixed",
    threshold="fixed",
    tau=2.0,
)


@hookimpl
def stxbench_add_neurons():
    return [LIF]
