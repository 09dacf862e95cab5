"""Pruner ``dsp``: structured pruning of the ST-block weight matrices to low rank or fewer units.

This is stxbench's interpretation of the "structured DSP" of Sun et al. (arXiv 2508.01992),
whose full text and code are not public. ``keep`` in (0, 1] is the kept fraction; counts are
``floor(keep * ...)`` taken on the decimal value given (``keep=0.29`` means 29/100), at least 1.

``method="svd"`` (default): each ST matrix W (m x n, out x in; q, k, v, proj, fc1, fc2 of every
block) becomes a `LowRankLinear` ``x -> B (A x) + bias`` with ``r = floor(keep * m*n / (m+n))``
(so the factors hold about ``keep`` of W's m*n weights: ``keep = 1`` is the break-even rank, not
full rank). From the SVD ``W = U S V^T``: ``A = sqrt(S_r) V_r^T`` (r x n, no bias) and
``B = U_r sqrt(S_r)`` (m x r, W's bias), i.e. the best rank-r approximation with the singular
values split as square roots into both factors. Both factors are fine-tuned. With
``bottleneck="none"`` (default) the r-dim bottleneck carries real values, so B's work is
multiply-accumulates, not spike accumulates; the pair can still run as the one matrix ``B A``
(``merged_weight``), which energy estimates may price instead where that is cheaper
(`stxbench.measure.energy`, ``merge-if-cheaper``). With ``bottleneck="spike"`` a neuron layer of the
run's kind (a `NeuronSlot` built with the model's own neuron factory, so neuron swaps, firing
rates and op counts see it) sits between the factors: ``x -> B S(A x) + bias``, and B is fed
spikes (accumulates). It is not the same function as W, so fine-tuning has more to recover.

``method="channels"``: in every MLP (``model.hidden_layers()``) the hidden units with the largest
L1 norm of their fc1 row are kept (``floor(keep * hidden)`` of them; ties broken by index) and
the rest are removed whole: their fc1 rows and biases, their fc1 BatchNorm entries (affine
parameters and running statistics) and their fc2 columns, and the fc1 neuron layer is narrowed
to match (`NeuronSlot.keep_channels`). The matrices shrink physically and fc2 is still fed by
binary spikes. Attention matrices are left dense.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Literal

import torch
from pydantic import Field, model_serializer, model_validator
from torch import nn

from stxbench.api import HiddenLayer, MakeNeuron, NeuronSite, NeuronSlot, Pruner, PrunerParams, SpikingModel, UsageError, hookimpl


class DSPParams(PrunerParams):
    keep: float = Field(0.5, gt=0, le=1, description="kept fraction of weights (svd) or hidden units (channels)")
    method: Literal["svd", "channels"] = Field("svd", description="low-rank factors, or removal of MLP hidden units")
    bottleneck: Literal["none", "spike"] = Field(
        "none", description="svd: 'spike' puts a neuron of the run's kind between the factors, so the "
        "second factor sees spikes")

    @model_validator(mode="after")
    def _svd_only(self) -> DSPParams:
        if self.bottleneck != "none" and self.method != "svd":
            raise ValueError(f"bottleneck={self.bottleneck} needs method=svd (there are no factors to "
                             "put a neuron between with method=channels)")
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        # bottleneck came after the first records: left at its default it is left out, so that
        # the parameters of every earlier run (and entry names, labels, caches) stay as they were
        data = handler(self)
        if data.get("bottleneck") == "none":
            data.pop("bottleneck")
        return data


def kept_count(keep: float, total: Fraction | int) -> int:
    """``floor(keep * total)``, at least 1, with ``keep`` read as the decimal it was written as."""
    return max(1, math.floor(Fraction(repr(keep)) * total))


def svd_rank(keep: float, m: int, n: int) -> int:
    """``r = floor(keep * m*n / (m+n))``: rank-r factors cost r*(m+n) ~ keep * m*n weights."""
    return min(kept_count(keep, Fraction(m * n, m + n)), m, n)


class LowRankLinear(nn.Module):
    """``y = second(first(x))``: an ``out_features x in_features`` matrix held as rank-``rank``
    factors (``first``: in -> rank, no bias; ``second``: rank -> out, with the bias), or, with a
    ``neuron`` slot, ``y = second(neuron(first(x)))`` (time-first input ``[T, B, ..., in]``)."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True,
                 neuron: NeuronSlot | None = None):
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.first = nn.Linear(in_features, rank, bias=False)
        self.neuron = neuron
        self.second = nn.Linear(rank, out_features, bias=bias)

    @classmethod
    @torch.no_grad()
    def from_linear(cls, linear: nn.Linear, rank: int, neuron: NeuronSlot | None = None) -> LowRankLinear:
        """The truncated SVD of ``linear`` (computed in float64), singular values split as
        square roots into both factors. ``rank = min(m, n)`` without a neuron reproduces
        ``linear``."""
        w = linear.weight
        u, s, vh = torch.linalg.svd(w.detach().double(), full_matrices=False)
        root = s[:rank].sqrt()
        out = cls(linear.in_features, linear.out_features, rank, bias=linear.bias is not None, neuron=neuron)
        out.to(device=w.device, dtype=w.dtype)
        out.first.weight.copy_(root[:, None] * vh[:rank])
        out.second.weight.copy_(u[:, :rank] * root)
        if linear.bias is not None:
            out.second.bias.copy_(linear.bias)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.first(x)
        return self.second(h if self.neuron is None else self.neuron(h))

    @torch.no_grad()
    def merged_weight(self) -> torch.Tensor | None:
        """The one ``out x in`` matrix the factors multiply to (``second.weight @ first.weight``),
        or None when a neuron sits between them (then there is no such matrix)."""
        if self.neuron is not None:
            return None
        return self.second.weight @ self.first.weight

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"


