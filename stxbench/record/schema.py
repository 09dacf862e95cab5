"""The result record: one JSON file per run, validated by a schema, written atomically."""

from __future__ import annotations

import json
import math
import os
import secrets
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stxbench.run.errors import UsageError

#: 2: provenance.code (code identity), cpu_numerics.ieee_sqrt and cpu_kind. Version 1 records
#: still load (to be read and re-run); the leaderboard calls them stale.
#: 3: config.baseline (the board's reference rows, `stxbench.run.baselines`) and a firing rate that
#: is None for a model without neurons. Version 2 records are version 3 records of no baseline.
SCHEMA_VERSION = 3


class _Strict(BaseModel):
    # NaN and infinity are never a measurement: refused in records built in code, too
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ProtocolInfo(_Strict):
    name: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    #: no protocol overrides and a seed the protocol lists: may enter the leaderboard
    official: bool
    overrides: dict[str, Any] = Field(default_factory=dict)


class NeuronInfo(_Strict):
    """How a neuron of the run was computed."""

    family: str  # its neuron family
    #: "native": the backend's own implementation of the family; "reference": the family's
    #: plain-torch reference, which the host runs for a family the backend does not implement
    implementation: Literal["native", "reference"]


class ConfigInfo(_Strict):
    neuron: str
    pruner: str
    pruner_params: dict[str, Any]
    backend: str
    seed: int = Field(ge=0)
    dataset: str
    model: str
    T: int = Field(gt=0)
    base_neuron: str
    surrogate: str
    surrogate_alpha: float
    #: base_neuron and neuron -> family and implementation (None in records older than this field)
    neurons: dict[str, NeuronInfo] | None = None
    #: a board's reference row (``linear`` or ``ann``, `stxbench.run.baselines`); None for an entry.
    #: ``model``, ``T`` and ``base_neuron`` are then those the baseline ran
    baseline: str | None = None


class MatrixStat(_Strict):
    """One ST-block weight matrix after pruning (bias excluded)."""

    name: str
    shape: tuple[int, int]  # (out_features, in_features) of the dense matrix
    dense: int  # out * in of the dense matrix
    params: int  # weight parameters as stored now (both factors for a low-rank pair)
    nonzero: int  # of those, how many are not exactly zero
    sparsity: float  # 1 - nonzero / dense
    rank: int | None = None  # rank of a factorised matrix
    width: int | None = None  # kept hidden units of a channel-pruned matrix


class Metrics(_Strict):
    accuracy: float = Field(ge=0, le=1)
    # Test accuracy after stage 1 (before pruning) and after pruning (before fine-tuning). None
    # when the protocol has a validation split: the test set is then touched once, by the final
    # evaluation, and `Recovery` holds both on the validation split.
    accuracy_dense: float | None = Field(ge=0, le=1)
    accuracy_pruned: float | None = Field(ge=0, le=1)
    correct: int = Field(ge=0)
    test_samples: int = Field(gt=0)
    params_total: int = Field(gt=0)  # the dense model's parameter count
    params_effective: int = Field(gt=0)  # what the final model really needs
    sparsity: float  # 1 - effective / dense over the ST-block matrices
    #: all neuron layers, all elements and time steps; None for a model without neurons (the
    #: linear baseline); the ANN twin's is the mean rate its activations stand for
    firing_rate: float | None = Field(ge=0, le=1)
    firing_rates: dict[str, float]  # per neuron layer
    matrices: list[MatrixStat]


class CurvePoint(_Strict):
    """One point of a recovery curve."""

    epoch: int = Field(ge=0)  # fine-tune epochs done; 0: right after pruning and the neuron swap
    accuracy: float = Field(ge=0, le=1)  # on the protocol's validation split
    loss: float | None  # mean training loss over that epoch (None at epoch 0)


class NeuronDiagnostic(_Strict):
    """One neuron layer on the fixed diagnostics batch (definitions: `stxbench.measure.diagnostics`)."""

    firing_rate: float = Field(ge=0, le=1)  # mean of the spikes
    surrogate_grad: float = Field(ge=0)  # mean |d(sum of the layer's spikes) / d(input current)|
    loss_grad: float = Field(ge=0)  # mean |d(summed cross-entropy) / d(input current)|


class Diagnostics(_Strict):
    """Per neuron layer (by module path), at three moments of the run."""

    samples: int = Field(gt=0)  # the first this-many validation samples
    dense: dict[str, NeuronDiagnostic]  # before pruning, with the base neuron
    pruned: dict[str, NeuronDiagnostic]  # right after pruning and the swap to the run's neuron
    finetuned: dict[str, NeuronDiagnostic]  # after fine-tuning


