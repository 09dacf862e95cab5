"""Neuron families: the equations a neuron computes, contributed by plugins like any component.

A *family* (`NeuronFamily`) is one set of neuron equations: its name, the parameters a neuron of
the family may set (`NeuronFamily.Params`, a `NeuronParams` model) and a *reference
implementation* in plain torch (`NeuronFamily.Reference`), the executable definition of the
equations. A *neuron* (`stxbench.api.NeuronSpec`) names its family and carries an instance of the
family's ``Params``. A backend implements some families natively (`Backend.families`); the host
runs a neuron of any other family through the family's reference, on any backend.
``stxbench parity`` holds every native implementation to its family's reference.

Plugins import these names from `stxbench.api`.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Protocol

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from stxbench.neurons.site import NeuronSite, Surrogate


class NeuronParams(BaseModel):
    """Base for a neuron family's parameters: strict, immutable, unknown keys rejected. Field
    constraints are the valid values (``tau: float = Field(2.0, gt=1)``); a bad value raises
    pydantic's ``ValidationError`` (a ``ValueError``) where the neuron is defined."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NeuronView(Protocol):
    """What a family's code reads of a neuron, a `stxbench.neurons.contract.NeuronSpec` (which is
    built of a family's parameters, so this module cannot import it): its name, its family and
    its parameters, each of which also reads as an attribute (``spec.tau``)."""

    name: str
    family: str
    params: NeuronParams

    def __getattr__(self, key: str) -> Any: ...


class NeuronFamily:
    """A family of neuron equations, with parameters and a plain-torch reference implementation.

    ``Reference(spec, site, surrogate)`` builds one multi-step neuron layer for a neuron of this
    family and must meet the neuron contract (`stxbench.api.Backend`): ``[T, B, ...]`` in,
    spikes of the same shape and dtype out (only 0.0 and 1.0, fired with `spike` so that every
    surrogate works); a fresh state at every call; every learnable registered as an
    ``nn.Parameter`` named by meaning; with ``store_v_seq = True``, the charged membrane
    potential of the last call in ``v_seq``. It is written for clarity, not speed: it is what
    every native implementation is compared with, and what runs the family on a backend that
    does not implement it. A family without a reference (``Reference = None``) runs only on the
    backends that implement it natively, and parity cannot check them.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    #: The pydantic model of what a neuron of this family may set; its defaults are the family's.
    Params: ClassVar[type[NeuronParams]] = NeuronParams
    #: The reference implementation: an ``nn.Module`` class built as ``Reference(spec, site, surrogate)``.
    Reference: ClassVar[type[nn.Module] | None] = None
    #: Learnable parameter name -> its meaning, as parity reports it (unlisted names stand for
    #: themselves). Native implementations register their learnables under the same names.
    meanings: ClassVar[dict[str, str]] = {}
    #: False for a real-valued activation (the ANN twin's, `stxbench.run.baselines`): its outputs are
    #: not spikes, so the spike-value check skips it and a run refuses it except as that twin.
    spiking: ClassVar[bool] = True

    def parity_value(self, meaning: str, initial: torch.Tensor, site: NeuronSite,
                     generator: torch.Generator) -> torch.Tensor:
        """A value of the learnable ``meaning`` as training might leave it, shaped like
        ``initial``: parity sets it on the reference and the implementation under test alike
        (its "trained" setting), so per-channel broadcasting is exercised. By default the
        initial value scaled by a factor in [0.6, 1.4] per element, or N(0, 0.5^2) where the
        initial value is all zeros."""
        if initial.abs().max().item() == 0:
            return torch.randn(initial.shape, generator=generator) * 0.5
        return initial * (0.6 + 0.8 * torch.rand(initial.shape, generator=generator))

    def ties(self, module: nn.Module, spec: NeuronView, site: NeuronSite) -> int | None:
        """How many charged potentials of the reference's last stored call (``v_seq``) are
        exactly at the threshold, where ``>=`` and ``>`` disagree (parity's ``ties`` column);
        None when the family does not say."""
        return None


class _Spike(torch.autograd.Function):
    """Heaviside ``x >= 0`` forward; the named surrogate's derivative backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, name: str, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.name, ctx.alpha = name, alpha
        return (x >= 0).to(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        alpha = ctx.alpha
        if ctx.name == "atan":
            a = alpha / 2
            ax = math.pi * a * x
            g = a / (1 + ax * ax) * grad
        elif ctx.name == "sigmoid":
            s = (x * alpha).sigmoid()
            g = grad * (1.0 - s) * s * alpha
        else:  # superspike
            g = alpha * grad / torch.pow(torch.abs(x) + 1.0, 2)
        return g, None, None


def spike(x: torch.Tensor, surrogate: Surrogate) -> torch.Tensor:
    """``S = 1[x >= 0]`` with ``surrogate``'s gradient (`stxbench.api.Surrogate`): the fire
    step of every reference, called with ``x = H - theta``."""
    return _Spike.apply(x, surrogate.name, surrogate.alpha)
