"""What one synaptic op call holds, per sample: the raw counts every counting convention needs.

An op ``a (x) b`` (a matmul or a convolution; ``a`` the activation, ``b`` a weight or another
activation) is described, for the samples whose operands are of the same kinds, by:

* the **kind** of each operand (`KINDS`), decided *per sample*: ``binary`` (every value 0 or
  1), ``signed`` ({-1, 0, 1} with a -1), ``int`` (non-negative integers up to `SMALL_INT_MAX`,
  one above 1: a residual stream 0, 1, 2, ...) or ``real``. A weight's kind is decided over the
  whole weight. A sample's kinds, and so its counts, never depend on the other samples of its
  batch;
* ``nonzero_pairs``: products whose two factors are both nonzero;
* ``value_pairs``: for an ``int`` operand, its value summed over the products whose other
  factor is nonzero (an input 2 meeting a nonzero weight is two accumulates);
* ``driven_pairs``: when exactly one operand is binary, the products its nonzero entries take
  part in, zero partners included (SpikingJelly's SynOps);
* ``dense``: every product of real operand entries (a convolution's zero padding is not an
  operand entry); ``dense_padded``: with the taps on zero padding too (SpikingJelly's MACs);
* the rated operand's nonzero entries (its firing rate) and the weight entries read.

`stxbench.measure.conventions` turns these into MACs and ACs under a named rule; `stxbench_kind` is
this project's own rule (id ``stxbench-ops-v1``).

**Which sample an entry belongs to.** Tensors are time-first (``[T, B, ...]``, docs/methods.md)
and reach the ops flattened: a Linear sees ``[T*B*N, C]``, attention ``[T*B*H, N, d]``, a
convolution ``[T*B, C, H, W]``, the head ``[B, C]``. The leading index ``i`` of an activation
of ``L`` entries belongs to sample ``(i // inner) % B`` with ``inner = L / (T*B)`` when ``T*B``
divides ``L``, else ``i // (L / B)`` (batch-first, after time is reduced). An op whose
activation has no whole number of entries per sample is decided over the whole call.

Counting stays a small fraction of the op it counts: per-sample min/max, matrix-vector
products with nonzero counts, one convolution of the input mask with per-group nonzero weight
counts. Sums of integers run in float32 where that is exact (below 2**24), else in float64.
"""

from __future__ import annotations

import functools
import math
import weakref
from dataclasses import dataclass
from typing import Any

import torch

#: largest value an integer operand may hold and still count as integer ACs
SMALL_INT_MAX = 255
_EXACT_FLOAT32 = 2**24  # integers up to this are exact in float32

KINDS = ("binary", "signed", "int", "real")
BINARY, SIGNED, INT, REAL = range(4)


def stxbench_kind(a_kind: str, b_kind: str) -> str:
    """This project's rule: a binary operand makes accumulates, else an integer one integer
    accumulates, else multiply-accumulates (``signed`` counts as real: it has negatives)."""
    if "binary" in (a_kind, b_kind):
        return "ac"
    if "int" in (a_kind, b_kind):
        return "ac_int"
    return "mac"


@dataclass
class _Operand:
    kind: str
    max: float


def classify(x: torch.Tensor) -> _Operand:
    """The kind of a whole tensor (a weight, or an operand with no per-sample structure)."""
    if x.dtype == torch.bool:
        return _Operand("binary", 1.0)
    if x.numel() == 0 or x.is_complex():
        return _Operand("real", 0.0)
    lo, hi = (float(v) for v in torch.aminmax(x))
    if not (lo >= -1 and hi <= SMALL_INT_MAX):  # also false for NaN
        return _Operand("real", hi)
    if x.is_floating_point() and _has_fraction(x, lo):
        return _Operand("real", hi)
    if lo < 0:
        return _Operand("signed" if hi <= 1 else "real", hi)
    return _Operand("binary" if hi <= 1 else "int", hi)


def _has_fraction(x: torch.Tensor, lo: float) -> bool:
    # non-negative values have fractional parts in [0, 1): their sum is 0 only if each is
    # (a sum of non-negative floats cannot cancel), and a sum is faster than any()
    fractions = torch.frac(x)
    return bool(fractions.sum() != 0) if lo >= 0 else bool(fractions.any())


