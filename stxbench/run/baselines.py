"""Baselines: the two reference rows every board shows beside its spiking networks, each run
under the board's own protocol (data, split, augmentation, both training stages, epochs, seeds,
evaluation, cost model and counting convention), so a number on the board means something.

- ``linear``: the model ``linear`` (`stxbench_model_linear`): one Linear layer on the protocol's
  inputs, i.e. logistic regression trained by the protocol's recipe. How far above it a spiking
  network stands is its margin over a trivial model.
- ``ann``: the ANN twin: the protocol's model, same architecture and widths, with every spiking
  neuron replaced by the real-valued rate ``clamp(x / theta, 0, 1)`` (the neuron ``ann``,
  `stxbench_neuron_ann`) and one time step where the input is static (direct encoding: the
  same image at every step, so T steps of a network without state compute T copies of the same
  values; event frames keep the protocol's T). Its ops are real-valued, so they are priced as
  MACs, under the same cost models (fp32 and int8 in ``energies``). How far below it a spiking
  network stays is what its spikes cost in accuracy.

A baseline is always unpruned (pruner ``none``). Its record carries the board protocol's hash
(``protocol.sha256``) and ``config.baseline``; `baseline_protocol` derives the protocol it ran,
and everything that rebuilds a run from a record (re-runs, the checks of names) goes through it.
"""

from __future__ import annotations

from stxbench.run.errors import UsageError
from stxbench.run.protocol import Protocol

#: baseline name -> what its row is, as boards and ``stxbench list`` say it
BASELINES: dict[str, str] = {
    "linear": "linear classifier (logistic regression) on the protocol's inputs",
    "ann": "the protocol's network with clamp(x/theta, 0, 1) in place of spikes, T=1 on static inputs",
}
LINEAR_MODEL = "linear"
ANN_NEURON = "ann"
PRUNER = "none"


def check_baseline(name: str) -> str:
    if name not in BASELINES:
        raise UsageError(f"--baseline {name}: unknown baseline (valid: {', '.join(BASELINES)})")
    return name


def baseline_protocol(protocol: Protocol, baseline: str | None) -> Protocol:
    """The protocol a baseline runs: ``protocol`` with its model section replaced (see the
    module's docstring); ``protocol`` itself for ``None``."""
    if baseline is None:
        return protocol
    check_baseline(baseline)
    model = protocol.model
    T = model.T if protocol.data.encoding == "frames" else 1
    if baseline == "linear":
        section = model.model_copy(update={"name": LINEAR_MODEL, "T": T, "options": {}})
    else:
        section = model.model_copy(update={"base_neuron": ANN_NEURON, "T": T})
    return protocol.model_copy(update={"model": section})


def baseline_neuron(protocol: Protocol, baseline: str) -> str:
    """The neuron a baseline record names: the twin's activation, or (the linear model has no
    neuron) the protocol's base neuron."""
    return ANN_NEURON if baseline == "ann" else protocol.model.base_neuron
