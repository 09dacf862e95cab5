"""Neuron ``slif``: this project's interpretation of the "synergistic LIF" of Sun et al.,
"Toward Efficient Spiking Transformers: Synapse Pruning Meets Synergistic Learning-Based
Compensation" (arXiv 2508.01992). Only the paper's abstract is public and it published no code,
so what follows is stxbench's reading of it, not the authors' neuron.

"Synergistic" is read as synaptic and intrinsic plasticity learned together: the weights and the
neuron's own constants are trained jointly by the same loss. Per neuron layer with C channels::

    k_c     = sigmoid(w_c)                                  # learnable decay per channel
    H[t]    = V[t-1] + (X[t] - (V[t-1] - V_reset)) * k_c
    S[t]    = 1[H[t] >= max(theta_c, 1e-3)]                 # learnable threshold per channel
    V[t]    = H[t] * (1 - S[t]) + V_reset * S[t]            # hard reset, S detached

with ``w_c = -log(tau - 1) = 0`` (tau = 2, so ``k_c = 0.5``) and ``theta_c`` = the site's
threshold (1.0; 0.5 for the attention neuron) at initialisation, V_reset = 0. The floor keeps
thresholds positive and is a no-op at initialisation. At initialisation sLIF therefore computes
exactly what LIF computes (``* 0.5`` equals ``/ 2`` bit for bit), so it drops into a trained
LIF model without changing a single prediction; only fine-tuning moves ``w_c`` and ``theta_c``.
It adds 2 parameters per channel of every neuron layer, which ``params_effective`` counts.
"""

from stxbench.api import LIFParams, NeuronSpec, hookimpl

SLIF = NeuronSpec(
    name="slif",
    summary="synergistic LIF (interpretation of arXiv 2508.01992): learnable "
    "per-channel decay and threshold; equals LIF at initialisation",
    family="lif",
    params=LIFParams(decay="channel", threshold="channel", tau=2.0),
)


@hookimpl
def stxbench_add_neurons():
    return [SLIF]
