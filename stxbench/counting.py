"""Synaptic operation counts at the ATen dispatch level, attributed to the module that runs them.

`OpCounter` runs a `TorchDispatchMode`: every matmul-like op (mm, addmm, bmm, baddbmm, mv,
addmv, matmul, linear) and every convolution that runs while it is active is counted, whoever
issues it (an ``nn.Linear``, a low-rank factor, an attention ``q @ k^T``, a backend's own
module), and charged to the innermost module of the model running at the time (forward hooks
keep that stack). Module hooks alone would miss the attention matmuls; dispatch alone would not
know their names. What each op costs is `stxbench.op_rule`'s business.

Bias adds, BN, pooling, residual adds and neuron updates are not synaptic ops; neuron updates
(one per neuron per time step: each element of a neuron module's input) are counted for
information. Under ``no_grad`` the mode sees the decomposed ops (mm, addmm, bmm, convolution);
under ``inference_mode`` it sees linear, matmul, conv2d whole, and runs any other composite op
(einsum, ...) through its decomposition so that nothing synaptic slips past.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from stxbench.api import DataSplits
from stxbench.errors import RunFailed
from stxbench.models.base import SpikingModel
from stxbench.op_rule import conv_charge, matmul_charge
from stxbench.record import COUNT_RULE, Counts, LayerCount
from stxbench.training import batches, dataset_head

ROOT = "(root)"  # ops issued by the model's own forward, outside any submodule

aten = torch.ops.aten

# matmul-like ops: (left operand, right operand) by schema argument name
_MATMUL_OPERANDS: dict[Any, tuple[str, str]] = {
    aten.mm: ("self", "mat2"),
    aten.addmm: ("mat1", "mat2"),
    aten._addmm_activation: ("mat1", "mat2"),
    aten.bmm: ("self", "mat2"),
    aten.baddbmm: ("batch1", "batch2"),
    aten.mv: ("self", "vec"),
    aten.addmv: ("mat", "vec"),
    aten.matmul: ("self", "other"),
    aten.linear: ("input", "weight"),
}
_CONVOLUTIONS = {
    aten.convolution, aten._convolution, aten.conv1d, aten.conv2d, aten.conv3d,
    aten.conv_transpose1d, aten.conv_transpose2d, aten.conv_transpose3d,
}
#: the ``op`` names a record's counted layers can hold
COUNTED_OPS = frozenset(packet.__name__ for packet in (*_MATMUL_OPERANDS, *_CONVOLUTIONS))
# synaptic ops the rule has no counting for yet: a run that uses one fails rather than
# reporting too few operations
_UNCOUNTABLE = {
    getattr(aten, name)
    for name in (
        "addbmm", "dot", "vdot", "_int_mm", "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_dot_product_efficient_attention", "_scaled_dot_product_flash_attention",
        "_scaled_dot_product_cudnn_attention", "conv_tbc",
    )
    if hasattr(aten, name)
}


def _bind(func, args: tuple, kwargs: dict) -> dict[str, Any]:
    """An ATen call's arguments by schema name, defaults filled in (``out`` dropped)."""
    bound = {}
    for i, arg in enumerate(func._schema.arguments):
        if i < len(args):
            bound[arg.name] = args[i]
        elif arg.name in kwargs:
            bound[arg.name] = kwargs[arg.name]
        elif arg.has_default_value():
            bound[arg.name] = arg.default_value
    bound.pop("out", None)
    return bound


@dataclass
class _Row:
    dense: int = 0
    effective: int = 0
    operand_nonzero: int = 0
    operand_numel: int = 0


class _DispatchMode(TorchDispatchMode):
    """Sends each op to `OpCounter._dispatch`; re-enterable (for decompositions)."""

    def __init__(self, counter: OpCounter):
        super().__init__()
        self.counter = counter

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return self.counter._dispatch(self, func, args, kwargs or {})


