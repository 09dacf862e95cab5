"""The model family ``linear``: the linear baseline of every board (``stxbench run --baseline
linear``, docs/baselines.md).

One ``nn.Linear`` from the protocol's inputs, as its dataset gives them and flattened, to the
classes, trained with the protocol's softmax cross-entropy, optimizer and epochs: multinomial
logistic regression under the board's own protocol. Inputs with time steps (``[B, T, ...]``,
event frames) are averaged over time first. It has no neuron and no ST-block matrix: nothing
spikes and nothing is pruned.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from stxbench.api import ModelFamily, SpikingModel, UsageError, hookimpl


class LinearClassifier(SpikingModel):
    def __init__(self, input_shape: tuple[int, ...], num_classes: int, T: int):
        super().__init__()
        self.T, self.input_shape = T, tuple(input_shape)
        self.head = nn.Linear(math.prod(input_shape), num_classes)

    def st_matrix_names(self) -> list[str]:
        return []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == len(self.input_shape) + 2:  # [B, T, ...] (frames): the mean frame
            x = x.mean(dim=1)
        return self.head(x.flatten(1))


class LinearFamily(ModelFamily):
    name = "linear"
    summary = "one Linear layer on the flattened input (logistic regression): the linear baseline"

    def build(self, size, *, input_shape, num_classes, T, make_neuron, options):
        if size:
            raise UsageError(f"model 'linear-{size}': the linear model takes no size (its name is 'linear')")
        if options:
            raise UsageError(f"unknown linear option(s) {', '.join(sorted(options))}; the linear model takes none")
        return LinearClassifier(tuple(input_shape), num_classes, T)


@hookimpl
def stxbench_add_models():
    return [LinearFamily()]
