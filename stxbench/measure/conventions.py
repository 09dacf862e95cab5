"""Named counting conventions: how the raw per-op counts of a record become MACs and ACs.

The counter (`stxbench.measure.counting`) stores, per op and per kind of its operands, everything these
rules need (`stxbench.record.schema.OpCount`), so that every convention is computed from one counting
pass, and a new one needs no re-run:

``stxbench`` (rule ``stxbench-ops-v1``, the default)
    a binary operand -> ACs, nonzero pairs only (a silent neuron or a pruned weight costs
    nothing); else an integer operand (residual streams 0, 1, 2, ...) -> integer ACs, value x
    nonzero fan-out; else MACs, every product (padding excluded). BatchNorm is not counted.

``spikingjelly`` (SpikingJelly 2.0, ``activation_based.op_counter``: ``SynOpCounter`` for ACs,
``MACCounter`` for MACs)
    both operands binary -> ACs, nonzero pairs; one binary -> ACs = its spikes x their full
    fan-out, zero weights included; neither -> dense MACs, a convolution's taps on zero padding
    included; BatchNorm with affine parameters -> one MAC per element.

``neurobench`` (NeuroBench 2.3, ``metrics.workload.SynapticOperations`` through
``single_layer_MACs``)
    only ``nn.Linear`` and ``nn.Conv1d/2d/3d`` layers (attention matmuls are not counted); a
    layer whose input holds only {-1, 0, 1} -> ACs, else MACs, both as effective operations:
    nonzero input x nonzero weight pairs (padding excluded); BatchNorm is not counted.

The libraries decide "binary" over each call's whole input tensor; here every kind is decided per
sample (`stxbench.measure.op_rules`), so the conventions equal the libraries' counters on any batch whose
samples agree in kind (always, for a batch of one) and never let a sample's count depend on its
batch. ``tests/test_counting_conventions.py`` holds both foreign conventions to the libraries'
own counters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from stxbench.run.errors import unknown_choice
from stxbench.measure.op_rules import stxbench_kind
from stxbench.record.schema import BatchNormCount, Counts, OpCount

#: layer classes NeuroBench counts (neurobench.blocks.layer.STATELESS_LAYERS)
NEUROBENCH_LAYERS = frozenset({"Linear", "Conv1d", "Conv2d", "Conv3d"})


def _stxbench(op: OpCount) -> tuple[str, float] | None:
    kind = stxbench_kind(op.a_kind, op.b_kind)
    return kind, {"ac": op.nonzero_pairs, "ac_int": op.value_pairs, "mac": op.dense}[kind]


def _spikingjelly(op: OpCount) -> tuple[str, float] | None:
    a, b = op.a_kind == "binary", op.b_kind == "binary"
    if a and b:
        return "ac", op.nonzero_pairs
    if a or b:
        return "ac", op.driven_pairs
    return "mac", op.dense_padded


def _neurobench(op: OpCount) -> tuple[str, float] | None:
    if op.module_type not in NEUROBENCH_LAYERS:
        return None
    return ("ac" if op.a_kind in ("binary", "signed") else "mac"), op.nonzero_pairs


@dataclass(frozen=True)
class Convention:
    name: str
    summary: str
    source: str
    #: an op's kind ("mac", "ac", "ac_int") and count per sample, or None when not counted
    charge: Callable[[OpCount], tuple[str, float] | None]
    #: MACs per sample a BatchNorm layer is charged
    batchnorm: Callable[[BatchNormCount], float] = field(default=lambda bn: 0.0)


CONVENTIONS: dict[str, Convention] = {
    c.name: c for c in (
        Convention(
            "stxbench", "binary operand: nonzero pairs as ACs; integer operand: value x nonzero "
            "fan-out as integer ACs; else dense MACs (no padding, no BN)",
            "this project, rule stxbench-ops-v1 (stxbench/measure/op_rules.py)", _stxbench,
        ),
        Convention(
            "spikingjelly", "binary input: spikes x full fan-out as ACs (zero weights included); "
            "else dense MACs with padded taps; affine BatchNorm as MACs",
            "spikingjelly 2.0.0 activation_based.op_counter: SynOpCounter (ac.py _spike_mm, "
            "_spike_convolution) + MACCounter (mac.py _mac_mm, _mac_convolution, "
            "_mac_native_batch_norm)", _spikingjelly,
            batchnorm=lambda bn: bn.elements if bn.affine else 0.0,
        ),
        Convention(
            "neurobench", "Linear/Conv layers only; input in {-1,0,1}: ACs, else MACs; nonzero "
            "input x nonzero weight pairs",
            "neurobench 2.3.0 metrics/workload/synaptic_operations.py SynapticOperations, "
            "metrics/utils/layers/macs.py single_layer_MACs, layers/input.py binary_inputs",
            _neurobench,
        ),
    )
}
DEFAULT_CONVENTION = "stxbench"


def convention(name: str) -> Convention:
    if name not in CONVENTIONS:
        raise unknown_choice("counting convention", name, CONVENTIONS)
    return CONVENTIONS[name]


@dataclass
class ConventionCounts:
    """Per-sample operation counts of a record under one convention."""

    mac: float
    ac: float
    ac_int: float


def tally(ops: list[OpCount], batchnorm: list[BatchNormCount], conv: Convention) -> ConventionCounts:
    totals = {"mac": 0.0, "ac": 0.0, "ac_int": 0.0}
    for op in ops:
        charged = conv.charge(op)
        if charged is not None:
            totals[charged[0]] += charged[1]
    totals["mac"] += sum(conv.batchnorm(bn) for bn in batchnorm)
    return ConventionCounts(**totals)


def convention_counts(counts: Counts, name: str) -> ConventionCounts:
    """A record's counts under convention ``name``. Records written before per-op counts were
    stored hold only this project's rule."""
    conv = convention(name)
    if counts.ops is None:
        if conv.name == "stxbench":
            return ConventionCounts(counts.mac, counts.ac, counts.ac_int)
        raise NoRawCounts()
    return tally(counts.ops, counts.batchnorm or [], conv)


class NoRawCounts(Exception):
    """The record predates per-op raw counts: only ``stxbench`` energy is known."""
