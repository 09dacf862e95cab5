"""The result record: one JSON file per run, validated by a schema, written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stxbench.errors import UsageError

SCHEMA_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProtocolInfo(_Strict):
    name: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    #: no protocol overrides and a seed the protocol lists: may enter the leaderboard
    official: bool
    overrides: dict[str, Any] = Field(default_factory=dict)


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
    firing_rate: float = Field(ge=0, le=1)  # all neuron layers, all elements and time steps
    firing_rates: dict[str, float]  # per neuron layer
    matrices: list[MatrixStat]


class CurvePoint(_Strict):
    """One point of a recovery curve."""

    epoch: int = Field(ge=0)  # fine-tune epochs done; 0: right after pruning and the neuron swap
    accuracy: float = Field(ge=0, le=1)  # on the protocol's validation split
    loss: float | None  # mean training loss over that epoch (None at epoch 0)


class NeuronDiagnostic(_Strict):
    """One neuron layer on the fixed diagnostics batch (definitions: `stxbench.diagnostics`)."""

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


#: id of the op-counting rule (stxbench.counting); a new rule gets a new id
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


class Counts(_Strict):
    samples: int = Field(gt=0)
    mac: float = Field(ge=0)  # per sample
    ac: float = Field(ge=0)
    ac_int: float = Field(ge=0)
    neuron_updates: float = Field(ge=0)  # for information; not in the energy sum
    layers: list[LayerCount]
    rule: str = COUNT_RULE
    subset: str = "test"  # the samples counted, e.g. "test[:360]": the first 360 test samples


class Energy(_Strict):
    model_id: str
    e_mac_pj: float = Field(gt=0)
    e_ac_pj: float = Field(gt=0)
    mj_per_sample: float = Field(ge=0)


class Timing(_Strict):
    dense_s: float | None  # None when the dense checkpoint came from the cache
    finetune_s: float  # training only: the validation measurements are in validation_s
    eval_s: float
    samples_per_s: float  # evaluation throughput
    #: validation evaluations and diagnostics (None without a validation split)
    validation_s: float | None = None


class CompileInfo(_Strict):
    """``--compile``: how the run's neuron layers ran (`stxbench.compile`)."""

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


class Provenance(_Strict):
    stxbench: str
    python: str
    torch: str
    libraries: dict[str, str]  # SNN library versions used by the backend
    platform: str
    device: str
    threads: int
    execution: ExecutionInfo | None = None  # None only in records older than this field
    git_commit: str | None
    plugin_sha256: dict[str, str]
    checkpoint_sha256: str
    created: str  # ISO 8601, UTC


class Record(_Strict):
    schema_version: Literal[1] = SCHEMA_VERSION
    protocol: ProtocolInfo
    config: ConfigInfo
    metrics: Metrics
    counts: Counts | None  # None only with --no-counts
    energy: Energy | None
    timing: Timing
    provenance: Provenance
    #: recovery curve and per-layer diagnostics; None when the protocol has no validation split
    #: (and in records older than this field)
    recovery: Recovery | None = None


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_record(record: Record, path: Path) -> None:
    atomic_write_text(path, record.model_dump_json(indent=2) + "\n")


def load_record(path: str | Path) -> Record:
    """Read and validate a record; any problem is one `UsageError` line."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}: not JSON: {exc.msg} at line {exc.lineno}") from None
    try:
        return Record.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        more = f" (+{len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise UsageError(f"{path}: not a valid result record: {key}: {first['msg']}{more}") from None
