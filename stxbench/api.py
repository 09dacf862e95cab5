"""Everything a plugin may import from stxbench, and the only stxbench module it imports.

    from stxbench.api import Pruner, PrunerParams, hookimpl

The hooks a plugin implements are documented in `stxbench.host.hookspecs`; this module holds what
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
* model sizes - `parse_size` reads a ``DEPTH-WIDTH`` size within the limits every model family
  holds (`MAX_DEPTH`, `MIN_WIDTH`, `MAX_WIDTH`; `MAX_MLP_RATIO` for MLP blocks).
* observers - `RunConfig` (``stxbench_run_start``) and `Record` (``stxbench_run_end``) are what
  the observer hooks pass: exported so that an observer can type what it receives, and read
  only (a `RunConfig` is frozen; a `Record` is the run's result, already written).
* compiled kernels - a plugin that compiles kernels (the torch backend's fused neurons) calls
  `kernel_cache_for_this_cpu` before it compiles, and catches `compile_errors()`: the core's
  ``--compile`` does the same through the same functions, so that a kernel compiled by an
  unpinned process is never loaded by a pinned one (`stxbench.neurons.kernel_cache`). They are
  public because any backend that compiles must follow that rule, not only the one that does
  today; written once in the core, they cannot drift apart from the core's own compiles.
* errors   - raise `UsageError` for a mistake the user can fix (one line, exit 2) and
  `RunFailed` for a run that cannot finish honestly (one line, exit 1).

A test (tests/test_plugin_imports.py) holds every plugin under ``plugins/`` and ``examples/`` to
importing nothing else from stxbench.
"""

from __future__ import annotations

from stxbench.neurons import lif
from stxbench.data.contract import (
    DataSplits,
    Dataset,
    check_options,
    data_folder,
    normalizer,
    random_crop_flip,
    require_files,
    scaled,
)
from stxbench.run.errors import RunFailed, UsageError, one_line
from stxbench.host.hookspecs import hookimpl
from stxbench.neurons.kernel_cache import compile_errors, kernel_cache_for_this_cpu
from stxbench.neurons.lif import LIFParams
from stxbench.models.base import HiddenLayer, ModelFamily, NeuronSlot, SpikingModel
from stxbench.models.sizes import MAX_DEPTH, MAX_MLP_RATIO, MAX_WIDTH, MIN_WIDTH, parse_size
from stxbench.record.schema import Record
from stxbench.run.config import RunConfig
from stxbench.neurons.families import NeuronFamily, NeuronParams, spike
from stxbench.neurons.contract import Backend, MakeNeuron, NeuronSpec
from stxbench.neurons.site import SURROGATE_DEFAULT_ALPHA, NeuronSite, Surrogate
from stxbench.models.pruning import Pruner, PrunerParams

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
    # model sizes
    "MAX_DEPTH",
    "MAX_MLP_RATIO",
    "MAX_WIDTH",
    "MIN_WIDTH",
    "parse_size",
    # what the observer hooks pass (read only)
    "Record",
    "RunConfig",
]
