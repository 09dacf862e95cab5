"""Parameter accounting and firing rates, in one place.

* ``params_total``: parameters of the dense model (before pruning, with the base neuron).
* ``params_effective``: parameters the final model needs: every parameter, except that ST-block
  weights count only where they are nonzero (L1P masks are folded in first), and factorised
  or narrowed matrices count at their real size (DSP). Learnable neuron constants (PLIF, sLIF)
  are parameters too, so ``params_effective`` can exceed ``params_total`` for a dense sLIF run.
* ``sparsity``: ``1 - nonzero / dense`` over the ST-block weight matrices only.

Measuring a matrix that still carries a pruning mask or parametrization is refused (`RunFailed`):
its stored parameters (``weight_orig``) would be counted instead of the weights it uses.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import nn
from torch.nn.utils import parametrize, prune

from stxbench.run.errors import RunFailed
from stxbench.models.base import NeuronSlot, SpikingModel
from stxbench.record.schema import MatrixStat


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _weights(module: nn.Module) -> list[torch.Tensor]:
    """A matrix's weights: its parameters but biases and those of a neuron layer inside it (DSP's
    spiking bottleneck), which count as neuron parameters."""
    neuron = {id(p) for m in module.modules() if isinstance(m, NeuronSlot) for p in m.parameters()}
    return [p for name, p in module.named_parameters()
            if not name.rsplit(".", 1)[-1].startswith("bias") and id(p) not in neuron]


def dense_shapes(model: SpikingModel) -> dict[str, tuple[int, int]]:
    """(out_features, in_features) of each ST-block matrix; taken before pruning."""
    return {
        name: (m.out_features, m.in_features) for name, m in model.st_matrices().items()
    }


def matrix_stats(model: SpikingModel, shapes: dict[str, tuple[int, int]]) -> list[MatrixStat]:
    stats = []
    for name, module in model.st_matrices().items():
        if prune.is_pruned(module) or parametrize.is_parametrized(module):
            raise RunFailed(
                f"{name} still carries a pruning mask or parametrization when measured: "
                "the pruner's finalize() must fold it into the weights"
            )
        out_f, in_f = shapes[name]
        weights = _weights(module)
        params = sum(w.numel() for w in weights)
        nonzero = sum(int(torch.count_nonzero(w)) for w in weights)
        now = (module.out_features, module.in_features)
        width = None
        if now != (out_f, in_f):
            width = now[0] if now[0] != out_f else now[1]
        stats.append(
            MatrixStat(
                name=name,
                shape=(out_f, in_f),
                dense=out_f * in_f,
                params=params,
                nonzero=nonzero,
                sparsity=1.0 - nonzero / (out_f * in_f),
                rank=getattr(module, "rank", None),
                width=width,
            )
        )
    return stats


def params_effective(model: SpikingModel, stats: list[MatrixStat]) -> int:
    st_params = sum(s.params for s in stats)
    st_nonzero = sum(s.nonzero for s in stats)
    return count_parameters(model) - st_params + st_nonzero


def st_sparsity(stats: list[MatrixStat]) -> float:
    """1 - nonzero / dense over the ST-block matrices; 0.0 for a model that has none (the
    linear baseline: nothing it has can be pruned, and nothing was)."""
    if not stats:
        return 0.0
    return 1.0 - sum(s.nonzero for s in stats) / sum(s.dense for s in stats)


class FiringRates:
    """Counts spikes per neuron layer while active (a context manager over forward hooks)."""

    def __init__(self, model: SpikingModel):
        self.model = model
        self.spikes: dict[str, float] = defaultdict(float)
        self.elements: dict[str, int] = defaultdict(int)
        self._handles: list = []

    def __enter__(self) -> FiringRates:
        for name, slot in self.model.neuron_slots():
            self._handles.append(slot.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, name: str):
        def hook(module, inputs, output):
            # in float64: a bf16 (autocast) sum would round the count to 8 significant bits
            self.spikes[name] += float(output.detach().sum(dtype=torch.float64))
            self.elements[name] += output.numel()

        return hook

    def per_layer(self) -> dict[str, float]:
        return {name: self.spikes[name] / self.elements[name] for name in self.elements}

    def overall(self) -> float | None:
        """The mean over every neuron layer; None for a model without neuron layers."""
        total = sum(self.elements.values())
        if not any(True for _ in self.model.neuron_slots()):
            return None
        if not total:
            raise RunFailed("no neuron layer ran during evaluation: no firing rate to report")
        return sum(self.spikes.values()) / total
