"""The LIF family's parameters (`LIFParams`) and the pieces every native implementation of the
family shares, so that all of them hold the same learnables under the same names and charge with
the same floating-point expression as the family's reference (``plugins/stxbench_neuron_lif``).

A backend plugin builds its neuron on its own library; it uses these helpers only for what the
spec fixes exactly: the names, shapes and initial values of the learnables (``w`` for the decay,
``theta`` for the threshold, so state dicts are interchangeable across backends), the threshold
floor, and the charge expression ``H = V + (X - (V - V_reset)) / tau`` (or ``* k``) in the order
spikingjelly and the family's reference use, which makes bit-identical results possible.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from stxbench.neurons.families import NeuronParams, NeuronView
from stxbench.neurons.site import NeuronSite

#: The name of the family these parameters describe.
FAMILY = "lif"

#: sLIF thresholds are kept positive by clamping at this floor (a no-op at initialisation).
THRESHOLD_FLOOR = 1e-3


class LIFParams(NeuronParams):
    """What a neuron of the ``lif`` family sets (equations: `stxbench.api.NeuronSpec`)."""

    decay: Literal["fixed", "layer", "channel"] = Field(
        "fixed", description="k = 1/tau (fixed), or k = sigmoid(w) with one w per layer or per channel")
    threshold: Literal["fixed", "channel"] = Field(
        "fixed", description="the site's threshold, or a learnable theta per channel")
    tau: float = Field(2.0, gt=1.0, description="membrane time constant (initial, when learnable)")
    v_reset: float = Field(0.0, description="reset and resting potential")


#: What each learnable means, keyed by the parameter name every first-party backend uses.
MEANINGS = {"w": "decay_w", "theta": "threshold"}


def initial_w(spec: NeuronView) -> float:
    """``w0 = -log(tau - 1)``, so that ``sigmoid(w0) == 1/tau`` (exactly 0.5 for tau = 2)."""
    return -math.log(spec.params.tau - 1.0)


def add_learnables(module: nn.Module, spec: NeuronView, site: NeuronSite) -> None:
    """Register the spec's learnables on ``module`` as ``w`` (decay) and ``theta`` (threshold)."""
    params = spec.params
    if params.decay != "fixed":
        shape = () if params.decay == "layer" else site.param_shape()
        module.w = nn.Parameter(torch.full(shape, initial_w(spec)))
    if params.threshold != "fixed":
        module.theta = nn.Parameter(torch.full(site.param_shape(), site.v_threshold))


def decay(module: nn.Module, spec: NeuronView) -> torch.Tensor | None:
    """``k = sigmoid(w)``, or None for a fixed decay (which divides by ``spec.tau``)."""
    return None if spec.params.decay == "fixed" else module.w.sigmoid()


def threshold(module: nn.Module, spec: NeuronView, site: NeuronSite) -> float | torch.Tensor:
    """The site's threshold, or the learnable one clamped at `THRESHOLD_FLOOR`."""
    if spec.params.threshold == "fixed":
        return site.v_threshold
    return module.theta.clamp_min(THRESHOLD_FLOOR)


def charge(
    v: torch.Tensor, x: torch.Tensor, v_reset: float, tau: float, k: torch.Tensor | None
) -> torch.Tensor:
    """``H = V + (X - (V - V_reset)) / tau`` for a fixed decay, ``... * k`` for a learnable one."""
    if k is None:
        return v + (x - (v - v_reset)) / tau
    return v + (x - (v - v_reset)) * k
