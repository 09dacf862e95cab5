"""Synaptic operation counts at the ATen dispatch level, attributed to the module that runs them.

`OpCounter` runs a `TorchDispatchMode`: every matmul-like op (mm, addmm, bmm, baddbmm, mv,
addmv, matmul, linear) and every convolution that runs while it is active is counted, whoever
issues it (an ``nn.Linear``, a low-rank factor, an attention ``q @ k^T``, a backend's own
module), and charged to the innermost module of the model running at the time (forward hooks
keep that stack). Module hooks alone would miss the attention matmuls; dispatch alone would not
know their names. What an op holds (per sample, by operand kind) is `stxbench.measure.op_rules`'s
business; what it costs under a named convention is `stxbench.measure.conventions`'s.

Besides the synaptic ops the counter keeps what other conventions and the memory cost models
need: BatchNorm elements (SpikingJelly charges affine BN as MACs), membrane updates per neuron
layer, and, for a factorised matrix that can run as one (``merged_weight()``), what
that one matrix would cost on the same inputs. Under ``no_grad`` the mode sees the decomposed
ops (mm, addmm, bmm, convolution); under ``inference_mode`` it sees linear, matmul, conv2d
whole, and runs any other composite op (einsum, ...) through its decomposition so that nothing
synaptic slips past.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes

from stxbench.data.contract import DataSplits
from stxbench.run.errors import RunFailed
from stxbench.run.processes import Execution
from stxbench.models.base import SpikingModel
from stxbench.measure.op_rules import STATS, GroupCharge, Memo, conv_charges, matmul_charges, stxbench_kind
from stxbench.record.schema import (
    COUNT_RULE,
    BatchNormCount,
    Counts,
    LayerCount,
    MergedOption,
    NeuronCount,
    OpCount,
)
from stxbench.run.training import batches, dataset_head

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
# BatchNorm as the mode sees it (no_grad: native_batch_norm; inference_mode: decomposed)
_BATCH_NORMS = {
    getattr(aten, name)
    for name in ("native_batch_norm", "_native_batch_norm_legit_no_training", "_native_batch_norm_legit")
    if hasattr(aten, name)
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
# torch.nn layer classes a module type is reported as (NeuroBench counts Linear and Conv only)
_NN_LAYERS = {
    cls.__name__: cls for cls in (
        nn.Linear, nn.Bilinear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d,
        nn.ConvTranspose2d, nn.ConvTranspose3d, nn.RNNCellBase, nn.RNNBase,
    )
}


def module_type(module: nn.Module) -> str:
    """The torch.nn layer class ``module`` is (``Linear`` for a subclass too), else its own
    class name."""
    for cls in type(module).__mro__:
        if _NN_LAYERS.get(cls.__name__) is cls:
            return cls.__name__
    return type(module).__name__


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


def _storage(t: torch.Tensor) -> int:
    try:
        return t.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):  # tensors without storage (meta, subclasses)
        return -1


class _DispatchMode(TorchDispatchMode):
    """Sends each op to `OpCounter._dispatch`; re-enterable (for decompositions)."""

    def __init__(self, counter: OpCounter):
        super().__init__()
        self.counter = counter

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return self.counter._dispatch(self, func, args, kwargs or {})


_Key = tuple[str, str, str, str, str]  # module, module type, op, a kind, b kind


def _accumulate(rows: dict[_Key, dict[str, int]], key_head: tuple[str, str, str],
                charges: list[GroupCharge]) -> None:
    for charge in charges:
        row = rows.setdefault((*key_head, charge.a_kind, charge.b_kind), dict.fromkeys(STATS, 0))
        for name, value in charge.values.items():
            row[name] += value


class OpCounter:
    """Counts synaptic ops of ``model`` while active (forward passes only, under ``no_grad``).

    ``neurons`` are the neuron modules; each element of their input is one membrane update.
    The batch size is read from the first dimension of the model's input at each call (and the
    time steps from ``model.T``), so that an operand's kind is decided per sample. The caller
    adds the samples it fed to ``samples``; `counts` divides by them.
    """

    def __init__(self, model: nn.Module, neurons: Iterable[nn.Module] = ()):
        self.model = model
        self.neurons = list(neurons)
        self.time_steps = int(getattr(model, "T", 1) or 1)
        self.samples = 0
        self.neuron_updates = 0
        self.rows: dict[_Key, dict[str, int]] = {}
        self.alternatives: dict[_Key, dict[str, int]] = {}
        self.batchnorm: dict[str, list] = {}  # module -> [elements, affine]
        self.neuron_stats: dict[str, int] = {}  # module -> membrane updates
        self._batch = 1
        self._stack: list[tuple[str, nn.Module]] = []
        self._handles: list = []
        self._composite: dict[Any, bool] = {}
        self._weights: set[int] = set()
        self._cast_weights: weakref.WeakValueDictionary[int, torch.Tensor] = weakref.WeakValueDictionary()
        self._memo = Memo()  # operand kinds decided in the current forward pass
        self._linear_inputs: dict[int, torch.Tensor] = {}  # nn.Linear -> its input, this pass
        self._mode = _DispatchMode(self)

    # -- module attribution -----------------------------------------------------------------

    def _install_hooks(self) -> None:
        self._handles.append(self.model.register_forward_pre_hook(self._read_batch))
        names = {}
        for name, module in self.model.named_modules():
            label = name or ROOT
            names[id(module)] = label
            self._handles.append(module.register_forward_pre_hook(self._push(label, module)))
            self._handles.append(module.register_forward_hook(self._pop, always_call=True))
            merged = getattr(module, "merged_weight", None)
            if callable(merged):
                self._handles.append(module.register_forward_pre_hook(self._merge_hook(label, merged)))
        for i, neuron in enumerate(self.neurons):
            label = names.get(id(neuron), f"(neuron {i})")
            self._handles.append(neuron.register_forward_pre_hook(self._count_updates(label)))
        self._weights = {_storage(t) for t in (*self.model.parameters(), *self.model.buffers())}

    def _read_batch(self, module, args):
        x = next((a for a in args if isinstance(a, torch.Tensor)), None)
        self._batch = int(x.shape[0]) if x is not None and x.dim() > 0 else 1
        self._memo.clear()
        self._linear_inputs.clear()

    def _push(self, label: str, module: nn.Module):
        linear = type(module) is nn.Linear

        def hook(_, args):
            self._stack.append((label, module))
            if linear and args and isinstance(args[0], torch.Tensor):
                self._linear_inputs[id(module)] = args[0]

        return hook

    def _pop(self, module, args, output):
        self._stack.pop()
        self._linear_inputs.pop(id(module), None)  # hold no activation past its layer

    def _count_updates(self, label: str):
        def hook(module, args):
            n = sum(a.numel() for a in args if isinstance(a, torch.Tensor))
            self.neuron_updates += n
            self.neuron_stats[label] = self.neuron_stats.get(label, 0) + n

        return hook

    def _merge_hook(self, label: str, merged_weight):
        """What the factorised module would cost as the one matrix of its product."""
        cache: list = []

        def hook(module, args):
            x = next((a for a in args if isinstance(a, torch.Tensor)), None)
            if x is None:
                return
            with _disable_current_modes(), torch.no_grad(), self._no_autocast(x):
                if not cache:
                    cache.append(merged_weight())
                weight = cache[0]
                if weight is None:  # not mergeable (a neuron between the factors)
                    return
                a = x.reshape(-1, x.shape[-1])
                charges = matmul_charges(a, weight.t(), self._batch, self.time_steps, True, self._memo, x)
            # the one matrix would run as an nn.Linear
            _accumulate(self.alternatives, (label, "Linear", "merged"), charges)

        return hook

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
            self._memo.clear()
            self._linear_inputs.clear()

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
            self._charge(func, args, kwargs, out)
            return out
        if packet in _BATCH_NORMS:
            x, weight = args[0], args[1] if len(args) > 1 else kwargs.get("weight")
            row = self.batchnorm.setdefault(self._owner()[0], [0, weight is not None])
            row[0] += x.numel()
            return func(*args, **kwargs)
        if packet is aten._to_copy and args and _storage(args[0]) in self._weights:
            out = func(*args, **kwargs)  # autocast's copy of a weight is still a weight
            self._cast_weights[_storage(out)] = out
            return out
        if packet in _UNCOUNTABLE:
            raise RunFailed(
                f"op counting: {func} in module '{self._owner()[0]}' is a synaptic op that "
                f"{COUNT_RULE} cannot count; run with --no-counts or express it as matmul/conv"
            )
        if self._is_composite(func):
            # under inference_mode composite ops (einsum, bilinear, ...) arrive whole: run their
            # decomposition through this mode so that the matmuls inside are seen
            with mode:
                return func.decompose(*args, **kwargs)
        return func(*args, **kwargs)

    def _owner(self) -> tuple[str, nn.Module | None]:
        return self._stack[-1] if self._stack else (ROOT, self.model)

    def _is_weight(self, t: torch.Tensor) -> bool:
        ptr = _storage(t)
        return ptr in self._weights or ptr in self._cast_weights

    @staticmethod
    def _no_autocast(x: torch.Tensor):
        """Counting arithmetic must stay exact: never under autocast's bf16."""
        return torch.autocast(x.device.type, enabled=False) if x.device.type in ("cpu", "cuda") \
            else contextlib.nullcontext()

    def _charge(self, func, args: tuple, kwargs: dict, out: torch.Tensor) -> None:
        bound = _bind(func, args, kwargs)
        packet = func.overloadpacket
        label, module = self._owner()
        with torch.no_grad(), self._no_autocast(out):
            if packet in _CONVOLUTIONS:
                charges = conv_charges(func, bound, out.shape, self._batch, self.time_steps,
                                       self._is_weight(bound["weight"]), self._memo)
            else:
                left, right = _MATMUL_OPERANDS[packet]
                a, b = bound[left], bound[right]
                if packet is aten.linear:
                    b = b.t()
                    if a.dim() > 2:
                        a = a.reshape(-1, a.shape[-1])
                a_weight, b_weight = self._is_weight(a), self._is_weight(b)
                if a_weight and not b_weight:  # W @ x: count (x^T W^T), the activation first
                    a, b = b.transpose(-2, -1) if b.dim() > 1 else b, a.transpose(-2, -1)
                    a_weight, b_weight = b_weight, a_weight
                alias = self._linear_inputs.get(id(module)) if not a_weight else None
                charges = matmul_charges(a, b, self._batch, self.time_steps, b_weight, self._memo, alias)
        _accumulate(self.rows, (label, module_type(module), packet.__name__), charges)

    # -- results ----------------------------------------------------------------------------

    def totals(self) -> dict[str, int]:
        """Effective ops over everything counted so far under this project's rule, by kind (not
        per sample)."""
        totals = {"mac": 0, "ac": 0, "ac_int": 0}
        for key, row in self.rows.items():
            kind = stxbench_kind(key[3], key[4])
            totals[kind] += _effective(kind, row)
        return totals

    def layer_rows(self) -> dict[tuple[str, str, str], dict[str, int]]:
        """This project's rule per (module, op, kind), in the order the rows first appeared."""
        layers: dict[tuple[str, str, str], dict[str, int]] = {}
        for (module, _, op, a_kind, b_kind), row in self.rows.items():
            kind = stxbench_kind(a_kind, b_kind)
            layer = layers.setdefault((module, op, kind), {"dense": 0, "effective": 0, "nonzero": 0, "numel": 0})
            layer["dense"] += row["dense"]
            layer["effective"] += _effective(kind, row)
            if kind != "mac":
                layer["nonzero"] += row["rated_nonzero"]
                layer["numel"] += row["rated_numel"]
        return layers

    def counts(self, subset: str = "test", precision: str | None = None) -> Counts:
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
                input_rate=row["nonzero"] / row["numel"] if row["numel"] else None,
                dense_ops=row["dense"] / n, effective_ops=row["effective"] / n,
            )
            for (module, op, kind), row in self.layer_rows().items()
        ]
        totals = self.totals()
        return Counts(
            samples=n, mac=totals["mac"] / n, ac=totals["ac"] / n, ac_int=totals["ac_int"] / n,
            neuron_updates=self.neuron_updates / n, layers=layers, rule=COUNT_RULE, subset=subset,
            precision=precision, ops=_op_counts(self.rows, n),
            batchnorm=[BatchNormCount(module=m, elements=e / n, affine=a)
                       for m, (e, a) in self.batchnorm.items()],
            neurons=[NeuronCount(module=m, updates=u / n) for m, u in self.neuron_stats.items()],
            merge_options=_merge_options(self.alternatives, n),
        )