class Recovery(_Strict):
    """How fine-tuning recovered from pruning, on the validation split the protocol carves
    from the training set (``[data.validation]``)."""

    validation_samples: int = Field(gt=0)
    accuracy_dense: float = Field(ge=0, le=1)  # the dense model, before pruning
    #: epoch 0 (right after pruning) and after every fine-tune epoch
    curve: list[CurvePoint] = Field(min_length=1)
    diagnostics: Diagnostics


#: id of the op-counting rule (stxbench.measure.counting); a new rule gets a new id
COUNT_RULE = "stxbench-ops-v1"


class LayerCount(_Strict):
    module: str
    op: str  # aten op: mm, addmm, bmm, convolution, ...
    kind: Literal["mac", "ac", "ac_int"]
    # nonzero fraction of the binary operand (its firing rate) or of the integer operand of an
    # ac_int; None for MACs
    input_rate: float | None
    dense_ops: float  # per sample, as if every operand were nonzero
    effective_ops: float  # per sample, what the rule charges


#: what an operand held, decided per sample (`stxbench.measure.op_rules.classify`): {0, 1}; {-1, 0, 1}
#: with a -1; non-negative integers up to 255 with one above 1; anything else
OperandKind = Literal["binary", "signed", "int", "real"]


class OpCount(_Strict):
    """One synaptic op of one module over the samples whose operands were of kinds
    (``a_kind``, ``b_kind``): what every counting convention (`stxbench.measure.conventions`) needs,
    per sample counted (a sum over these samples divided by ``Counts.samples``).

    ``a`` is the activation operand (the input of a Linear or convolution, the left factor of
    ``q @ k^T``), ``b`` the other one (a weight: its kind is decided over the whole weight)."""

    module: str
    #: the module's class: the torch.nn layer class it is (``Linear``, ``Conv2d``) or its own
    #: name (``MatMul``); NeuroBench counts Linear and Conv layers only
    module_type: str
    op: str  # aten op: addmm, bmm, convolution, ...
    a_kind: OperandKind
    b_kind: OperandKind
    nonzero_pairs: float = Field(ge=0)  # products whose two factors are both nonzero
    #: sum over the products of the integer operand's value where the other factor is nonzero
    #: (0 unless an operand is ``int``)
    value_pairs: float = Field(ge=0)
    #: products the nonzero entries of the binary operand take part in, zero partners included
    #: (0 unless exactly one operand is ``binary``)
    driven_pairs: float = Field(ge=0)
    dense: float = Field(ge=0)  # products as if every operand entry were nonzero (no padding)
    dense_padded: float = Field(ge=0)  # convolutions: taps on zero padding included
    #: entries of the operand whose firing rate is reported (the binary or integer one; ``a``
    #: when neither) and how many of them are nonzero
    rated_numel: float = Field(ge=0)
    rated_nonzero: float = Field(ge=0)
    #: weight entries read, once per time step the op runs (0 for an op between activations),
    #: and how many of them are nonzero
    weight_reads: float = Field(ge=0)
    weight_nonzero_reads: float = Field(ge=0)


class BatchNormCount(_Strict):
    module: str
    elements: float = Field(ge=0)  # per sample: one normalised element each
    affine: bool  # x_hat * gamma + beta: one multiply-add per element


class NeuronCount(_Strict):
    """One neuron layer (its firing rate is in ``metrics.firing_rates``)."""

    module: str
    updates: float = Field(ge=0)  # membrane updates per sample: neurons x time steps


class MergedOption(_Strict):
    """A factorised matrix (DSP svd, no bottleneck) priced as the one matrix its factors
    multiply to: what that matrix would cost on the same inputs (`stxbench.measure.energy`)."""

    module: str  # the factorised module; its factors are the ops under ``module + "."``
    ops: list[OpCount]


class Counts(_Strict):
    samples: int = Field(gt=0)
    mac: float = Field(ge=0)  # per sample
    ac: float = Field(ge=0)
    ac_int: float = Field(ge=0)
    neuron_updates: float = Field(ge=0)  # for information; not in the energy sum
    layers: list[LayerCount]
    rule: str = COUNT_RULE
    subset: str = "test"  # the samples counted, e.g. "test[:360]": the first 360 test samples
    # -- optional until schema v2 (None in records written before them) --
    #: the counting pass's numerics: ``bf16`` when it ran under autocast as the evaluation did
    precision: Literal["fp32", "bf16"] | None = None
    #: raw per-op counts every convention is computed from (`stxbench.measure.conventions`)
    ops: list[OpCount] | None = None
    batchnorm: list[BatchNormCount] | None = None
    neurons: list[NeuronCount] | None = None
    merge_options: list[MergedOption] | None = None


