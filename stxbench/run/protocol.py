"""Protocols: pinned TOML files that fix everything a number depends on.

A protocol is loaded into a frozen pydantic model. Its sha256 is taken over a canonical JSON form
of the *validated* protocol (defaults filled in; the free-text description and execution
defaults, `NOT_HASHED`, left out), so reformatting a file changes nothing while any value that
changes behaviour changes the hash. Overrides
(``--set train.epochs=3``) produce another hash and mark the run unofficial.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import re
import tomllib
import typing
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from stxbench.run.errors import UsageError, unknown_choice, unknown_key

DEFAULT_PROTOCOL = "digits"

# Bounds of a protocol's numbers: far beyond any published recipe, short of values that would
# only fail after hours or exhaust memory. Seeds: every random generator a run seeds takes them
# (numpy's legacy generator stops at 2**32 - 1).
MAX_SEED = 2**32 - 1
MAX_T = 1024
MAX_EPOCHS = 10_000
MAX_BATCH = 65_536
MAX_COUNT_SAMPLES = 1_000_000
#: a protocol file is a few kB; anything far larger is not one
MAX_PROTOCOL_BYTES = 1 << 20
#: protocol names become file names (leaderboard folders, dense cache files): no separators,
#: no "..", no leading dot or dash
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"

Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
OptionValue = int | float | str | bool


def _check_option_values(options: Any) -> Any:
    """``[data.options]`` and ``[model.options]`` hold numbers, strings and booleans: say so
    plainly for anything else (a table, a list, a date, a non-finite number)."""
    if not isinstance(options, dict):
        return options  # the type check names it
    for key, value in options.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"option {key} = {value} is not a finite number")
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53:
            raise ValueError(f"option {key} = {value} is out of range (at most 2**53 in size)")
        if not isinstance(value, (bool, int, float, str)):
            raise ValueError(f"option {key} must be a number, a string or true/false, not a "
                             f"{type(value).__name__}")
    return options


class _Section(BaseModel):
    # strict: `T = true` or `epochs = 2.5` are refused, not read as 1 and 2; numbers are finite
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class ValidationSection(_Section):
    """A validation split carved from the training set (`stxbench.data.splits.carve_validation`):
    stratified by class, drawn with its own seed, never trained on. Fine-tuning is followed on
    it epoch by epoch (the recovery curve), and the neuron diagnostics use its first
    ``diagnostic_samples``; the test set is then touched once, by the final evaluation."""

    samples: int = Field(gt=0, description="validation samples taken out of the training set")
    seed: int = Field(default=0, ge=0, description="seed of the draw (numpy PCG64)")
    #: the fixed batch of the per-layer diagnostics (`stxbench.measure.diagnostics`): the first this-many
    #: validation samples, in split order
    diagnostic_samples: int = Field(default=256, gt=0)

    @model_validator(mode="after")
    def _batch_within_split(self) -> ValidationSection:
        if self.diagnostic_samples > self.samples:
            raise ValueError(f"diagnostic_samples ({self.diagnostic_samples}) must be at most "
                             f"samples ({self.samples}): the diagnostics batch is validation data")
        return self


class DataSection(_Section):
    dataset: str
    #: how a static sample becomes a spike-train input: repeated over T ("direct"), or the
    #: dataset already provides T frames per sample ("frames").
    encoding: Literal["direct", "frames"] = "direct"
    #: options the dataset plugin accepts (``train_samples = 10000``); with encoding "frames"
    #: the host adds ``frames = model.T``
    options: dict[str, OptionValue] = Field(default_factory=dict)

    _options = field_validator("options", mode="before")(_check_option_values)
    #: a validation split carved from the training set; None: no validation split, no recovery
    #: curve and no diagnostics in the records
    validation: ValidationSection | None = None


class ModelSection(_Section):
    name: str = Field(description="model family and size, e.g. spikformer-4-384")
    T: int = Field(gt=0, le=MAX_T, description="time steps")
    base_neuron: str = "lif"
    surrogate: Literal["atan", "sigmoid", "superspike"] = "atan"
    surrogate_alpha: float | None = Field(default=None, gt=0, le=100)
    options: dict[str, OptionValue] = Field(default_factory=dict)

    _options = field_validator("options", mode="before")(_check_option_values)


class StageSection(_Section):
    epochs: int = Field(ge=0, le=MAX_EPOCHS)
    batch_size: int = Field(gt=0, le=MAX_BATCH)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(gt=0)  # finite; a rate that diverges stops the run with one line
    weight_decay: float = Field(default=0.0, ge=0, le=10)
    momentum: float = Field(default=0.9, ge=0, lt=1)
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_epochs: float = Field(default=0.0, ge=0, le=MAX_EPOCHS)
    label_smoothing: float = Field(default=0.0, ge=0, lt=1)
    grad_clip: float | None = Field(default=None, gt=0, le=1e6)
    #: cosine decays to this learning rate (timm's min_lr); at most lr
    min_lr: float = Field(default=0.0, ge=0)
    #: mixup alpha (batch mode, lambda ~ Beta(alpha, alpha), as timm's Mixup); 0 = off
    mixup: float = Field(default=0.0, ge=0, le=100)
    #: mixup only during the first N epochs (Spikformer's mixup_off_epoch); None = every epoch
    mixup_epochs: int | None = Field(default=None, ge=0, le=MAX_EPOCHS)
    #: timm RandAugment config (``rand-m9-n1-mstd0.4-inc1``) on the stored 8-bit training
    #: images, before normalisation (`stxbench.data.augment`); None = off
    rand_augment: str | None = None
    #: the ops RandAugment draws from (timm names); None = the config's set (timm's increasing
    #: set with ``inc1``, its standard set otherwise)
    rand_augment_ops: list[str] | None = None
    #: resampling of RandAugment's geometric ops; "random" picks one of the two per op (timm's
    #: default when no interpolation is configured)
    rand_augment_interpolation: Literal["bicubic", "bilinear", "random"] = "bicubic"
    #: timm RandomErasing probability per image (``reprob``) on normalised batches; 0 = off
    random_erasing: float = Field(default=0.0, ge=0, le=1)
    #: what erased boxes hold: 0 ("const", the mean), a normal value per channel ("rand") or
    #: per pixel ("pixel") (timm's ``remode``)
    random_erasing_mode: Literal["const", "rand", "pixel"] = "const"
    #: boxes per erased image: 1..this many, uniformly (timm's ``recount``)
    random_erasing_count: int = Field(default=1, ge=1, le=16)
    #: an epoch is this many samples (the head of that epoch's shuffled order, whole batches)
    #: rather than the whole training set: short epochs make a fine recovery curve; None = all
    epoch_samples: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _whole_batches(self) -> StageSection:
        if self.epoch_samples is not None and self.epoch_samples % self.batch_size:
            raise ValueError(f"epoch_samples ({self.epoch_samples}) must be a multiple of "
                             f"batch_size ({self.batch_size})")
        return self

    @field_validator("rand_augment")
    @classmethod
    def _parse_rand_augment(cls, value: str | None) -> str | None:
        if value is not None:
            from stxbench.data.augment.randaugment import RandAugmentConfig

            try:
                RandAugmentConfig.parse(value)
            except UsageError as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _min_lr_at_most_lr(self) -> StageSection:
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr {self.min_lr:g} is above lr {self.lr:g}; the schedule decays "
                             "from lr down to min_lr, so min_lr must be <= lr")
        return self

    @model_validator(mode="after")
    def _no_orphan_augmentation_settings(self) -> StageSection:
        """Settings of an augmentation that is off would be silently ignored: refuse them."""
        if self.rand_augment is None:
            for key, default in (("rand_augment_ops", None), ("rand_augment_interpolation", "bicubic")):
                if getattr(self, key) != default:
                    raise ValueError(f"{key} is set but rand_augment is not; set rand_augment too")
        if not self.random_erasing:
            for key, default in (("random_erasing_mode", "const"), ("random_erasing_count", 1)):
                if getattr(self, key) != default:
                    raise ValueError(f"{key} is set but random_erasing is 0; set random_erasing too")
        return self

    @field_validator("rand_augment_ops")
    @classmethod
    def _known_ops(cls, value: list[str] | None) -> list[str] | None:
        from stxbench.data.augment.randaugment import check_ops

        try:
            check_ops(value)
        except UsageError as exc:
            raise ValueError(str(exc)) from None
        return value


class EvalSection(_Section):
    batch_size: int = Field(default=256, gt=0, le=MAX_BATCH)
    #: op counts (energy) are taken over the first this-many test samples, in split order
    count_samples: int = Field(default=1000, gt=0, le=MAX_COUNT_SAMPLES)


#: protocol fields that do not change what a run computes, left out of its sha256
NOT_HASHED = {"description", "compile", "rerun_rtol"}

GridValue = int | float | str | bool
#: one table of a pruner's grid: a parameter's value, or a list of the values it takes
GridTable = dict[str, GridValue | list[GridValue]]


def expand_table(table: GridTable) -> list[dict[str, Any]]:
    """The parameter sets a grid table stands for: the cartesian product of its lists (a
    single value is a list of one), in the order written, the last key varying fastest."""
    levels = [value if isinstance(value, list) else [value] for value in table.values()]
    return [dict(zip(table, combo)) for combo in itertools.product(*levels)]


def params_text(params: dict[str, Any]) -> str:
    """``keep=0.5, method=svd`` (no parameters: ``defaults``)."""
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "defaults"


class Protocol(_Section):
    #: letters, digits, ".", "_" and "-" (it names files and folders)
    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    #: runs in minutes on a 2-core CPU; `leaderboard check --rerun` re-runs its entries
    cpu_cheap: bool = False
    #: largest accuracy difference a GPU re-run may show and still reproduce an entry (CPU
    #: re-runs compare exactly: `stxbench.leaderboard.rerun`)
    accuracy_tolerance: float = Field(default=0.01, ge=0, le=1)
    #: largest relative difference of firing rates, spike-driven op counts and energy a GPU
    #: re-run may show; a checking setting, not hashed (docs/leaderboard.md: how it was measured)
    rerun_rtol: float = Field(default=0.10, ge=0, le=1)
    seeds: list[Seed] = Field(min_length=1, max_length=1000)
    data: DataSection
    model: ModelSection
    train: StageSection  # stage 1: dense training with the base neuron
    finetune: StageSection  # stage 3: fine-tuning with the requested neuron, after pruning
    eval: EvalSection = EvalSection()
    #: default parameters per pruner name, e.g. [pruners.l1p] sparsity = 0.5
    pruners: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: the compression grid ``stxbench sweep --grid`` runs: per pruner, a list of parameter
    #: tables (``[[grid.dsp]]``), each the cartesian product of its lists (`grid_cells`).
    #: Whether every cell is a valid parameter set of its pruner is checked when a run is
    #: resolved (`stxbench.run.resolve.check_grid`): the protocol knows no pruner.
    grid: dict[str, list[GridTable]] = Field(default_factory=dict)
    energy_model: str = "horowitz45-fp32-v1"
    #: the counting convention of the record's ``energy`` (`stxbench.measure.conventions`); records
    #: hold every convention in ``energies`` anyway
    energy_convention: str = "stxbench"
    #: default of ``--compile/--no-compile`` (compiled neuron layers, `stxbench.neurons.compile`). An
    #: execution setting like ``--threads``, not part of the hash: compiled runs compute what
    #: eager runs compute (bit for bit for LIF and PLIF on the CPU).
    compile: bool = False
    #: CPU numerics pinned for runs on a CPU (`stxbench.run.cpu_pin`): the same record on every x86
    #: CPU kind with AVX2, so re-runs compare exactly. Changes the bits, so it is hashed (and
    #: keys the dense cache) when set; None runs the fastest kernels of each CPU.
    cpu_pin: Literal["portable-v1", "portable-v2"] | None = None

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        repeated = sorted({s for s in seeds if seeds.count(s) > 1})
        if repeated:
            raise ValueError(f"seed {repeated[0]} is listed twice; each seed is one run")
        return seeds

    @field_validator("grid")
    @classmethod
    def _grid_cells_distinct(cls, grid: dict[str, list[GridTable]]) -> dict[str, list[GridTable]]:
        for pruner, tables in grid.items():
            if not tables:
                raise ValueError(f"grid.{pruner} lists no parameter table (write [[grid.{pruner}]])")
            seen: dict[str, int] = {}
            for index, table in enumerate(tables):
                for key, value in table.items():
                    if isinstance(value, list) and not value:
                        raise ValueError(f"grid.{pruner}[{index}].{key} is an empty list")
                for params in expand_table(table):
                    canonical = json.dumps(params, sort_keys=True)
                    if canonical in seen:
                        raise ValueError(f"grid.{pruner}: {params_text(params)} appears twice "
                                         f"(tables {seen[canonical]} and {index})")
                    seen[canonical] = index
        return grid

    def grid_cells(self) -> list[tuple[str, dict[str, Any]]]:
        """Every (pruner, parameters) of the grid, in the order written."""
        return [(pruner, params) for pruner, tables in self.grid.items()
                for table in tables for params in expand_table(table)]

    def _dump(self, **kwargs: Any) -> dict[str, Any]:
        """``model_dump`` without the fields added after protocols were first hashed, where they
        hold their defaults: a protocol that does not use them keeps its hash and cache keys."""
        data = self.model_dump(mode="json", **kwargs)
        for key, default in LATER_TOP_DEFAULTS.items():
            if data.get(key, default) == default:
                data.pop(key, None)
        for section, defaults in LATER_DEFAULTS.items():
            for key, default in defaults.items():
                if section in data and data[section].get(key, default) == default:
                    data[section].pop(key, None)
        return data

    def canonical(self) -> str:
        data = self._dump(exclude=NOT_HASHED)
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    def sha256(self) -> str:
        return hashlib.sha256(self.canonical().encode()).hexdigest()

    def dense_key(self, seed: int, backend: str) -> str:
        """What the dense checkpoint depends on: data, model, stage-1 recipe, seed, backend.
        Fine-tuning and pruner settings are left out, so they can vary over one cached model."""
        data = self._dump(include={"data", "model", "train", "cpu_pin"})
        data.update(seed=seed, backend=backend)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


#: top-level fields added after the first protocols were published, and their defaults
LATER_TOP_DEFAULTS: dict[str, Any] = {"energy_convention": "stxbench", "cpu_pin": None, "grid": {}}
_LATER_STAGE_DEFAULTS = {
    "min_lr": 0.0, "mixup": 0.0, "mixup_epochs": None, "rand_augment": None,
    "rand_augment_ops": None, "rand_augment_interpolation": "bicubic", "random_erasing": 0.0,
    "random_erasing_mode": "const", "random_erasing_count": 1, "epoch_samples": None,
}
#: section -> {field: default} for fields added after the first protocols were published
LATER_DEFAULTS: dict[str, dict[str, Any]] = {
    "data": {"options": {}, "validation": None},
    "train": _LATER_STAGE_DEFAULTS,
    "finetune": _LATER_STAGE_DEFAULTS,
}


# -- discovery ------------------------------------------------------------------------------


def builtin_protocols() -> dict[str, Path]:
    folder = resources.files("stxbench") / "protocols"
    return {Path(p.name).stem: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".toml")}


def protocol_path(name_or_path: str) -> Path:
    builtin = builtin_protocols()
    if name_or_path in builtin:
        return builtin[name_or_path]
    if name_or_path.endswith(".toml"):
        path = Path(name_or_path)
        if not path.is_file():
            raise UsageError(f"protocol file '{name_or_path}' does not exist")
        return path
    raise unknown_choice("protocol", name_or_path, builtin)


# -- overrides ------------------------------------------------------------------------------


def parse_value(text: str) -> Any:
    """A ``--set`` value, read as a TOML value (``3``, ``0.5``, ``true``, ``[0, 1]``) or else a
    plain string (``channels``)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _section_model(annotation: Any) -> type[BaseModel] | None:
    """The section class of a field annotated ``Section`` or ``Section | None``."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def valid_keys(model: type[BaseModel] = Protocol, prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        section = _section_model(field.annotation)
        if section is not None:
            keys += valid_keys(section, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Set dotted keys (``train.epochs``) in a copy of a raw protocol dict; unknown keys fail."""
    out = copy.deepcopy(raw)
    keys = valid_keys()
    dict_fields = {"data.options", "model.options", "pruners"}  # free-form tables
    for key, value in overrides.items():
        if key in ("name", "description"):
            raise UsageError(f"--set {key}: a protocol's {key} cannot be overridden")
        if key not in keys and not any(key.startswith(f"{d}.") for d in dict_fields):
            raise unknown_key("protocol key", key, keys)
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UsageError(f"--set {key}: '{part}' is not a table")
        node[leaf] = value
    return out


