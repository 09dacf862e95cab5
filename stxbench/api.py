"""The types a plugin returns from its hooks (see `stxbench.hookspecs` for the hooks themselves).

Four kinds of component are pluggable, and the host knows none of them concretely:

* `NeuronSpec`  - *what* a neuron computes: a parameterisation of the LIF family.
* `Backend`     - *how* neurons run: builds `[T, B, ...]` neuron modules on some SNN library.
* `Pruner`      - rewrites the ST-block weight matrices of a trained model.
* `Dataset`     - yields tensors for training and evaluation, never downloading anything.
* `ModelFamily` - builds a spiking model by name (`spikformer-4-384`) around backend neurons.
"""

from __future__ import annotations

import importlib.metadata
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from stxbench.errors import UsageError

if TYPE_CHECKING:
    from stxbench.models.base import SpikingModel

# --------------------------------------------------------------------------------------------
# Neurons


@dataclass(frozen=True)
class NeuronSpec:
    """A neuron of the LIF family, described by which of its constants are learnable.

    Every backend runs the same equations (time-first input, `>=` threshold, detached hard
    reset to `v_reset`)::

        H[t] = V[t-1] + (X[t] - (V[t-1] - v_reset)) * k      # k = 1/tau
        S[t] = 1[H[t] >= theta]
        V[t] = H[t] * (1 - S[t]) + v_reset * S[t]              # S detached here

    ``decay`` says how ``k`` is held: ``"fixed"`` (``k = 1/tau``, a constant, computed as a
    division by ``tau``), ``"layer"`` (``k = sigmoid(w)``, one learnable ``w`` per layer, as in
    PLIF) or ``"channel"`` (one learnable ``w_c`` per channel). ``threshold`` is ``"fixed"``
    (the site's threshold) or ``"channel"`` (a learnable ``theta_c`` per channel, initialised
    to the site's threshold and kept positive). ``w`` is initialised to ``-log(tau - 1)`` so that
    ``sigmoid(w) == 1/tau`` exactly for ``tau = 2``.

    ``family`` names the equations above; a neuron outside the LIF family uses another name,
    and a backend that does not implement that family refuses it with a clear error.
    """

    name: str
    summary: str
    decay: Literal["fixed", "layer", "channel"] = "fixed"
    threshold: Literal["fixed", "channel"] = "fixed"
    tau: float = 2.0
    v_reset: float = 0.0
    family: str = "lif"

    def __post_init__(self) -> None:
        if self.decay not in ("fixed", "layer", "channel"):
            raise ValueError(f"NeuronSpec.decay must be fixed, layer or channel, not {self.decay!r}")
        if self.threshold not in ("fixed", "channel"):
            raise ValueError(f"NeuronSpec.threshold must be fixed or channel, not {self.threshold!r}")
        if not self.tau > 1.0:
            raise ValueError(f"NeuronSpec.tau must be > 1, not {self.tau}")


@dataclass(frozen=True)
class NeuronSite:
    """Where a neuron layer sits in a model: what a backend needs to build one.

    ``channel_dim`` is a *negative* index into the ``[T, B, ...]`` input (``-1`` for tokens
    ``[T, B, N, C]``, ``-3`` for feature maps ``[T, B, C, H, W]``), so it indexes one time step
    ``[B, ...]`` identically. Per-channel parameters have ``channels`` entries along it.
    """

    name: str
    channels: int
    channel_dim: int
    v_threshold: float = 1.0

    def __post_init__(self) -> None:
        if self.channel_dim >= 0:
            raise ValueError("NeuronSite.channel_dim must be negative")

    def param_shape(self) -> tuple[int, ...]:
        """Shape that broadcasts a per-channel vector against one time step."""
        return (self.channels,) + (1,) * (-self.channel_dim - 1)


SURROGATE_DEFAULT_ALPHA = {"atan": 2.0, "sigmoid": 4.0, "superspike": 1.0}


@dataclass(frozen=True)
class Surrogate:
    """The surrogate gradient of the spike function, evaluated at ``x = H - theta``.

    * ``atan``:       ``a / (1 + (pi*a*x)^2)`` with ``a = alpha/2`` (spikingjelly ATan)
    * ``sigmoid``:    ``alpha * s * (1 - s)`` with ``s = sigmoid(alpha*x)``
    * ``superspike``: ``alpha / (1 + |x|)^2`` (snntorch fast_sigmoid(slope=1), norse 'super')
    """

    name: str = "atan"
    alpha: float | None = None

    def __post_init__(self) -> None:
        if self.name not in SURROGATE_DEFAULT_ALPHA:
            raise UsageError(
                f"unknown surrogate '{self.name}'; valid: {', '.join(SURROGATE_DEFAULT_ALPHA)}"
            )
        if self.alpha is None:
            object.__setattr__(self, "alpha", SURROGATE_DEFAULT_ALPHA[self.name])
        if not self.alpha > 0:
            raise UsageError(f"surrogate alpha must be > 0, got {self.alpha}")


