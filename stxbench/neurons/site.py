"""Where a neuron layer sits in a model (`NeuronSite`) and the surrogate gradient of its spike
function (`Surrogate`): what every neuron family, implementation and backend is given. Plugins
import these through `stxbench.api`."""

from __future__ import annotations

from dataclasses import dataclass

from stxbench.run.errors import UsageError


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