# -- loading --------------------------------------------------------------------------------


def _line_of(text: str, loc: tuple[Any, ...]) -> int | None:
    """Best-effort line number of a (section, key) location in a TOML text."""
    section = ".".join(str(p) for p in loc[:-1])
    key = str(loc[-1])
    current = ""
    for number, line in enumerate(text.splitlines(), 1):
        header = re.match(r"\s*\[([^\]]+)\]", line)
        if header:
            current = header.group(1).strip()
            if current == f"{section}.{key}".strip("."):
                return number
        elif current == section and re.match(rf"\s*{re.escape(key)}\s*=", line):
            return number
    return None


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"  # as TOML spells it
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _validation_message(err: ValidationError, source: str, text: str | None) -> str:
    # A typo shows up as an unknown key *and* a missing one: name the typo first.
    rank = {"extra_forbidden": 0, "missing": 2}
    first = min(err.errors(), key=lambda e: rank.get(e["type"], 1))
    loc = tuple(p for p in first["loc"] if not isinstance(p, int)) or ("?",)
    key = ".".join(str(p) for p in first["loc"])
    where = ""
    if text is not None:
        line = _line_of(text, loc)
        where = f" (line {line})" if line else ""
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    elif first["type"] == "missing":
        msg = "required key is missing"
    elif first["type"] == "value_error":
        msg = msg.removeprefix("Value error, ")
    elif first["type"] == "string_pattern_mismatch" and key == "name":
        msg = f"{first['input']!r} is not a valid name: letters, digits, '.', '_' and '-' only (it names files)"
    else:  # a wrong type or a bound: show what was given
        msg = f"{msg}, got {_shown(first.get('input'))}"
    more = f" (+{len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{source}{where}: {key}: {msg}{more}"


