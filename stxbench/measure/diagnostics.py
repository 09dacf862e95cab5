"""Per-layer neuron diagnostics: what each neuron layer does on a fixed batch of validation data.

Measured at three moments of a run (before pruning, right after pruning and the neuron swap,
after fine-tuning) to show "response realignment" (firing rates moving back after pruning) and
"gradient restoration" (surrogate gradients coming back), on any backend and neuron family:
everything is seen from the outside of each `NeuronSlot` (its input current ``X`` and its
spikes ``S``, time-first ``[T, B, ...]``) with hooks and autograd, never from a backend's
internals. The model is in eval mode (BatchNorm uses its running statistics; nothing it holds
changes) and its parameters' ``.grad`` are left untouched (``torch.autograd.grad``).

For every neuron layer, over all elements of ``X``/``S`` (time steps, samples, channels, tokens):

* ``firing_rate``: the mean of ``S``, the fraction of (neuron, time step) pairs that spike.
* ``surrogate_grad``: ``mean |d(sum S) / dX|``, the derivative of the layer's own spike count
  with respect to each input current element, through the layer's surrogate and its membrane
  dynamics over time, with the layer's input cut from the rest of the graph. For one time step
  from rest it is ``sigma'(X / tau - theta) / tau``; neurons whose membrane sits far from the
  threshold pass almost no gradient. One forward and one backward pass give every layer's value
  (each layer's input is a leaf of its own, so no layer's spikes reach another's leaf).
* ``loss_grad``: ``mean |dL / dX|``, the gradient of the summed cross-entropy of the batch (sum,
  not mean, so that it does not scale with the batch size) that reaches the layer's input
  current by backpropagation through the whole model: the gradient that training has to work
  with at that layer.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from stxbench.run.errors import RunFailed
from stxbench.models.base import NeuronSlot, SpikingModel
from stxbench.record.schema import NeuronDiagnostic


@contextmanager
def _slot_hooks(model: SpikingModel, pre=None, post=None) -> Iterator[list[tuple[str, NeuronSlot]]]:
    slots = list(model.neuron_slots())
    handles = []
    for name, slot in slots:
        if pre is not None:
            handles.append(slot.register_forward_pre_hook(pre(name)))
        if post is not None:
            handles.append(slot.register_forward_hook(post(name)))
    try:
        yield slots
    finally:
        for handle in handles:
            handle.remove()


def _mean_abs(tensors: list[torch.Tensor | None]) -> float:
    total = sum(float(t.detach().abs().sum(dtype=torch.float64)) for t in tensors if t is not None)
    return total / sum(t.numel() for t in tensors if t is not None)


def _local_pass(model: SpikingModel, x: torch.Tensor):
    """Firing rates and local surrogate derivatives: every slot's input becomes a leaf."""
    leaves: dict[str, list[torch.Tensor]] = defaultdict(list)
    spikes: dict[str, list[torch.Tensor]] = defaultdict(list)

    def pre(name):
        def hook(module, args):
            leaf = args[0].detach().requires_grad_(True)
            leaves[name].append(leaf)
            return (leaf, *args[1:])
        return hook

    def post(name):
        def hook(module, args, output):
            spikes[name].append(output)
        return hook

    with _slot_hooks(model, pre, post) as slots:
        model(x)
    names = [name for name, _ in slots if name in leaves]
    if not names:
        raise RunFailed("no neuron layer ran on the diagnostics batch: nothing to diagnose")
    total = sum(s.float().sum() for name in names for s in spikes[name])
    inputs = [leaf for name in names for leaf in leaves[name]]
    grads = torch.autograd.grad(total, inputs, allow_unused=True) if total.requires_grad else [None] * len(inputs)
    by_leaf = dict(zip(map(id, inputs), grads))
    rates = {name: _mean_abs(spikes[name]) for name in names}  # spikes are 0/1: |S| = S
    surrogate = {}
    for name in names:
        got = [by_leaf[id(leaf)] for leaf in leaves[name]]
        surrogate[name] = 0.0 if all(g is None for g in got) else _mean_abs(
            [g if g is not None else torch.zeros_like(leaf) for g, leaf in zip(got, leaves[name])])
    return names, rates, surrogate


def _loss_pass(model: SpikingModel, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """The loss gradient reaching every slot's input current, by backpropagation."""
    inputs: dict[str, list[torch.Tensor]] = defaultdict(list)

    def post(name):
        def hook(module, args, output):
            if args[0].requires_grad:
                inputs[name].append(args[0])
        return hook

    with _slot_hooks(model, post=post):
        loss = nn.functional.cross_entropy(model(x).float(), y, reduction="sum")
    names = list(inputs)
    flat = [t for name in names for t in inputs[name]]
    grads = torch.autograd.grad(loss, flat, allow_unused=True) if flat else []
    out, i = {}, 0
    for name in names:
        got = []
        for t in inputs[name]:
            got.append(grads[i] if grads[i] is not None else torch.zeros_like(t))
            i += 1
        out[name] = _mean_abs(got)
    return out


def neuron_diagnostics(model: SpikingModel, x: torch.Tensor, y: torch.Tensor) -> dict[str, NeuronDiagnostic]:
    """Every neuron layer's `NeuronDiagnostic` on the batch ``(x, y)`` (prepared inputs on the
    model's device), in float32 and eval mode; the model's mode is restored afterwards. Empty
    for a model without neuron layers (the linear baseline): there is nothing to diagnose."""
    if next(model.neuron_slots(), None) is None:
        return {}
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            names, rates, surrogate = _local_pass(model, x)
            loss_grads = _loss_pass(model, x, y)
    finally:
        model.train(was_training)
    return {
        name: NeuronDiagnostic(firing_rate=rates[name], surrogate_grad=surrogate[name],
                               loss_grad=loss_grads.get(name, 0.0))
        for name in names
    }