class Memo:
    """Kinds already decided in this forward pass, per operand (the same residual stream feeds
    q, k and v): keyed by the tensor a view was taken of, its view and its version, and valid
    while that tensor lives."""

    def __init__(self):
        self._entries: dict[tuple, tuple] = {}

    def clear(self) -> None:
        self._entries.clear()

    @staticmethod
    def _key(x: torch.Tensor, tag: object) -> tuple[tuple, torch.Tensor]:
        base = x._base if x._base is not None else x
        return (id(base), x.storage_offset(), tuple(x.shape), tuple(x.stride()), x._version, x.dtype, tag), base

    def get(self, x: torch.Tensor, tag: object, compute):
        if x.is_inference():  # no version counter to tell an in-place change
            return compute()
        key, base = self._key(x, tag)
        hit = self._entries.get(key)
        if hit is not None and hit[0]() is base:
            return hit[1]
        value = compute()
        self._entries[key] = (weakref.ref(base), value)
        return value


@dataclass(frozen=True)
class Layout:
    """Leading index ``i`` of an activation -> sample ``(i // inner) % batch``; ``steps`` is
    how many times (time steps) the op runs per sample."""

    steps: int
    batch: int
    inner: int

    def per_sample_rows(self, t: torch.Tensor) -> torch.Tensor:
        """``t [steps * batch * inner, S]`` summed into ``[batch, S]``."""
        return t.reshape(self.steps, self.batch, self.inner, -1).sum((0, 2))