class Energy(_Strict):
    model_id: str
    e_mac_pj: float = Field(gt=0)
    e_ac_pj: float = Field(gt=0)
    mj_per_sample: float = Field(ge=0)
    #: the counting convention (None in older records: ``stxbench``)
    convention: str | None = None


class EnergyEstimate(_Strict):
    """Energy per sample under one counting convention and one cost model (`stxbench.measure.energy`)."""

    convention: str
    cost_model: str
    #: ``as-run``: every op as the model ran it; ``merge-if-cheaper``: a factorised matrix is
    #: priced as the one matrix of its product where that costs less (``merged`` names them)
    pricing: Literal["as-run", "merge-if-cheaper"]
    merged: list[str]
    mac: float = Field(ge=0)  # per sample, under the convention
    ac: float = Field(ge=0)
    ac_int: float = Field(ge=0)
    memory_bytes: float = Field(ge=0)  # bytes moved per sample (0 for a compute-only model)
    compute_mj: float = Field(ge=0)
    memory_mj: float = Field(ge=0)
    mj_per_sample: float = Field(ge=0)  # compute + memory


class Timing(_Strict):
    dense_s: float | None  # None when the dense checkpoint came from the cache
    finetune_s: float  # training only: the validation measurements are in validation_s
    eval_s: float
    samples_per_s: float  # evaluation throughput
    #: validation evaluations and diagnostics (None without a validation split)
    validation_s: float | None = None


class CompileInfo(_Strict):
    """``--compile``: how the run's neuron layers ran (`stxbench.neurons.compile`)."""

    target: Literal["neurons"]  # what was compiled
    fallback: str | None  # why the run went on eager, if it did; None: compiled throughout
    graphs: int = Field(ge=0)  # graphs this run traced (kernel cache hits included)
    compile_s: float = Field(ge=0)  # wall time of the calls that compiled, inside dense/finetune_s


class CudnnInfo(_Strict):
    version: int | None
    enabled: bool
    benchmark: bool
    deterministic: bool
    allow_tf32: bool  # cuDNN convolutions may use TF32
    matmul_allow_tf32: bool  # CUDA matmuls may use TF32


class ExecutionInfo(_Strict):
    """How the run executed: numerics and parallelism that can move the numbers."""

    precision: Literal["fp32", "bf16"]  # bf16: forward passes under torch.autocast(bfloat16)
    world_size: int = Field(ge=1)  # data-parallel processes (torchrun)
    dist_backend: Literal["gloo", "nccl"] | None  # None for one process
    data_workers: int = Field(ge=0)
    pin_memory: bool
    cudnn: CudnnInfo | None  # None on a CPU
    compile: CompileInfo | None = None  # None: eager (no --compile)


class CpuNumerics(_Strict):
    """Which CPU kernels ran (`stxbench.run.cpu_pin`): what decides the last bits on a CPU."""

    pin: str | None  # the protocol's pin (cpu_pin), None when it pins nothing
    aten_capability: str  # ATen's vectorised kernels: DEFAULT, AVX2, AVX512, ...
    mkl_branch: str | None  # MKL's reproducibility branch: OFF (none), COMPATIBLE, ...; None: unknown
    mkldnn: bool  # oneDNN convolutions on
    ieee_sqrt: bool = False  # ATen's CPU sqrt replaced by IEEE sqrt (pin portable-v2; older records: off)
    cpu_kind: str | None = None  # vendor, family/model and the vector extensions (provenance.cpu_kind)


class Provenance(_Strict):
    stxbench: str
    python: str
    torch: str
    libraries: dict[str, str]  # SNN library versions used by the backend
    platform: str
    device: str
    threads: int
    execution: ExecutionInfo | None = None  # None only in records older than this field
    #: None on a GPU and in records older than this field (schema v2 makes it required on CPUs)
    cpu_numerics: CpuNumerics | None = None
    git_commit: str | None
    plugin_sha256: dict[str, str]  # raw file hashes, for a reader; staleness reads `code`
    #: the code identity (`stxbench.record.code_identity`): one digest per package on the run's path;
    #: None in records made before it (they are stale: re-run them)
    code: dict[str, str] | None = None
    checkpoint_sha256: str
    created: str  # ISO 8601, UTC