def bottleneck_neuron(model: SpikingModel, path: str, rank: int) -> NeuronSlot:
    """A neuron layer of the model's current kind, built with the factory of its other slots,
    over the ``rank`` bottleneck channels (last dim) of the factorised matrix at ``path``."""
    factory: MakeNeuron | None = next((slot.make_neuron for _, slot in model.neuron_slots()), None)
    if factory is None:
        raise UsageError(f"pruner dsp bottleneck=spike: model {type(model).__name__} has no neuron "
                         "layer whose kind the bottleneck could take")
    return NeuronSlot(NeuronSite(f"{path}.neuron", rank, -1), factory)


def _linear_like(linear: nn.Linear, in_features: int, out_features: int) -> nn.Linear:
    w = linear.weight
    return nn.Linear(in_features, out_features, bias=linear.bias is not None, device=w.device, dtype=w.dtype)


@torch.no_grad()
def keep_hidden_units(model: SpikingModel, layer: HiddenLayer, index: torch.Tensor) -> None:
    """Keep only hidden units ``index`` (ascending) of one MLP: fc1 rows and bias, fc1 BN
    entries, the fc1 neuron's channels, fc2 columns."""
    fc1, bn, fc2 = (model.get_submodule(p) for p in (layer.fc1, layer.bn, layer.fc2))
    k = len(index)
    new_fc1 = _linear_like(fc1, fc1.in_features, k)
    new_fc1.weight.copy_(fc1.weight[index])
    if fc1.bias is not None:
        new_fc1.bias.copy_(fc1.bias[index])
    new_bn = type(bn)(k, eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                      track_running_stats=bn.track_running_stats).to(fc1.weight.device)
    new_bn.load_state_dict(
        {key: value if key == "num_batches_tracked" else value[index] for key, value in bn.state_dict().items()}
    )
    new_fc2 = _linear_like(fc2, k, fc2.out_features)
    new_fc2.weight.copy_(fc2.weight[:, index])
    if fc2.bias is not None:
        new_fc2.bias.copy_(fc2.bias)
    model.replace_module(layer.fc1, new_fc1)
    model.replace_module(layer.bn, new_bn)
    model.get_submodule(layer.neuron).keep_channels(index)
    model.replace_module(layer.fc2, new_fc2)


def units_by_fc1_l1(fc1: nn.Linear, count: int) -> torch.Tensor:
    """Indices (ascending) of the ``count`` hidden units whose fc1 rows have the largest L1
    norm; ties go to the lower index."""
    scores = fc1.weight.detach().abs().sum(dim=1)
    return torch.sort(scores, descending=True, stable=True).indices[:count].sort().values


class DSP(Pruner):
    name = "dsp"
    summary = ("structured pruning: rank-r SVD factors of the ST-block matrices, or removal of "
               "MLP hidden units (interpretation of arXiv 2508.01992's DSP)")
    Params = DSPParams

    def prune(self, model: SpikingModel, params: DSPParams) -> None:
        if params.method == "channels":
            layers = model.hidden_layers()
            if not layers:
                raise UsageError(f"pruner dsp method=channels: model {type(model).__name__} "
                                 "lists no MLP hidden layers; use method=svd")
            for layer in layers:
                fc1 = model.get_submodule(layer.fc1)
                index = units_by_fc1_l1(fc1, kept_count(params.keep, fc1.out_features))
                keep_hidden_units(model, layer, index)
            return
        for name, module in model.st_matrices().items():
            if not isinstance(module, nn.Linear):
                raise UsageError(f"pruner dsp method=svd factorises nn.Linear matrices; "
                                 f"{name} is a {type(module).__name__}")
            m, n = module.out_features, module.in_features
            rank = svd_rank(params.keep, m, n)
            neuron = bottleneck_neuron(model, name, rank) if params.bottleneck == "spike" else None
            model.replace_module(name, LowRankLinear.from_linear(module, rank, neuron))


@hookimpl
def stxbench_add_pruners():
    return [DSP()]