def layout(leading: int, batch: int, time_steps: int) -> Layout | None:
    """Time-first ``[T, B, inner]`` when ``T*B`` divides ``leading``, else batch-first
    ``[B, inner]``; None when ``B`` does not divide it (or nothing is known about samples)."""
    if leading <= 0 or batch < 1:
        return None
    if time_steps >= 1 and leading % (time_steps * batch) == 0:
        return Layout(time_steps, batch, leading // (time_steps * batch))
    if leading % batch == 0:
        return Layout(1, batch, leading // batch)
    return None


def sample_kinds(x: torch.Tensor, lay: Layout) -> torch.Tensor:
    """Kind code (`KINDS` index) of each sample's part of ``x`` (leading dim per `Layout`).
    Whole-tensor bounds first: a tensor of spikes costs one min/max and one fraction test."""
    full = lambda code: torch.full((lay.batch,), code, dtype=torch.int64)  # noqa: E731
    if x.dtype == torch.bool:
        return full(BINARY)
    if x.numel() == 0 or x.is_complex():
        return full(REAL)
    v = x.reshape(lay.steps, lay.batch, lay.inner, -1)
    dims = (0, 2, 3)
    lo, hi = (float(t) for t in torch.aminmax(x))
    small = lo >= -1 and hi <= SMALL_INT_MAX  # also false for NaN
    if small:
        # a sample is integral where its fractional parts sum to 0 (|.| for negatives)
        if x.is_floating_point():
            fractions = torch.frac(v)
            integral = (fractions if lo >= 0 else fractions.abs()).sum(dims).cpu() == 0
        else:
            integral = torch.ones(lay.batch, dtype=torch.bool)
        if bool(integral.all()):
            if lo >= 0 and hi <= 1:
                return full(BINARY)
            if lo >= 0:  # non-negative integers: binary where the sample's max is <= 1
                return torch.where(v.amax(dims).cpu() <= 1, BINARY, INT)
            if hi <= 1:
                return torch.where(v.amin(dims).cpu() < 0, SIGNED, BINARY)
    lo_s, hi_s = v.amin(dims).cpu().double(), v.amax(dims).cpu().double()
    candidate = (lo_s >= -1) & (hi_s <= SMALL_INT_MAX)
    codes = torch.full((lay.batch,), REAL, dtype=torch.int64)
    if not bool(candidate.any()):
        return codes
    if not small:  # the whole tensor was out of range: the fraction test is still to do
        if x.is_floating_point():
            integral = torch.frac(v).abs().sum(dims).cpu() == 0
        else:
            integral = torch.ones(lay.batch, dtype=torch.bool)
    ok = candidate & integral
    codes[ok & (lo_s >= 0) & (hi_s > 1)] = INT
    codes[ok & (lo_s >= 0) & (hi_s <= 1)] = BINARY
    codes[ok & (lo_s < 0) & (hi_s <= 1)] = SIGNED
    return codes


def _count_dtype(largest: float) -> torch.dtype:
    """float32 sums of integers are exact below 2**24 (and far faster than float64 on CPU)."""
    return torch.float32 if largest < _EXACT_FLOAT32 else torch.float64


def _mask(x: torch.Tensor, codes: set[int], dtype: torch.dtype) -> torch.Tensor:
    """1 where ``x`` is nonzero, in ``dtype``; a binary tensor is its own mask (no copy)."""
    if codes <= {BINARY} and x.dtype != torch.bool:
        return x if x.dtype == dtype else x.to(dtype)
    out = torch.empty(x.shape, dtype=dtype, device=x.device)
    return torch.ne(x, 0, out=out)  # straight into dtype: far faster than a bool copy converted


def _as(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return x if x.dtype == dtype else x.to(dtype)


#: the per-sample counts of an op group, as stored in `stxbench.record.schema.OpCount`
STATS = ("nonzero_pairs", "value_pairs", "driven_pairs", "dense", "dense_padded",
         "rated_numel", "rated_nonzero", "weight_reads", "weight_nonzero_reads")


@dataclass
class GroupCharge:
    """Integer counts of one op call, summed over the samples whose operands have kinds (a, b)."""

    a_kind: str
    b_kind: str
    values: dict[str, int]


class _Items:
    """Raw statistics per item (leading entry of the activation), resolved per (a kind, b kind)
    group of samples. A statistic is a tensor ``[items]`` or a number (the same for each item):

    ``pairs``, ``value_a`` (a's values x b nonzero), ``value_b``, ``nnz_a``, ``nnz_b``,
    ``numel_a``, ``numel_b``, ``fan_a`` (products a's nonzeros take part in), ``fan_b``,
    ``dense``, ``dense_padded``, ``weight_reads``, ``weight_nonzero_reads``."""

    def __init__(self, lay: Layout | None, count: int):
        self.lay, self.count = lay, count
        self.stats: dict[str, torch.Tensor | float] = {}

    def add(self, name: str, value: torch.Tensor | float) -> None:
        self.stats[name] = value

    def groups(self, ka: torch.Tensor, kb: torch.Tensor) -> list[GroupCharge]:
        names = list(self.stats)
        tensors = [n for n in names if torch.is_tensor(self.stats[n])]
        pairs = ka * 4 + kb
        uniform = self.lay is None or bool((pairs == pairs[0]).all())
        if uniform:
            sums = (torch.stack([_as(self.stats[n], torch.float64) for n in tensors]).sum(1).tolist()
                    if tensors else [])
            totals = dict(zip(tensors, sums))
            for n in names:
                if n not in totals:
                    totals[n] = self.stats[n] * self.count
            return [_resolve(int(ka[0]), int(kb[0]), totals)]
        # kinds differ between the samples of this call: fold items into samples, then sum
        # each group's samples
        stacked = torch.stack([
            _as(self.stats[n], torch.float64) if n in tensors
            else torch.full((self.count,), float(self.stats[n]), dtype=torch.float64,
                            device=self.stats[tensors[0]].device if tensors else None)
            for n in names
        ], 1)  # [items, stats]
        per_sample = self.lay.per_sample_rows(stacked).cpu()  # [batch, stats]
        out = []
        for code in torch.unique(pairs).tolist():
            sums = per_sample[pairs == code].sum(0).tolist()
            out.append(_resolve(code // 4, code % 4, dict(zip(names, sums))))
        return out


def _resolve(ka: int, kb: int, s: dict[str, float]) -> GroupCharge:
    """The stored counts of a group of samples whose operands have kinds ``ka``, ``kb``."""
    get = lambda name: s.get(name, 0.0)  # noqa: E731
    value = get("value_a") if ka == INT else get("value_b") if kb == INT else 0.0
    driven = (get("fan_a") if ka == BINARY and kb != BINARY
              else get("fan_b") if kb == BINARY and ka != BINARY else 0.0)
    # the rule's rated operand: the binary one (a if both), else the integer one, else a
    rate_b = (kb == BINARY and ka != BINARY) or (kb == INT and ka not in (BINARY, INT))
    side = "b" if rate_b else "a"
    values = {
        "nonzero_pairs": get("pairs"), "value_pairs": value, "driven_pairs": driven,
        "dense": get("dense"), "dense_padded": get("dense_padded"),
        "rated_numel": get(f"numel_{side}"), "rated_nonzero": get(f"nnz_{side}"),
        "weight_reads": get("weight_reads"), "weight_nonzero_reads": get("weight_nonzero_reads"),
    }
    return GroupCharge(KINDS[ka], KINDS[kb], {k: round(v) for k, v in values.items()})


def _kinds(x: torch.Tensor, lay: Layout | None, memo: Memo | None = None,
           alias: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample kind codes of ``x``; ``alias``: a tensor holding the same values in the same
    order (an nn.Linear's input, which its matmul operand is a flattened copy of), under which
    the result is remembered, so that q, k and v decide their shared input once."""
    def compute() -> torch.Tensor:
        if lay is None:
            return torch.tensor([KINDS.index(classify(x).kind)])
        return sample_kinds(x, lay)

    return compute() if memo is None else memo.get(x if alias is None else alias, lay, compute)


def _kind_of(x: torch.Tensor, memo: Memo | None = None) -> int:
    """Kind code of a whole tensor (a weight)."""
    def compute() -> int:
        return KINDS.index(classify(x).kind)

    return compute() if memo is None else memo.get(x, "whole", compute)


def _weights(items: _Items, weight: torch.Tensor, per_item: float, nonzero: int | None = None) -> None:
    """Weight entries read: ``per_item`` whole weights per item."""
    nonzero = int(torch.count_nonzero(weight)) if nonzero is None else nonzero
    items.add("weight_reads", weight.numel() * per_item)
    items.add("weight_nonzero_reads", nonzero * per_item)


def _reads_per_item(lay: Layout | None, count: int) -> float:
    """A weight is read once per time step per sample: ``steps * batch`` reads over the items."""
    return lay.steps * lay.batch / count if lay else 1 / count


def matmul_charges(a: torch.Tensor, b: torch.Tensor, batch: int, time_steps: int,
                   b_is_weight: bool, memo: Memo | None = None,
                   alias: torch.Tensor | None = None) -> list[GroupCharge]:
    """``a [..., m, k] @ b [..., k, n]`` (matmul broadcasting); ``a`` is the activation whose
    leading entries belong to samples (see `Layout`)."""
    if a.dim() == 1:
        a = a.unsqueeze(0)
    if b.dim() == 1:
        b = b.unsqueeze(-1)
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    if a.dim() == 2 and b.dim() == 2:
        return _rows_charges(a, b, batch, time_steps, b_is_weight, memo, alias)
    shape = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    count = math.prod(shape)
    a3 = a.expand(*shape, m, k).reshape(count, m, k)
    b_items = b.dim() > 2  # one matrix per item (broadcast dims expanded), else one for all
    b3 = b.expand(*shape, k, n).reshape(count, k, n) if b_items else b.reshape(1, k, n)
    lay = layout(count, batch, time_steps)
    ka = _kinds(a3, lay, memo)
    kb = (_kinds(b3, lay, memo) if b_items and not b_is_weight
          else torch.full_like(ka, _kind_of(b3, memo)))
    codes_a, codes_b = set(ka.tolist()), set(kb.tolist())
    items = _Items(lay, count)
    largest = SMALL_INT_MAX if INT in codes_a | codes_b else 1
    col_nz_a = _mask(a3, codes_a, _count_dtype(m * largest)).sum(1)  # [L, k]
    row_nz_b = _mask(b3, codes_b, _count_dtype(n * largest)).sum(2)  # [L or 1, k]
    items.add("pairs", (_as(col_nz_a, torch.float64) * _as(row_nz_b, torch.float64)).sum(1))
    if INT in codes_a:
        col_val_a = _as(a3, _count_dtype(m * largest)).sum(1)
        items.add("value_a", (_as(col_val_a, torch.float64) * _as(row_nz_b, torch.float64)).sum(1))
    if INT in codes_b:
        row_val_b = _as(b3, _count_dtype(n * largest)).sum(2)
        items.add("value_b", (_as(col_nz_a, torch.float64) * _as(row_val_b, torch.float64)).sum(1))
    nnz_a = col_nz_a.sum(1, dtype=torch.float64)
    nnz_b = row_nz_b.sum(1, dtype=torch.float64)
    nnz_b = nnz_b if b_items else float(nnz_b[0])
    items.add("nnz_a", nnz_a)
    items.add("numel_a", float(m * k))
    items.add("nnz_b", nnz_b)
    items.add("numel_b", float(k * n))
    if BINARY in codes_a and codes_b - {BINARY}:
        items.add("fan_a", nnz_a * n)  # a spike meets a whole row of b, zeros included
    if BINARY in codes_b and codes_a - {BINARY}:
        items.add("fan_b", nnz_b * m)
    items.add("dense", float(m * k * n))
    items.add("dense_padded", float(m * k * n))
    if b_is_weight:
        _weights(items, b3[0], _reads_per_item(lay, count))
    return items.groups(ka, kb)


def _rows_charges(a: torch.Tensor, b: torch.Tensor, batch: int, time_steps: int,
                  b_is_weight: bool, memo: Memo | None = None,
                  alias: torch.Tensor | None = None) -> list[GroupCharge]:
    """2-D ``a [R, k] @ b [k, n]``: each row of ``a`` is one item (a token at a time step)."""
    rows, k = a.shape
    n = b.shape[1]
    lay = layout(rows, batch, time_steps)
    same = alias is not None and alias.dtype == a.dtype and alias.numel() == a.numel() \
        and alias.dim() > 0 and alias.shape[-1] == a.shape[-1]
    ka = _kinds(a, lay, memo, alias if same else None)
    code_b = _kind_of(b, memo)
    kb = torch.full_like(ka, code_b)
    codes_a = set(ka.tolist())
    items = _Items(lay, rows)
    dt = _count_dtype(k * n * (SMALL_INT_MAX if INT in codes_a | {code_b} else 1))
    row_nz_b = _mask(b, {code_b}, dt).sum(1)  # [k]: nonzero entries of b per input feature
    mask_a = _mask(a, codes_a, dt)
    items.add("pairs", mask_a @ row_nz_b)
    if INT in codes_a:
        items.add("value_a", _as(a, dt) @ row_nz_b)
    if code_b == INT:
        items.add("value_b", mask_a @ _as(b, dt).sum(1))
    nnz_a = mask_a.sum(1)  # exact in dt: at most k
    items.add("nnz_a", nnz_a)
    items.add("numel_a", float(k))
    items.add("nnz_b", float(row_nz_b.sum(dtype=torch.float64)))
    items.add("numel_b", float(k * n))
    if BINARY in codes_a and code_b != BINARY:
        items.add("fan_a", nnz_a * n)
    if code_b == BINARY and codes_a - {BINARY}:
        items.add("fan_b", items.stats["nnz_b"])  # a row of a meets each nonzero of b once
    items.add("dense", float(k * n))
    items.add("dense_padded", float(k * n))
    if b_is_weight:
        _weights(items, b, _reads_per_item(lay, rows), round(items.stats["nnz_b"]))
    return items.groups(ka, kb)


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

    def per_item(self, x_term: torch.Tensor, w_counts: torch.Tensor) -> torch.Tensor:
        """Products per leading entry of the input, float64 ``[items]``."""
        out = self.func(**{**self.bound, "input": x_term, "weight": w_counts, "bias": None})
        if not self.batched:
            return out.sum(dtype=torch.float64).reshape(1)
        return out.sum(dim=tuple(range(1, out.dim())), dtype=torch.float64)

    def dense(self) -> int:
        """Products per item if every entry were nonzero: valid taps (padding excluded) x
        channels, from one sample of ones (every sample has the same shape)."""
        one = self.x[:1] if self.batched else self.x
        ones = torch.ones(one.shape, dtype=torch.float64, device=one.device)
        counts = self.group_counts(torch.ones(self.w.shape, dtype=torch.float64, device=one.device))
        return int(self.per_item(ones, counts).sum())

    def reach(self, out_shape: torch.Size) -> torch.Tensor | None:
        """Per input position, the (output, tap) pairs of one channel that read it (a product
        over the axes), or None where the geometry is not plain integers per axis."""
        lead = 2 if self.batched else 1
        spatial, out, kernel = self.x.shape[lead:], out_shape[lead:], self.w.shape[2:]
        d = len(spatial)
        geometry = []
        for name in ("stride", "padding", "dilation"):
            value = self.bound.get(name, 1 if name != "padding" else 0)
            if isinstance(value, str):
                return None
            value = list(value) if isinstance(value, (list, tuple, torch.Size)) else [value]
            geometry.append(value * d if len(value) == 1 else value)
        reach = torch.ones((), dtype=torch.float64)
        for axis in range(d):
            stride, pad, dil = (g[axis] for g in geometry)
            per_axis = torch.tensor(_axis_reach(spatial[axis], out[axis], kernel[axis], stride, pad, dil),
                                    dtype=torch.float64)
            reach = reach.unsqueeze(-1) * per_axis
        return reach.to(self.x.device)

    def per_item_dense_weights(self, x_term: torch.Tensor, reach: torch.Tensor) -> torch.Tensor:
        """`per_item` for a weight without zeros: every (input channel, tap) meets ``C_out/g``
        nonzero weights, so the products are the channel sum of ``x_term`` weighted by `reach`
        (one pass over the input instead of a convolution over all its channels)."""
        x_items = x_term if self.batched else x_term.unsqueeze(0)
        channel_sum = x_items.sum(1)  # [items, *spatial], exact: at most C_in x 255
        weighted = channel_sum.to(torch.float64) * reach
        return weighted.sum(dim=tuple(range(1, weighted.dim()))) * (self.w.shape[0] // self.groups)

    def positions(self, out_shape: torch.Size) -> int:
        """Output positions per item (input positions for a transposed convolution)."""
        lead = 2 if self.batched else 1
        return math.prod(self.x.shape[lead:] if self.transposed else out_shape[lead:])


@functools.lru_cache(maxsize=1024)
def _axis_reach(size_in: int, size_out: int, kernel: int, stride: int, pad: int, dil: int) -> list[int]:
    """How many (output, tap) pairs read each input position along one axis."""
    reach = [0] * size_in
    for o in range(size_out):
        for t in range(kernel):
            p = o * stride - pad + t * dil
            if 0 <= p < size_in:
                reach[p] += 1
    return reach


def conv_charges(func, bound: dict[str, Any], out_shape: torch.Size, batch: int, time_steps: int,
                 w_is_weight: bool, memo: Memo | None = None) -> list[GroupCharge]:
    """A convolution: its input's leading entries (``[T*B, C, ...]``) are the items."""
    call = _ConvCall(func, bound)
    x, w = call.x, call.w
    x_items = x if call.batched else x.unsqueeze(0)
    count = x_items.shape[0]
    lay = layout(count, batch, time_steps) if call.batched else None
    ka = _kinds(x_items, lay, memo)
    code_b = _kind_of(w, memo)
    kb = torch.full_like(ka, code_b)
    codes_a = set(ka.tolist())
    items = _Items(lay, count)
    w_mask_counts = call.group_counts(_mask(w, {code_b}, torch.float64))
    largest = SMALL_INT_MAX if INT in codes_a | {code_b} else 1
    peak = float(w_mask_counts.max()) if w.numel() else 0.0
    dtype = _count_dtype(largest * peak * call.fan_in)
    if x.device.type != "cpu":  # GPU float32 convolutions may run in TF32, which rounds
        dtype = torch.float64
    w_counts = w_mask_counts.to(dtype)
    mask_x = _mask(x, codes_a, dtype)
    nnz_w = float(torch.count_nonzero(w))
    # a weight without zeros (convolutions are not pruned here): no counting convolution needed
    reach = (call.reach(out_shape) if nnz_w == w.numel() and not call.transposed and code_b != INT
             else None)
    products = ((lambda t: call.per_item_dense_weights(t, reach)) if reach is not None
                else (lambda t: call.per_item(t, w_counts)))
    pairs = products(mask_x)
    items.add("pairs", pairs)
    if INT in codes_a:
        items.add("value_a", products(_as(x, dtype)))
    if code_b == INT:
        items.add("value_b", call.per_item(mask_x, call.group_counts(_as(w, torch.float64)).to(dtype)))
    per = x_items[0].numel() if count else 0
    items.add("nnz_a", mask_x.reshape(count, -1).sum(1, dtype=_count_dtype(per)))
    items.add("numel_a", float(x_items[0].numel()))
    items.add("nnz_b", nnz_w)
    items.add("numel_b", float(w.numel()))
    if BINARY in codes_a and code_b != BINARY:
        # a spike meets every weight of its fan-out, zero or not
        full = nnz_w == w.numel()
        items.add("fan_a", pairs if full else call.per_item(
            mask_x, call.group_counts(torch.ones(w.shape, dtype=dtype, device=w.device))))
    if code_b == BINARY and codes_a - {BINARY}:
        items.add("fan_b", nnz_w * call.positions(out_shape))
    items.add("dense", float(call.dense()))
    items.add("dense_padded", float(w.numel() * call.positions(out_shape)))
    if w_is_weight:
        _weights(items, w, _reads_per_item(lay, count), int(nnz_w))
    return items.groups(ka, kb)