class Record(_Strict):
    schema_version: Literal[1, 2, 3] = SCHEMA_VERSION
    protocol: ProtocolInfo
    config: ConfigInfo
    metrics: Metrics
    counts: Counts | None  # None only with --no-counts
    #: under the protocol's ``energy_convention`` and ``energy_model``, every op as run
    energy: Energy | None
    timing: Timing
    provenance: Provenance
    #: energy under every convention and cost model (None with --no-counts and in older records)
    energies: list[EnergyEstimate] | None = None
    #: recovery curve and per-layer diagnostics; None when the protocol has no validation split
    #: (and in records older than this field)
    recovery: Recovery | None = None


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file. The file gets
    the permissions of any new file (0666 less the umask: 0644 under umask 022), not
    ``mkstemp``'s 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_record(record: Record, path: Path) -> None:
    atomic_write_text(path, record.model_dump_json(indent=2) + "\n")


#: A record of the largest model stxbench builds is a few tens of kB; anything far larger is not
#: a record (and a leaderboard check must not spend minutes parsing it).
MAX_RECORD_BYTES = 1 << 20
#: A record nests five levels deep (counts.layers[i].field); JSON nested deeper is not one.
MAX_RECORD_DEPTH = 16


class _NonFinite:
    """A NaN or infinity read from the JSON text, kept so its field can be named."""

    def __init__(self, text: str):
        self.text = text


class _Object(dict):
    """A JSON object that remembers a key it held twice."""

    duplicate: str | None = None


def _object(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object()
    for key, value in pairs:
        if key in obj and obj.duplicate is None:
            obj.duplicate = key
        obj[key] = value
    return obj


def _float(text: str) -> float | _NonFinite:
    value = float(text)
    return value if math.isfinite(value) else _NonFinite(text)  # 1e999 reads as inf


def _strict_problem(data: Any) -> str | None:
    """The first duplicate key, non-finite number or excess depth in parsed JSON, by field."""
    stack: list[tuple[str, Any, int]] = [("", data, 1)]
    while stack:
        where, value, depth = stack.pop()
        if depth > MAX_RECORD_DEPTH:
            return f"{where or 'the top level'}: nested deeper than a result record ({MAX_RECORD_DEPTH} levels)"
        if isinstance(value, _NonFinite):
            return f"{where}: {value.text} is not a finite number"
        if isinstance(value, _Object):
            if value.duplicate is not None:
                field = f"{where}.{value.duplicate}" if where else value.duplicate
                return f"{field}: duplicate key (a JSON object may hold a key once)"
            items = [(f"{where}.{k}" if where else k, v) for k, v in value.items()]
        elif isinstance(value, list):
            items = [(f"{where}[{i}]", v) for i, v in enumerate(value)]
        else:
            continue
        stack.extend((key, item, depth + 1) for key, item in reversed(items))
    return None


def parse_record_json(raw: bytes) -> Any:
    """Strict JSON for records: UTF-8, no duplicate keys, no NaN or infinity, bounded size and
    depth. Raises `UsageError` with one line naming the problem (and its field, where it has one)."""
    if len(raw) > MAX_RECORD_BYTES:
        raise UsageError(f"{len(raw) / 1e6:.1f} MB; a result record is at most {MAX_RECORD_BYTES >> 20} MiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"not UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start}") from None
    try:
        data = json.loads(text, object_pairs_hook=_object, parse_constant=_NonFinite, parse_float=_float)
    except json.JSONDecodeError as exc:
        raise UsageError(f"not JSON: {exc.msg} at line {exc.lineno}") from None
    except RecursionError:
        raise UsageError(f"not a result record: nested deeper than {MAX_RECORD_DEPTH} levels") from None
    except ValueError:  # an integer longer than Python converts (4300 digits)
        raise UsageError("not a result record: holds a number too long to read") from None
    problem = _strict_problem(data)
    if problem:
        raise UsageError(f"not a valid result record: {problem}")
    return data


def load_record(path: str | Path) -> Record:
    """Read and validate a record; any problem is one `UsageError` line starting with the path."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_RECORD_BYTES:  # before reading it into memory
            raise UsageError(f"{path}: {path.stat().st_size / 1e6:.1f} MB; a result record is at most "
                             f"{MAX_RECORD_BYTES >> 20} MiB")
        with open(path, "rb") as fh:
            raw = fh.read(MAX_RECORD_BYTES + 1)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a folder, not a result record") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = parse_record_json(raw)
    except UsageError as exc:
        raise UsageError(f"{path}: {exc}") from None
    try:
        return Record.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        more = f" (+{len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise UsageError(f"{path}: not a valid result record: {key}: {first['msg']}{more}") from None