class Backend(ABC):
    """Runs neurons on one SNN library.

    A neuron module returned by `make_neuron` must:

    * take a float tensor ``[T, B, ...]`` and return spikes of the same shape and dtype,
      holding only 0.0 and 1.0;
    * start every call from ``V = v_reset`` (state never leaks between batches);
    * register every learnable tensor as an ``nn.Parameter`` of the module, so optimisers,
      ``.to(device)`` and state dicts see it, named by meaning: ``w`` for the decay
      (``k = sigmoid(w)``) and ``theta`` for the threshold, initialised as the spec says
      (`stxbench.lif.add_learnables` does this; a module that stores them otherwise provides
      ``parameters_by_meaning() -> {"decay_w": p, "threshold": p}``), so that parity compares
      like with like and checkpoints move between backends;
    * when its attribute ``store_v_seq`` is set to True, keep ``v_seq``: the charged membrane
      potential ``H`` (before fire and reset) of the last call, shaped like the input. The
      parity suite compares it across backends.
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
        """Raise `UsageError` when this backend cannot run ``spec`` with ``surrogate``."""
        if spec.family != "lif":
            raise UsageError(
                f"backend '{self.name}' implements the lif neuron family only; "
                f"neuron '{spec.name}' is of family '{spec.family}'"
            )
        if surrogate.name not in self.surrogates:
            raise UsageError(
                f"backend '{self.name}' has no '{surrogate.name}' surrogate; "
                f"valid: {', '.join(self.surrogates)}"
            )
        fixed = self.fixed_alphas.get(surrogate.name)
        if fixed is not None and surrogate.alpha != fixed:
            raise UsageError(
                f"backend '{self.name}' computes the '{surrogate.name}' surrogate only with "
                f"alpha={fixed:g}, not {surrogate.alpha:g}"
            )

    def compile_by_default(self, device_type: str) -> bool:
        """Whether ``stxbench run`` compiles this backend's neurons (as ``--compile`` does) on
        ``device_type`` ("cpu", "cuda") unless told ``--no-compile``: True where the library's
        fastest path there is ``torch.compile``. Neurons that compile themselves need no such
        thing (`stxbench.compile` leaves a module with ``compiles_itself = True`` alone)."""
        return False

    @abstractmethod
    def make_neuron(self, spec: NeuronSpec, site: NeuronSite, surrogate: Surrogate) -> nn.Module:
        """Build one multi-step neuron layer for ``site``."""


# --------------------------------------------------------------------------------------------
# Pruners


class PrunerParams(BaseModel):
    """Base for a pruner's parameters: strict, immutable, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Pruner(ABC):
    """Rewrites the ST-block weight matrices (``model.st_matrices()``) of a trained model.

    Pruning happens once, after dense training and before fine-tuning. Whatever the pruner
    leaves in the model is fine-tuned; `finalize` then makes the model's parameters honest
    (masks folded into weights) before anything is measured.

    A pruner may replace an ST matrix with any module of the same ``in_features`` and
    ``out_features`` (exposing ``rank`` when it is a factorisation), or narrow an MLP hidden
    layer (``model.hidden_layers()``): then it narrows the neuron layer too, with
    ``NeuronSlot.keep_channels(index)``, which rebuilds it with the factory that built it.
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


# --------------------------------------------------------------------------------------------
# Datasets


@dataclass
class DataSplits:
    """What a dataset plugin hands the host.

    ``train``/``test`` are torch datasets yielding ``(x, label)``; a ``TensorDataset`` takes a
    fast path (batches are sliced, not collated). ``input_shape`` is one sample's shape without
    time: ``(C, H, W)`` for images, ``(C, L)`` for sequences. With ``temporal=True`` each sample
    already carries its own time axis ``[T, *input_shape]`` (event frames); otherwise the model
    repeats the input over T (direct encoding). ``prepare`` turns a stored batch into the float
    model input (scaling, normalisation); ``augment`` is applied to training batches only, with
    the run's seeded generator.
    """

    train: torch.utils.data.Dataset
    test: torch.utils.data.Dataset
    input_shape: tuple[int, ...]
    num_classes: int
    temporal: bool = False
    prepare: Callable[[torch.Tensor], torch.Tensor] | None = None
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None
    info: dict[str, object] = field(default_factory=dict)


class Dataset(ABC):
    """Real data from an installed package or the user's folder. Never downloads."""

    name: ClassVar[str]
    summary: ClassVar[str]
    #: True when the data come from the user's folder (``--data-root``).
    needs_root: ClassVar[bool] = False

    @abstractmethod
    def load(self, root: str | None, **options) -> DataSplits:
        """Return the splits. A missing or incomplete folder raises `UsageError` naming the
        expected layout and the first missing file. ``options`` come from the protocol's
        ``[data.options]`` (plus ``frames = T`` for event data); the host passes none when the
        protocol sets none, and an unknown option is a `UsageError`."""


# --------------------------------------------------------------------------------------------
# Models

MakeNeuron = Callable[[NeuronSite], nn.Module]


class ModelFamily(ABC):
    """Builds models named ``<family>-<size>`` (``spikformer-4-384``)."""

    name: ClassVar[str]
    summary: ClassVar[str]

    @abstractmethod
    def build(
        self,
        size: str,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        T: int,
        make_neuron: MakeNeuron,
        options: dict[str, object],
    ) -> SpikingModel:
        """Build the model; raise `UsageError` for a size or option it cannot build."""
