"""The model contract: what every stxbench model exposes to pruners, neuron swaps and metrics
(`SpikingModel`, `NeuronSlot`, `HiddenLayer`), and the `ModelFamily` a model plugin provides.

Plugins import these through `stxbench.api`.
"""

from __future__ import annotations

import contextlib
import inspect
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor, nn

from stxbench.run.errors import RunFailed
from stxbench.neurons.contract import MakeNeuron
from stxbench.neurons.site import NeuronSite


class NeuronOutputError(RunFailed):
    """A neuron module broke the neuron contract (`stxbench.api.Backend`): its output is not a
    tensor of spikes shaped and typed like its input. Raised at the slot, naming the module's
    class and where its ``forward`` is, so the backend is blamed, not the learning rate."""

    def __init__(self, slot: NeuronSlot, problem: str):
        impl = type(slot.impl)
        self.site, self.module = slot.site.name, impl.__qualname__
        #: the module's source file (to find the plugin it belongs to) and ``file.py:line``
        self.source, self.location = _source_of(impl)
        super().__init__(f"its neuron module {self.module} ({self.location}) {problem} at neuron layer "
                         f"'{self.site}'; a backend's neurons must return 0.0/1.0 spikes of their input's shape "
                         "and dtype")


def _source_of(cls: type) -> tuple[str | None, str]:
    """The file of a class's ``forward`` (or of the class), and its ``file.py:line``."""
    target = getattr(cls, "forward", cls)
    try:
        path, line = inspect.getsourcefile(target), inspect.getsourcelines(target)[1]
    except (OSError, TypeError):
        return None, f"module {cls.__module__}"
    return (path, f"{Path(path).name}:{line}") if path else (None, f"module {cls.__module__}")


def _checked(impl: object, site: NeuronSite) -> nn.Module:
    if not isinstance(impl, nn.Module):
        raise RunFailed(f"the backend built a {type(impl).__name__} for {site.name}, not a torch.nn.Module")
    return impl


class NeuronSlot(nn.Module):
    """A place in the model where a neuron layer runs.

    The model owns the slot and its `NeuronSite`; the backend owns ``impl``. Swapping the
    neuron (stage 3) replaces ``impl`` and nothing else, and metrics find every neuron layer by
    looking for slots. The slot remembers the factory that built ``impl``, so structured pruning
    can narrow it (`keep_channels`) without knowing the backend.
    """

    #: check the spikes' values too (`checking_spikes`), not only their shape and type
    check_values = False

    def __init__(self, site: NeuronSite, make_neuron: MakeNeuron):
        super().__init__()
        self.site = site
        self.make_neuron = make_neuron
        self.impl = _checked(make_neuron(site), site)

    def rebuild(self, make_neuron: MakeNeuron, channels: int | None = None) -> None:
        if channels is not None:
            self.site = replace(self.site, channels=channels)
        self.make_neuron = make_neuron
        self.impl = _checked(make_neuron(self.site), self.site)

    @torch.no_grad()
    def keep_channels(self, index: Tensor) -> None:
        """Narrow the layer to the channels ``index`` (structured pruning): rebuild ``impl``
        with the factory that built it, keeping the learned state of the kept channels
        (per-channel tensors are indexed along their first dim, per-layer ones copied)."""
        old_shape = self.site.param_shape()
        old_state = self.impl.state_dict()
        self.rebuild(self.make_neuron, channels=len(index))
        new_state = self.impl.state_dict()
        for key, value in old_state.items():
            if key not in new_state:
                continue
            if tuple(value.shape) == old_shape:
                value = value.index_select(0, index.to(value.device))
            new_state[key].copy_(value)

    def forward(self, x: Tensor) -> Tensor:
        out = self.impl(x)
        # Shape and type on every call (metadata: free; float32 spikes for a bf16 input are
        # fine: neurons with float32 learnables promote under autocast); values only while `checking_spikes`
        # (one batch per stage, and to find the culprit when a loss or logits turn non-finite):
        # a full comparison per call would cost a pass over every spike tensor.
        if not isinstance(out, Tensor):
            raise NeuronOutputError(self, f"returned a {type(out).__name__}, not a tensor")
        if out.shape != x.shape or (out.dtype != x.dtype and out.dtype != torch.float32):
            raise NeuronOutputError(self, f"returned {tuple(out.shape)} {out.dtype} for input "
                                          f"{tuple(x.shape)} {x.dtype}")
        if self.check_values and getattr(self.impl, "spiking", True) and not bool(((out == 0) | (out == 1)).all()):
            bad = out[(out != 0) & (out != 1)].flatten()[0].item()
            raise NeuronOutputError(self, f"returned {bad!r}, not a spike")
        return out

    def extra_repr(self) -> str:
        s = self.site
        return f"channels={s.channels}, channel_dim={s.channel_dim}, v_threshold={s.v_threshold}"


@contextlib.contextmanager
def checking_spikes(model: nn.Module) -> Iterator[None]:
    """While active, every neuron slot of ``model`` also checks that its output holds only 0.0
    and 1.0 (a NaN fails that too), raising `NeuronOutputError` at the first slot that does not."""
    slots = [m for m in model.modules() if isinstance(m, NeuronSlot)]
    for slot in slots:
        slot.check_values = True
    try:
        yield
    finally:
        for slot in slots:
            slot.check_values = False


@dataclass(frozen=True)
class HiddenLayer:
    """An MLP hidden layer that structured pruning may shrink: the rows of ``fc1`` (with its BN
    and neuron) and the matching columns of ``fc2``. Values are module paths."""

    fc1: str
    bn: str
    neuron: str
    fc2: str


class SpikingModel(nn.Module):
    """Base class of stxbench models.

    Subclasses list their ST-block weight matrices (``st_matrix_names``) and their MLP hidden
    layers (``hidden_layers``), build every neuron as a `NeuronSlot`, and take input
    ``[B, *input_shape]`` (repeated over T) or ``[B, T, *input_shape]`` (temporal data).
    """

    T: int

    def st_matrix_names(self) -> list[str]:
        raise NotImplementedError

    def hidden_layers(self) -> list[HiddenLayer]:
        return []

    def st_matrices(self) -> dict[str, nn.Module]:
        """The ST-block weight matrices (q, k, v, proj, fc1, fc2 of every block), by path.

        A pruner may replace any of them with another module computing ``x -> y`` of the same
        feature sizes (a low-rank pair, a masked or narrower Linear).
        """
        return {name: self.get_submodule(name) for name in self.st_matrix_names()}

    def neuron_slots(self) -> Iterator[tuple[str, NeuronSlot]]:
        for name, module in self.named_modules():
            if isinstance(module, NeuronSlot):
                yield name, module

    def replace_module(self, path: str, module: nn.Module) -> None:
        parent_path, _, attr = path.rpartition(".")
        parent = self.get_submodule(parent_path) if parent_path else self
        if not hasattr(parent, attr):
            raise KeyError(path)
        setattr(parent, attr, module)

    def swap_neurons(self, make_neuron: MakeNeuron) -> None:
        """Rebuild every neuron layer with another neuron (stage 3), keeping its site.
        New modules start on the CPU: move the model to its device afterwards."""
        for _, slot in self.neuron_slots():
            slot.rebuild(make_neuron)


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
