"""The neuron contract: what a neuron computes (`NeuronSpec`: a family and its parameters; the
families themselves are in `stxbench.neurons.families`) and how a library runs it (`Backend`);
where it sits in a model (`NeuronSite`) and its surrogate gradient (`Surrogate`) are in
`stxbench.neurons.site`.

Plugins import these through `stxbench.api`.
"""

from __future__ import annotations

import importlib.metadata
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from stxbench.run.errors import UsageError
from stxbench.neurons.lif import FAMILY as LIF_FAMILY
from stxbench.neurons.lif import LIFParams
from stxbench.neurons.families import NeuronParams
from stxbench.neurons.site import NeuronSite, Surrogate


@dataclass(frozen=True, init=False)
class NeuronSpec:
    """A neuron: the family whose equations it computes, and that family's parameters.

    ``family`` names a `NeuronFamily` (contributed by a plugin through
    ``stxbench_add_neuron_families``) and ``params`` is an instance of that family's ``Params``.
    The default family is ``lif``, whose parameters (`LIFParams`) may also be given as keywords:
    ``NeuronSpec("plif", "...", decay="layer")`` is ``NeuronSpec("plif", "...", family="lif",
    params=LIFParams(decay="layer"))``. A family's parameters read as the spec's attributes
    (``spec.tau`` is ``spec.params.tau``). Bad parameters raise ``ValueError`` here; a family no
    plugin provides is refused when the neuron is used (`UsageError`).

    The ``lif`` family (time-first input, ``>=`` threshold, detached hard reset to
    ``v_reset``)::

        H[t] = V[t-1] + (X[t] - (V[t-1] - v_reset)) * k      # k = 1/tau
        S[t] = 1[H[t] >= theta]
        V[t] = H[t] * (1 - S[t]) + v_reset * S[t]              # S detached here

    ``decay`` says how ``k`` is held: ``"fixed"`` (``k = 1/tau``, a constant, computed as a
    division by ``tau``), ``"layer"`` (``k = sigmoid(w)``, one learnable ``w`` per layer, as in
    PLIF) or ``"channel"`` (one learnable ``w_c`` per channel). ``threshold`` is ``"fixed"``
    (the site's threshold) or ``"channel"`` (a learnable ``theta_c`` per channel, initialised
    to the site's threshold and kept positive). ``w`` is initialised to ``-log(tau - 1)`` so that
    ``sigmoid(w) == 1/tau`` exactly for ``tau = 2``.
    """

    name: str
    summary: str
    family: str
    params: NeuronParams

    def __init__(self, name: str, summary: str, family: str = LIF_FAMILY,
                 params: NeuronParams | None = None, **lif_params: object) -> None:
        if family == LIF_FAMILY and params is None:
            params = LIFParams(**lif_params)
        elif lif_params:
            raise ValueError(
                f"NeuronSpec '{name}': keyword parameters ({', '.join(lif_params)}) are the lif "
                f"family's shorthand; give params= instead"
            )
        if not isinstance(params, NeuronParams):
            raise ValueError(
                f"NeuronSpec '{name}': params must be an instance of family '{family}''s Params "
                f"(a stxbench.api.NeuronParams), not {type(params).__name__}"
            )
        if family == LIF_FAMILY and not isinstance(params, LIFParams):
            raise ValueError(f"NeuronSpec '{name}': the lif family takes LIFParams, not {type(params).__name__}")
        for key, value in (("name", name), ("summary", summary), ("family", family), ("params", params)):
            object.__setattr__(self, key, value)

    def __getattr__(self, key: str) -> object:
        # only called for what is not a field: the family's parameters (spec.tau, spec.decay)
        params = self.__dict__.get("params")
        if not key.startswith("_") and params is not None and key in type(params).model_fields:
            return getattr(params, key)
        raise AttributeError(f"NeuronSpec has no attribute {key!r}, and its family "
                             f"'{self.__dict__.get('family')}' no parameter of that name")


