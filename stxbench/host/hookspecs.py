"""The whole extension surface of stxbench.

A plugin is a Python module (usually a small package) that implements some of the hooks below,
marked with ``@hookimpl`` (``from stxbench.api import hookimpl``), and is made known to the host
in one of two ways:

* an entry point in the ``stxbench`` group of its distribution::

      [project.entry-points.stxbench]
      my-neuron = "my_stxbench_neuron"

* ``stxbench -p my_module ...`` for a module on ``sys.path`` (handy while developing).

stxbench's own neurons, pruners, backends, datasets and models live in ``plugins/`` and register through
the same entry-point group, so they have no powers a third-party plugin lacks. Built-ins win
name clashes; the clash is reported by ``stxbench list``.

The ``stxbench_add_*`` hooks are *registration* hooks: each returns a list of component objects
(types in `stxbench.api`). The host calls every implementation on its own, so one plugin that
raises or returns the wrong type is listed as failed with its reason and the others keep
working; only runs that ask for the broken component fail.

The remaining hooks are *observers* of a run (progress reporting, experiment trackers). They
must not change the run: an observer that raises is reported once and then left out.

Import only ``stxbench.api`` (everything a plugin may use from stxbench) and ``torch`` at
module level; import your SNN library inside the methods that need it, so ``stxbench list``
stays fast and shows a missing library instead of failing to load your plugin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from stxbench.data.contract import Dataset
    from stxbench.models.base import ModelFamily
    from stxbench.neurons.families import NeuronFamily
    from stxbench.neurons.contract import Backend, NeuronSpec
    from stxbench.models.pruning import Pruner
    from stxbench.record.schema import Record
    from stxbench.run.config import RunConfig

hookspec = pluggy.HookspecMarker("stxbench")
hookimpl = pluggy.HookimplMarker("stxbench")


# ---------------------------------------------------------------------------------------------
# registration


@hookspec
def stxbench_add_neuron_families() -> list[NeuronFamily]:
    """Return the neuron families this plugin defines.

    A `stxbench.api.NeuronFamily` is one set of neuron equations: a lower-case ``name``
    (``lif``, ``alif``), a ``summary``, the parameters its neurons may set (``Params``, a
    `stxbench.api.NeuronParams` pydantic model whose defaults are the family's) and a
    reference implementation in plain torch (``Reference``, an ``nn.Module`` class built as
    ``Reference(spec, site, surrogate)``). The reference is the family's executable definition:
    it runs the family on every backend that does not implement it natively, and
    ``stxbench parity`` holds every native implementation to it. It must meet the neuron
    contract (`stxbench.api.Backend`): ``[T, B, ...]`` in, spikes of the same shape out (only
    0.0 and 1.0, fired with `stxbench.api.spike`), a fresh state at every call, learnables
    registered as ``nn.Parameter`` objects named by meaning (``meanings`` says what each name means),
    and ``v_seq`` (the charged potential of the last call) when ``store_v_seq`` is set.

    A family adds no neuron by itself: neurons of the family come from `stxbench_add_neurons`
    (the same plugin, or any other).
    """


@hookspec
def stxbench_add_neurons() -> list[NeuronSpec]:
    """Return the neurons this plugin defines.

    A `stxbench.api.NeuronSpec` says *what* a neuron computes: the neuron family whose
    equations it follows (``family``, default ``lif``) and that family's parameters
    (``params``, an instance of the family's ``Params``); backends decide *how* it runs. Names
    are lower-case and unique across all plugins (``lif``, ``plif``). A neuron must be a drop-in
    for the protocol's base neuron: at its initial parameters it fires exactly the base neuron's
    spikes, so swapping it into a trained model is fair (``stxbench parity`` checks it against
    ``lif``; docs/neuron-families.md, "The drop-in rule").
    """


@hookspec
def stxbench_add_backends() -> list[Backend]:
    """Return the backends this plugin provides.

    A `stxbench.api.Backend` builds multi-step neuron modules (``[T, B, ...]`` in, spikes
    out) for every `NeuronSpec` of the families it implements natively (``Backend.families``),
    computing what the family's reference computes, and refuses what it cannot express with a
    `UsageError`. Neurons of other families run on it through their family's reference.
    ``stxbench parity`` holds every native implementation to its family's reference.
    """


@hookspec
def stxbench_add_pruners() -> list[Pruner]:
    """Return the pruners this plugin provides.

    A `stxbench.api.Pruner` rewrites only the ST-block weight matrices a model exposes through
    ``model.st_matrices()`` (q, k, v, proj, fc1, fc2 of every block), once, between dense
    training and fine-tuning; a structured pruner may narrow an MLP hidden layer
    (``model.hidden_layers()``) and then its neuron slot (``NeuronSlot.keep_channels``). Its
    parameters are a pydantic model (``Pruner.Params``) whose field constraints are the valid
    ranges: users set them with ``--set key=value`` and the host rejects bad values before any
    work starts.
    """


@hookspec
def stxbench_add_datasets() -> list[Dataset]:
    """Return the datasets this plugin provides.

    A `stxbench.api.Dataset` loads real data from an installed package or from the user's
    folder (``--data-root``) and never touches the network. A missing or incomplete folder
    raises `UsageError` naming the expected layout and the first missing file. Protocol options
    (``[data.options]``, plus ``frames = T`` for event data) arrive as keyword arguments of
    ``load``; `stxbench.api` has helpers (folder checks, seeded crop/flip, normalisation).
    """


@hookspec
def stxbench_add_models() -> list[ModelFamily]:
    """Return the model families this plugin provides.

    A `stxbench.api.ModelFamily` named ``spikformer`` builds ``spikformer-4-384`` and the like.
    Its models subclass `stxbench.api.SpikingModel`, which tells pruners where the
    ST-block matrices are and tells metrics where the neurons are.
    """


# ---------------------------------------------------------------------------------------------
# observers


@hookspec
def stxbench_run_start(config: RunConfig) -> None:
    """A run is about to start, with its fully resolved configuration."""


@hookspec
def stxbench_epoch_end(stage: str, epoch: int, metrics: dict[str, Any]) -> None:
    """An epoch of ``stage`` (``dense`` or ``finetune``) ended; ``metrics`` holds at least
    ``loss`` and ``train_accuracy``."""


@hookspec
def stxbench_run_end(record: Record) -> None:
    """A run finished and its validated record has been written."""
