"""Pruner ``l1p``: unstructured L1 (magnitude) pruning of the ST-block weight matrices.

This is stxbench's interpretation of the "unstructured L1P" of Sun et al. (arXiv 2508.01992),
whose full text and code are not public. What it computes:

* It masks the weights (not biases) of exactly ``model.st_matrices()`` (q, k, v, proj, fc1, fc2
  of every block); the stem, BN layers, neurons and head are untouched.
* ``scope="global"``: one ranking of ``|w|`` over all those matrices together, and the
  ``round(sparsity * N)`` smallest of the N weights are pruned, so layers lose different
  fractions. ``scope="layer"``: each matrix of n weights loses its own ``round(sparsity * n)``
  smallest. Either way the achieved sparsity is the request to within one weight per matrix.
  Ties in ``|w|`` are broken by position (a stable sort), so masks are deterministic.
* Masks are applied with ``torch.nn.utils.prune.custom_from_mask``: the forward pass uses
  ``weight_orig * weight_mask``, so a pruned weight stays exactly 0 through fine-tuning.
  `finalize` folds the masks in (``prune.remove``): the model is left with plain dense-shaped
  weights whose pruned entries are 0, so counts and state dicts are not doubled by
  ``weight_orig``/``weight_mask``; ``params_effective`` counts the nonzero weights.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch.nn.utils import prune

from stxbench.api import Pruner, PrunerParams, hookimpl


class L1PParams(PrunerParams):
    sparsity: float = Field(0.5, ge=0, lt=1, description="fraction of ST-block weights set to 0")
    scope: Literal["global", "layer"] = Field(
        "global", description="one |w| threshold over all ST matrices, or one per matrix"
    )


def lowest_magnitude_mask(magnitudes: torch.Tensor, count: int) -> torch.Tensor:
    """A 0/1 mask of ``magnitudes``' shape with 0 at its ``count`` smallest entries (ties
    broken by flat position)."""
    flat = magnitudes.flatten()
    mask = torch.ones_like(flat)
    mask[torch.sort(flat, stable=True).indices[:count]] = 0
    return mask.view_as(magnitudes)


def magnitude_masks(
    weights: dict[str, torch.Tensor], sparsity: float, scope: str
) -> dict[str, torch.Tensor]:
    """The L1P masks for ``weights`` (name -> weight), as described in the module docstring."""
    if scope == "layer":
        return {
            name: lowest_magnitude_mask(w.abs(), round(sparsity * w.numel()))
            for name, w in weights.items()
        }
    flat = torch.cat([w.abs().flatten() for w in weights.values()])
    masks = lowest_magnitude_mask(flat, round(sparsity * flat.numel()))
    pieces = masks.split([w.numel() for w in weights.values()])
    return {name: piece.view_as(w) for (name, w), piece in zip(weights.items(), pieces)}


class L1P(Pruner):
    name = "l1p"
    summary = ("unstructured |w| pruning of the ST-block matrices, global or per-layer "
               "(interpretation of arXiv 2508.01992's L1P)")
    Params = L1PParams

    @torch.no_grad()
    def prune(self, model, params: L1PParams) -> None:
        matrices = model.st_matrices()
        weights = {name: m.weight.detach() for name, m in matrices.items()}
        for name, mask in magnitude_masks(weights, params.sparsity, params.scope).items():
            prune.custom_from_mask(matrices[name], "weight", mask)

    def finalize(self, model) -> None:
        for module in model.st_matrices().values():
            if prune.is_pruned(module):
                prune.remove(module, "weight")


@hookimpl
def stxbench_add_pruners():
    return [L1P()]
