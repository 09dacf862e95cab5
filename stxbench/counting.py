"""Synaptic operation counts at the ATen dispatch level, attributed to the module that runs them.

`OpCounter` is a `TorchDispatchMode`: every matmul-like op (mm, addmm, bmm, baddbmm, mv, addmv,
matmul, linear) and every convolution that runs while it is active is counted, whoever issues
it (an ``nn.Linear``, a low-rank factor, an attention ``q @ k^T``, a backend's own module), and
charged to the innermost module of the model that was running at the time. Module hooks alone
would miss the attention matmuls; dispatch alone would not know their names.

The rule (DESIGN.md, "Operation counts and energy"; rule id `COUNT_RULE`), per op ``a (x) b``:

* an operand is **binary** (every value 0 or 1): ``ac``, counted as nonzero pairs, the
  products whose two factors are both nonzero (so a pruned weight or a silent neuron costs
  nothing);
* otherwise an operand holds **small non-negative integers** (at most `SMALL_INT_MAX`, e.g. a
  residual stream 0, 1, 2, ...): ``ac_int``, counted as value x nonzero fan-out (an input 2
  meeting a nonzero weight is two accumulates), reported apart;
* otherwise ``mac``: every product of the op (the real-valued first layer, the head, the second
  factor of a low-rank pair), counted each time (each time step) it runs.

"Products" are pairs of real operand entries: a convolution's zero padding is not an operand,
so border outputs have fewer products (SpikingJelly's and Spikformer's MAC counters count the
padded taps too). ``dense_ops`` is the product count as if every operand entry were nonzero.
Bias adds, BN, pooling, residual adds and neuron updates are not synaptic ops; neuron updates
(one per neuron per time step) are counted for information.

Classification is per call and per whole operand tensor; counting uses column/row nonzero sums
for matmuls (``sum_k nnz_col(a)[k] * nnz_row(b)[k]``) and, for convolutions, one convolution of
the input mask with the per-group count of nonzero weights (one output channel per group), so
it stays a small fraction of the op it counts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from stxbench.api import DataSplits
from stxbench.errors import RunFailed
from stxbench.models.base import SpikingModel
from stxbench.record import COUNT_RULE, Counts, LayerCount
from stxbench.training import batches

#: largest value an integer operand may hold and still count as integer ACs
SMALL_INT_MAX = 255
ROOT = "(root)"  # ops issued by the model's own forward, outside any submodule

aten = torch.ops.aten
_EXACT_FLOAT32 = 2**24  # integers up to this are exact in float32

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


@dataclass
class _Operand:
    kind: str  # "binary", "int" or "real"
    max: float


def classify(x: torch.Tensor) -> _Operand:
    """Binary {0,1}, small non-negative integer, or real: the rule's three cases."""
    if x.dtype == torch.bool:
        return _Operand("binary", 1.0)
    if x.numel() == 0 or x.is_complex():
        return _Operand("real", 0.0)
    lo, hi = (float(v) for v in torch.aminmax(x))
    if not (lo >= 0 and hi <= SMALL_INT_MAX):  # also false for NaN
        return _Operand("real", hi)
    # x >= 0 here, so every fractional part is >= 0 and their sum is 0 only if all of them are
    if x.is_floating_point() and float(torch.frac(x).sum()) != 0:
        return _Operand("real", hi)
    return _Operand("binary" if hi <= 1 else "int", hi)


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


def _count_dtype(largest: float) -> torch.dtype:
    """float32 sums of integers are exact below 2**24 (and far faster than float64 on CPU)."""
    return torch.float32 if largest < _EXACT_FLOAT32 else torch.float64


def _exact_sum(x: torch.Tensor, largest_value: float, dim: int | None = None) -> torch.Tensor:
    """Sum of a tensor of non-negative integers, exactly."""
    terms = x.numel() if dim is None else x.shape[dim]
    dtype = _count_dtype(terms * largest_value)
    return x.sum(dtype=dtype) if dim is None else x.sum(dim, dtype=dtype)


@dataclass
class _Term:
    """One operand as the rule sees it: what it contributes to each product it takes part in."""

    x: torch.Tensor
    operand: _Operand
    values: bool  # its values (the integer operand of an ac_int), else 1 where nonzero

    @property
    def largest(self) -> float:
        return self.operand.max if self.values else 1.0

    def tensor(self, dtype: torch.dtype) -> torch.Tensor:
        # a binary operand is its own nonzero mask: no copy
        t = self.x if self.values or self.operand.kind == "binary" else self.x != 0
        return t if t.dtype == dtype else t.to(dtype)

    def nonzero(self) -> int:
        """Nonzero entries of a binary or integer operand (its firing rate's numerator)."""
        mask = self.x if self.operand.max <= 1 else self.x.clamp(max=1)
        return int(_exact_sum(mask, 1.0))


@dataclass
class _Charge:
    """What one op call costs under the rule."""

    kind: str  # mac | ac | ac_int
    dense: int
    effective: int
    operand_nonzero: int = 0  # of the binary / integer operand, for its firing rate
    operand_numel: int = 0


