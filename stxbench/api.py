"""Everything a plugin may import from stxbench, and the only stxbench module it imports.

    from stxbench.api import Pruner, PrunerParams, hookimpl

The hooks a plugin implements are documented in `stxbench.hookspecs`; this module holds what
they take and return, re-exported from the modules that define them (which never import this
one back):

* neurons  - `NeuronFamily` (a family of neuron equations: its `NeuronParams` and a reference
  implementation in plain torch), `NeuronSpec` (*what* a neuron computes: a family and that
  family's parameters; `LIFParams` for the lif family), `NeuronSite` (where a neuron layer sits
  in a model), `Surrogate` and `spike` (the spike function with its surrogate gradient), and
  `Backend` (*how* neurons run: builds ``[T, B, ...]`` neuron modules on some SNN library for
  the families it implements natively; the host runs other families through their reference);
  `lif` holds the helpers every LIF-family implementation shares (learnables, decay,
  threshold, charge).
* pruners  - `Pruner` rewrites the ST-block weight matrices of a trained model; its parameters
  subclass `PrunerParams`.
* datasets - `Dataset` yields `DataSplits` for training and evaluation, never downloading
  anything; `check_options`, `data_folder`, `require_files`, `random_crop_flip`,
  `normalizer` and `scaled` help write one.
* models   - `ModelFamily` builds a `SpikingModel` by name (``spikformer-4-384``) whose
  neurons sit in `NeuronSlot`\\ s built with a `MakeNeuron`; `HiddenLayer` names an MLP hidden
  layer that structured pruning may narrow.
* errors   - raise `UsageError` for a mistake the user can fix (one line, exit 2) and
  `RunFailed` for a run that cannot finish honestly (one line, exit 1).

A test (tests/test_plugin_imports.py) holds every plugin under ``plugins/`` and ``examples/`` to
importing nothing else from stxbench.
"""

from __future__ import annotations

from stxbench import lif
from stxbench.datasets import (
    DataSplits,
    Dataset,
    check_options,
    data_folder,
    normalizer,
    random_crop_flip,
    require_files,
    scaled,
)
from stxbench.errors import RunFailed, UsageError, one_line
from stxbench.hookspecs import hookimpl
from stxbench.kernel_cache import compile_errors, kernel_cache_for_this_cpu
from stxbench.lif import LIFParams
from stxbench.models.base import HiddenLayer, ModelFamily, NeuronSlot, SpikingModel
from stxbench.neuron_families import NeuronFamily, NeuronParams, spike
from stxbench.neurons import SURROGATE_DEFAULT_ALPHA, Backend, MakeNeuron, NeuronSite, NeuronSpec, Surrogate
from stxbench.pruners import Pruner, PrunerParams

__all__ = [
    # hooks
    "hookimpl",
    # compiled kernels (inductor's cache, apart per CPU capability)
    "compile_errors",
    "kernel_cache_for_this_cpu",
    # errors
    "RunFailed",
    "UsageError",
    "one_line",
    # neurons and backends
    "SURROGATE_DEFAULT_ALPHA",
    "Backend",
    "LIFParams",
    "MakeNeuron",
    "NeuronFamily",
    "NeuronParams",
    "NeuronSite",
    "NeuronSpec",
    "Surrogate",
    "lif",
    "spike",
    # pruners
    "Pruner",
    "PrunerParams",
    # datasets
    "DataSplits",
    "Dataset",
    "check_options",
    "data_folder",
    "normalizer",
    "random_crop_flip",
    "require_files",
    "scaled",
    # models
    "HiddenLayer",
    "ModelFamily",
    "NeuronSlot",
    "SpikingModel",
]