class Backend(ABC):
    """Runs neurons on one SNN library.

    A neuron module returned by `make_neuron` must:

    * take a float tensor ``[T, B, ...]`` and return spikes of the same shape and dtype (or
      float32, for a bf16 input under autocast), holding only 0.0 and 1.0: the model's neuron
      slot checks shape and dtype on every call and the values on the first batch of every
      stage, and fails the run naming the module (`stxbench.models.base.NeuronOutputError`);
    * start every call from ``V = v_reset`` (state never leaks between batches);
    * register every learnable tensor as an ``nn.Parameter`` of the module, so optimisers,
      ``.to(device)`` and state dicts see it, named by meaning: ``w`` for the decay
      (``k = sigmoid(w)``) and ``theta`` for the threshold, initialised as the spec says
      (`stxbench.neurons.lif.add_learnables` does this; a module that stores them otherwise provides
      ``parameters_by_meaning() -> {"decay_w": p, "threshold": p}``), so that parity compares
      like with like and checkpoints move between backends;
    * when its attribute ``store_v_seq`` is set to True, keep ``v_seq``: the charged membrane
      potential ``H`` (before fire and reset) of the last call, shaped like the input. The
      parity suite compares it across backends.

    A backend builds neurons of the families named in `families` (its *native* implementations,
    each held to the family's reference by ``stxbench parity``); the host runs a neuron of any
    other family through that family's reference (`NeuronFamily.Reference`) instead, so
    ``make_neuron`` is only ever asked for a family in `families`. The names above (``w``,
    ``theta``) are the lif family's; another family names its learnables in its reference.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    #: Distribution name of the SNN library, or None for a pure-PyTorch backend.
    library: ClassVar[str | None] = None
    #: The stxbench extra that installs it: ``pip install 'stxbench[<extra>]'``.
    extra: ClassVar[str | None] = None
    #: Surrogate names this backend can compute natively.
    surrogates: ClassVar[tuple[str, ...]] = ("atan", "sigmoid", "superspike")
    #: Surrogates whose alpha the library fixes (norse's SuperSpike ignores alpha, say).
    fixed_alphas: ClassVar[dict[str, float]] = {}
    #: Neuron families this backend implements natively (a backend written before families
    #: existed implements the lif family).
    families: ClassVar[tuple[str, ...]] = (LIF_FAMILY,)

    def library_version(self) -> str | None:
        """The installed library's version; None when it is not installed."""
        if self.library is None:
            return torch.__version__
        try:
            return importlib.metadata.version(self.library)
        except importlib.metadata.PackageNotFoundError:
            return None

    def check_available(self) -> None:
        """Raise `UsageError` saying which extra to install when the library is missing."""
        if self.library_version() is None:
            raise UsageError(
                f"backend '{self.name}' needs {self.library}, which is not installed: "
                f"pip install 'stxbench[{self.extra or self.library}]'"
            )

    def check_neuron(self, spec: NeuronSpec, surrogate: Surrogate) -> None:
        """Raise `UsageError` when this backend cannot run ``spec`` natively with ``surrogate``."""
        if spec.family not in self.families:
            raise UsageError(
                f"backend '{self.name}' implements the neuron families {', '.join(self.families) or '(none)'} "
                f"natively; neuron '{spec.name}' is of family '{spec.family}'"
            )
        if surrogate.name not in self.surrogates:
            raise UsageError(
                f"backend '{self.name}' has no '{surrogate.name}' surrogate; "
                f"valid: {', '.join(self.surrogates)} (choose one with --set model.surrogate="
                f"{self.surrogates[0] if self.surrogates else '...'}, which makes the run unofficial)"
            )
        fixed = self.fixed_alphas.get(surrogate.name)
        if fixed is not None and surrogate.alpha != fixed:
            raise UsageError(
                f"backend '{self.name}' computes the '{surrogate.name}' surrogate only with "
                f"alpha={fixed:g}, not {surrogate.alpha:g} (--set model.surrogate_alpha={fixed:g}, "
                "which makes the run unofficial)"
            )

    def compile_by_default(self, device_type: str) -> bool:
        """Whether ``stxbench run`` compiles this backend's neurons (as ``--compile`` does) on
        ``device_type`` ("cpu", "cuda") unless told ``--no-compile``: True where the library's
        fastest path there is ``torch.compile``. Neurons that compile themselves need no such
        thing (`stxbench.neurons.compile` leaves a module with ``compiles_itself = True`` alone)."""
        return False

    @abstractmethod
    def make_neuron(self, spec: NeuronSpec, site: NeuronSite, surrogate: Surrogate) -> nn.Module:
        """Build one multi-step neuron layer for ``site`` (``spec.family`` is in `families`)."""


#: How a model gets a neuron layer for a site (a backend's `make_neuron` with the spec and
#: surrogate bound).
MakeNeuron = Callable[[NeuronSite], nn.Module]