def _terms(a: torch.Tensor, b: torch.Tensor) -> tuple[str, _Term, _Term, _Term | None]:
    """The rule's kind, each operand's term, and the operand whose firing rate is reported."""
    ka, kb = classify(a), classify(b)
    if ka.kind == "binary" or kb.kind == "binary":
        ta, tb = _Term(a, ka, False), _Term(b, kb, False)
        return "ac", ta, tb, ta if ka.kind == "binary" else tb
    if ka.kind == "int":
        ta = _Term(a, ka, True)
        return "ac_int", ta, _Term(b, kb, False), ta
    if kb.kind == "int":
        tb = _Term(b, kb, True)
        return "ac_int", _Term(a, ka, False), tb, tb
    return "mac", _Term(a, ka, False), _Term(b, kb, False), None


def _charge(kind: str, dense: int, effective: int, rated: _Term | None) -> _Charge:
    if rated is None:
        return _Charge(kind, dense, effective)
    return _Charge(kind, dense, effective, rated.nonzero(), rated.x.numel())


def _matmul_charge(a: torch.Tensor, b: torch.Tensor) -> _Charge:
    """``a [..., m, k] @ b [..., k, n]`` with matmul broadcasting over the leading dims."""
    if a.dim() == 1:
        a = a.unsqueeze(0)
    if b.dim() == 1:
        b = b.unsqueeze(-1)
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    batch = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    dense = math.prod(batch) * m * k * n
    kind, ta, tb, rated = _terms(a, b)
    if kind == "mac":
        return _Charge(kind, dense, dense)

    def per_k(term: _Term, dim: int) -> torch.Tensor:
        largest = term.x.shape[dim] * term.largest
        return term.tensor(_count_dtype(largest)).sum(dim).to(torch.float64)

    # sum over k of (a's column k) x (b's row k): every pair once, batch dims broadcast
    effective = int((per_k(ta, -2) * per_k(tb, -1)).sum())
    return _charge(kind, dense, effective, rated)


class _ConvCall:
    """One convolution call, re-run on count tensors with the same stride/padding/groups."""

    def __init__(self, func, bound: dict[str, Any]):
        self.func, self.bound = func, bound
        self.x, self.w = bound["input"], bound["weight"]
        name = func.overloadpacket.__name__
        self.transposed = bool(bound.get("transposed", False)) or name.startswith("conv_transpose")
        self.groups = int(bound.get("groups", 1))
        self.batched = self.x.dim() == self.w.dim()
        # products one output entry of the counting convolution can sum
        in_channels = self.x.shape[1 if self.batched else 0]
        self.fan_in = in_channels // (1 if self.transposed else self.groups) * math.prod(self.w.shape[2:])

    def group_counts(self, w_term: torch.Tensor) -> torch.Tensor:
        """Per (group, input channel, tap): summed over the output channels of the group, so a
        convolution with one output channel per group counts products instead of computing."""
        if self.transposed:  # weight [C_in, C_out/g, *k]
            return w_term.sum(1, keepdim=True)
        g = self.groups
        return w_term.reshape(g, w_term.shape[0] // g, *w_term.shape[1:]).sum(1)

    def total(self, x_term: torch.Tensor, w_counts: torch.Tensor) -> int:
        out = self.func(**{**self.bound, "input": x_term, "weight": w_counts, "bias": None})
        return int(out.sum(dtype=torch.float64))

    def dense(self) -> int:
        """Products if every entry were nonzero: valid taps (padding excluded) x channels,
        from one sample of ones (every sample has the same shape)."""
        one = self.x[:1] if self.batched else self.x
        ones = torch.ones(one.shape, dtype=torch.float64, device=one.device)
        counts = self.group_counts(torch.ones(self.w.shape, dtype=torch.float64, device=one.device))
        return self.total(ones, counts) * (self.x.shape[0] if self.batched else 1)


def _conv_charge(func, bound: dict[str, Any]) -> _Charge:
    call = _ConvCall(func, bound)
    dense = call.dense()
    kind, tx, tw, rated = _terms(call.x, call.w)
    if kind == "mac":
        return _Charge(kind, dense, dense)
    w_counts = call.group_counts(tw.tensor(torch.float64))
    dtype = _count_dtype(tx.largest * float(w_counts.max()) * call.fan_in)
    effective = call.total(tx.tensor(dtype), w_counts.to(dtype))
    return _charge(kind, dense, effective, rated)


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
                charge = _conv_charge(func, bound)
            else:
                left, right = _MATMUL_OPERANDS[packet]
                b = bound[right].t() if packet is aten.linear else bound[right]
                a = bound[left]
                if packet is aten.linear and a.dim() > 2:
                    a = a.reshape(-1, a.shape[-1])
                charge = _matmul_charge(a, b)
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
    head = splits.test
    if isinstance(head, torch.utils.data.TensorDataset):  # stays on the sliced fast path
        head = torch.utils.data.TensorDataset(*(t[:n] for t in head.tensors))
    else:
        head = torch.utils.data.Subset(head, range(n))

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
