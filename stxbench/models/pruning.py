"""The pruner contract: `Pruner` and the base of its parameters, `PrunerParams`.

Plugins import these through `stxbench.api`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from stxbench.models.base import SpikingModel


class PrunerParams(BaseModel):
    """Base for a pruner's parameters: immutable, unknown keys rejected, numbers finite (true and
    false given for a number are refused when a run resolves its parameters)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Pruner(ABC):
    """Rewrites the ST-block weight matrices (``model.st_matrices()``) of a trained model.

    Pruning happens once, after dense training and before fine-tuning. Whatever the pruner
    leaves in the model is fine-tuned; `finalize` then makes the model's parameters honest
    (masks folded into weights) before anything is measured.

    A pruner may replace an ST matrix with any module of the same ``in_features`` and
    ``out_features`` (exposing ``rank`` when it is a factorisation, and ``merged_weight()``,
    the one ``out x in`` matrix it computes or None, when energy estimates may price it as that
    matrix), or narrow an MLP hidden layer (``model.hidden_layers()``): then it narrows the
    neuron layer too, with ``NeuronSlot.keep_channels(index)``, which rebuilds it with the
    factory that built it. A neuron layer it adds is a ``NeuronSlot`` built with the factory
    of the model's other slots, so that the neuron swap, firing rates and op counts see it.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    #: The pydantic model of this pruner's parameters; its defaults are the pruner's defaults.
    Params: ClassVar[type[PrunerParams]] = PrunerParams

    @abstractmethod
    def prune(self, model: SpikingModel, params: PrunerParams) -> None:
        """Rewrite ``model`` in place."""

    def finalize(self, model: SpikingModel) -> None:
        """Fold any reparametrisation into plain parameters. Called before measuring."""