class OpCounter:
    """Counts synaptic ops of ``model`` while active (forward passes only, under ``no_grad``).

    ``neurons`` are the neuron modules; each element of their input is one neuron update. The
    caller adds the samples it fed to ``samples``; `counts` divides by them.
    """

    def __init__(self, model: nn.Module, neurons: Iterable[nn.Module] = ()):
        self.model = model
        self.neurons = list(neurons)
        self.samples = 0
        self.neuron_updates = 0
        self.rows: dict[tuple[str, str, str], _Row] = {}
        self._stack: list[str] = []
        self._handles: list = []
        self._composite: dict[Any, bool] = {}
        self._mode = _DispatchMode(self)

    # -- module attribution -----------------------------------------------------------------

    def _install_hooks(self) -> None:
        for name, module in self.model.named_modules():
            label = name or ROOT
            self._handles.append(module.register_forward_pre_hook(self._push(label)))
            self._handles.append(module.register_forward_hook(self._pop, always_call=True))
        for neuron in self.neurons:
            self._handles.append(neuron.register_forward_pre_hook(self._count_neurons))

    def _push(self, label: str):
        def hook(module, args):
            self._stack.append(label)

        return hook

    def _pop(self, module, args, output):
        self._stack.pop()

    def _count_neurons(self, module, args):
        self.neuron_updates += sum(a.numel() for a in args if isinstance(a, torch.Tensor))

    def __enter__(self) -> OpCounter:
        self._install_hooks()
        try:
            self._mode.__enter__()
        except BaseException:
            self._remove_hooks()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._mode.__exit__(*exc)
        finally:
            self._remove_hooks()

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._stack.clear()

    # -- dispatch ---------------------------------------------------------------------------

    def _is_composite(self, func) -> bool:
        if func not in self._composite:
            self._composite[func] = func.has_kernel_for_dispatch_key(
                torch._C.DispatchKey.CompositeImplicitAutograd
            )
        return self._composite[func]

    def _dispatch(self, mode: _DispatchMode, func, args: tuple, kwargs: dict):
        packet = func.overloadpacket
        if packet in _MATMUL_OPERANDS or packet in _CONVOLUTIONS:
            out = func(*args, **kwargs)
            self._charge(func, args, kwargs)
            return out
        if packet in _UNCOUNTABLE:
            raise RunFailed(
                f"op counting: {func} in module '{self._owner()}' is a synaptic op that "
                f"{COUNT_RULE} cannot count; run with --no-counts or express it as matmul/conv"
            )
        if self._is_composite(func):
            # under inference_mode composite ops (einsum, bilinear, ...) arrive whole: run their
            # decomposition through this mode so that the matmuls inside are seen
            with mode:
                return func.decompose(*args, **kwargs)
        return func(*args, **kwargs)

    def _owner(self) -> str:
        return self._stack[-1] if self._stack else ROOT

    def _charge(self, func, args: tuple, kwargs: dict) -> None:
        bound = _bind(func, args, kwargs)
        packet = func.overloadpacket
        with torch.no_grad():
            if packet in _CONVOLUTIONS:
                charge = conv_charge(func, bound)
            else:
                left, right = _MATMUL_OPERANDS[packet]
                b = bound[right].t() if packet is aten.linear else bound[right]
                a = bound[left]
                if packet is aten.linear and a.dim() > 2:
                    a = a.reshape(-1, a.shape[-1])
                charge = matmul_charge(a, b)
        row = self.rows.setdefault((self._owner(), packet.__name__, charge.kind), _Row())
        row.dense += charge.dense
        row.effective += charge.effective
        row.operand_nonzero += charge.operand_nonzero
        row.operand_numel += charge.operand_numel

    # -- results ----------------------------------------------------------------------------

    def totals(self) -> dict[str, int]:
        """Effective ops over everything counted so far, by kind (not per sample)."""
        totals = {"mac": 0, "ac": 0, "ac_int": 0}
        for (_, _, kind), row in self.rows.items():
            totals[kind] += row.effective
        return totals

    def counts(self, subset: str = "test") -> Counts:
        """Per-sample counts for the record. A count that cannot be trusted raises `RunFailed`."""
        if self.samples <= 0:
            raise RunFailed("op counting saw no samples: no counts to report")
        if not self.rows:
            raise RunFailed(
                "op counting found no synaptic op (matmul, linear, convolution) in the model"
            )
        if self.neurons and not self.neuron_updates:
            raise RunFailed("op counting saw no neuron layer run: no neuron updates to report")
        n = self.samples
        layers = [
            LayerCount(
                module=module, op=op, kind=kind,
                input_rate=row.operand_nonzero / row.operand_numel if row.operand_numel else None,
                dense_ops=row.dense / n, effective_ops=row.effective / n,
            )
            for (module, op, kind), row in self.rows.items()
        ]
        totals = self.totals()
        return Counts(
            samples=n, mac=totals["mac"] / n, ac=totals["ac"] / n, ac_int=totals["ac_int"] / n,
            neuron_updates=self.neuron_updates / n, layers=layers, rule=COUNT_RULE, subset=subset,
        )


def count_batches(
    model: nn.Module,
    inputs: Iterable[torch.Tensor],
    neurons: Iterable[nn.Module] = (),
    subset: str = "test",
) -> Counts:
    """Run ``model`` (eval mode, no grad) on each ``[B, ...]`` input and count its ops."""
    model.eval()
    with torch.no_grad(), OpCounter(model, neurons) as counter:
        for x in inputs:
            model(x)
            counter.samples += x.shape[0]
    return counter.counts(subset)


def count_test_head(
    model: SpikingModel, splits: DataSplits, batch_size: int, max_samples: int, device: torch.device
) -> Counts:
    """Counts of the final model over the first ``max_samples`` test samples, in split order.

    A pass of its own, after the timed evaluation, so that evaluation throughput stays free of
    counting overhead. Any failure is a `RunFailed`: a count is never silently left at 0.
    """
    n = min(max_samples, len(splits.test))
    head = dataset_head(splits.test, n)

    def inputs() -> Iterator[torch.Tensor]:
        for x, _ in batches(head, batch_size, shuffle=False, drop_last=False):
            x = x.to(device)
            yield splits.prepare(x) if splits.prepare else x

    neurons = [slot for _, slot in model.neuron_slots()]
    try:
        return count_batches(model, inputs(), neurons, subset=f"test[:{n}]")
    except RunFailed:
        raise
    except Exception as exc:
        raise RunFailed(f"op counting failed: {type(exc).__name__}: {exc}") from exc
