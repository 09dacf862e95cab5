"""LIF-family pieces every backend shares, so that all of them hold the same learnables under the
same names and charge with the same floating-point expression (`stxbench.neurons.NeuronSpec`).

A backend plugin builds its neuron on its own library; it uses these helpers only for what the
spec fixes exactly: the names, shapes and initial values of the learnables (``w`` for the decay,
``theta`` for the threshold, so state dicts are interchangeable across backends), the threshold
floor, and the charge expression ``H = V + (X - (V - V_reset)) / tau`` (or ``* k``) in the order
spikingjelly and the torch reference use, which makes bit-identical results possible.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from stxbench.neurons import NeuronSite, NeuronSpec

#: sLIF thresholds are kept positive by clamping at this floor (a no-op at initialisation).
THRESHOLD_FLOOR = 1e-3

#: What each learnable means, keyed by the parameter name every first-party backend uses.
MEANINGS = {"w": "decay_w", "theta": "threshold"}


def initial_w(spec: NeuronSpec) -> float:
    """``w0 = -log(tau - 1)``, so that ``sigmoid(w0) == 1/tau`` (exactly 0.5 for tau = 2)."""
    return -math.log(spec.tau - 1.0)


def add_learnables(module: nn.Module, spec: NeuronSpec, site: NeuronSite) -> None:
    """Register the spec's learnables on ``module`` as ``w`` (decay) and ``theta`` (threshold)."""
    if spec.decay != "fixed":
        shape = () if spec.decay == "layer" else site.param_shape()
        module.w = nn.Parameter(torch.full(shape, initial_w(spec)))
    if spec.threshold != "fixed":
        module.theta = nn.Parameter(torch.full(site.param_shape(), site.v_threshold))


def decay(module: nn.Module, spec: NeuronSpec) -> torch.Tensor | None:
    """``k = sigmoid(w)``, or None for a fixed decay (which divides by ``spec.tau``)."""
    return None if spec.decay == "fixed" else module.w.sigmoid()


def threshold(module: nn.Module, spec: NeuronSpec, site: NeuronSite) -> float | torch.Tensor:
    """The site's threshold, or the learnable one clamped at `THRESHOLD_FLOOR`."""
    if spec.threshold == "fixed":
        return site.v_threshold
    return module.theta.clamp_min(THRESHOLD_FLOOR)


def charge(
    v: torch.Tensor, x: torch.Tensor, v_reset: float, tau: float, k: torch.Tensor | None
) -> torch.Tensor:
    """``H = V + (X - (V - V_reset)) / tau`` for a fixed decay, ``... * k`` for a learnable one."""
    if k is None:
        return v + (x - (v - v_reset)) / tau
    return v + (x - (v - v_reset)) * k
