"""The counting rule (id `stxbench.record.COUNT_RULE`): what one synaptic op costs.

Per op ``a (x) b`` (DESIGN.md, "Operation counts and energy"), decided per call over each whole
operand tensor:

* an operand is **binary** (every value 0 or 1): ``ac``, counted as nonzero pairs, the
  products whose two factors are both nonzero (so a pruned weight or a silent neuron costs
  nothing);
* otherwise an operand holds **small non-negative integers** (at most `SMALL_INT_MAX`, e.g. a
  residual stream 0, 1, 2, ...): ``ac_int``, counted as value x nonzero fan-out (an input 2
  meeting a nonzero weight is two accumulates), reported apart;
* otherwise ``mac``: every product of the op (the real-valued first layer, the head, the second
  factor of a low-rank pair), each time (each time step) it runs.

"Products" are pairs of real operand entries: a convolution's zero padding is not an operand,
so border outputs have fewer products (SpikingJelly's and Spikformer's MAC counters count the
padded taps too). ``dense`` is the product count as if every operand entry were nonzero.

Counting stays a small fraction of the op it counts: matmuls use column/row sums
(``sum_k col(a)[k] * row(b)[k]``, batch dims broadcast), convolutions one convolution of the
input mask with the per-group count of nonzero weights (one output channel per group). Sums of
integers run in float32 where that is exact (below 2**24), else in float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

#: largest value an integer operand may hold and still count as integer ACs
SMALL_INT_MAX = 255
_EXACT_FLOAT32 = 2**24  # integers up to this are exact in float32


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
class Charge:
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


def _charge(kind: str, dense: int, effective: int, rated: _Term | None) -> Charge:
    if rated is None:
        return Charge(kind, dense, effective)
    return Charge(kind, dense, effective, rated.nonzero(), rated.x.numel())


def matmul_charge(a: torch.Tensor, b: torch.Tensor) -> Charge:
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
        return Charge(kind, dense, dense)

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


def conv_charge(func, bound: dict[str, Any]) -> Charge:
    call = _ConvCall(func, bound)
    dense = call.dense()
    kind, tx, tw, rated = _terms(call.x, call.w)
    if kind == "mac":
        return Charge(kind, dense, dense)
    w_counts = call.group_counts(tw.tensor(torch.float64))
    dtype = _count_dtype(tx.largest * float(w_counts.max()) * call.fan_in)
    if call.x.device.type != "cpu":  # GPU float32 convolutions may run in TF32, which rounds
        dtype = torch.float64
    effective = call.total(tx.tensor(dtype), w_counts.to(dtype))
    return _charge(kind, dense, effective, rated)