def _effective(kind: str, row: dict[str, int]) -> int:
    return {"ac": row["nonzero_pairs"], "ac_int": row["value_pairs"], "mac": row["dense"]}[kind]


def _op_counts(rows: dict[_Key, dict[str, int]], n: int) -> list[OpCount]:
    return [
        OpCount(module=module, module_type=mtype, op=op, a_kind=a_kind, b_kind=b_kind,
                **{name: value / n for name, value in row.items()})
        for (module, mtype, op, a_kind, b_kind), row in rows.items()
    ]


def _merge_options(alternatives: dict[_Key, dict[str, int]], n: int) -> list[MergedOption]:
    by_module: dict[str, dict[_Key, dict[str, int]]] = {}
    for key, row in alternatives.items():
        by_module.setdefault(key[0], {})[key] = row
    return [MergedOption(module=module, ops=_op_counts(rows, n)) for module, rows in by_module.items()]


def count_batches(
    model: nn.Module,
    inputs: Iterable[torch.Tensor],
    neurons: Iterable[nn.Module] = (),
    subset: str = "test",
    execution: Execution | None = None,
) -> Counts:
    """Run ``model`` (eval mode, no grad) on each ``[B, ...]`` input and count its ops, in the
    precision the evaluation runs in (``execution``'s autocast)."""
    model.eval()
    execution = execution or Execution()
    with torch.no_grad(), OpCounter(model, neurons) as counter:
        for x in inputs:
            with execution.autocast(x.device):
                model(x)
            counter.samples += x.shape[0]
    return counter.counts(subset, precision=execution.precision)


def count_test_head(
    model: SpikingModel, splits: DataSplits, batch_size: int, max_samples: int, device: torch.device,
    execution: Execution | None = None,
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
        return count_batches(model, inputs(), neurons, subset=f"test[:{n}]", execution=execution)
    except RunFailed:
        raise
    except Exception as exc:
        raise RunFailed(f"op counting failed: {type(exc).__name__}: {exc}") from exc