def read_protocol_text(path: Path) -> str:
    """A protocol file's text: UTF-8 (TOML's encoding), of a protocol's size."""
    try:
        if path.stat().st_size > MAX_PROTOCOL_BYTES:
            raise UsageError(f"protocol {path}: {path.stat().st_size / 1e6:.1f} MB; a protocol file is "
                             f"at most {MAX_PROTOCOL_BYTES >> 20} MiB")
        with open(path, "rb") as fh:  # never more than a protocol's size (a FIFO, /dev/zero...)
            raw = fh.read(MAX_PROTOCOL_BYTES + 1)
        if len(raw) > MAX_PROTOCOL_BYTES:
            raise UsageError(f"protocol {path}: more than {MAX_PROTOCOL_BYTES >> 20} MiB; a protocol file is "
                             f"at most {MAX_PROTOCOL_BYTES >> 20} MiB")
    except OSError as exc:
        raise UsageError(f"protocol {path}: cannot read: {exc.strerror}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"protocol {path}: not UTF-8 (byte 0x{raw[exc.start]:02x} at offset "
                         f"{exc.start}); TOML files are UTF-8") from None


def load_protocol(name_or_path: str = DEFAULT_PROTOCOL, overrides: dict[str, Any] | None = None) -> Protocol:
    path = protocol_path(name_or_path)
    text = read_protocol_text(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"protocol {path.name}: malformed TOML: {exc}") from None
    overrides = overrides or {}
    data = apply_overrides(raw, overrides) if overrides else raw
    try:
        return Protocol.model_validate(data)
    except ValidationError as exc:
        source = f"protocol {path.name}" if not overrides else f"protocol {path.name} with --set"
        raise UsageError(_validation_message(exc, source, None if overrides else text)) from None
