"""The runs of a sweep: its names and seeds parsed, its grid expanded (``--grid``: the
protocol's compression grid), every run resolved and checked before any starts (`Cell`), and
the records already there."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from stxbench.cli import common
from stxbench.run.errors import UsageError
from stxbench.host.plugin_host import PluginHost
from stxbench.leaderboard.store import params_slug
from stxbench.run.protocol import Protocol, load_protocol
from stxbench.record.schema import Record, load_record
from stxbench.run.baselines import BASELINES
from stxbench.run.resolve import check_grid, check_seed, resolve, split_settings, unofficial_reasons
from stxbench.run.config import RunConfig
from stxbench.run.stages import RESULT_FILE
from stxbench.run.config import RunOptions


def split_names(option: str, text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UsageError(f"{option} needs at least one name (comma-separated)")
    if len(set(names)) != len(names):
        raise UsageError(f"{option} {text}: a name is repeated")
    return names


def split_seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        seeds = [int(s) for s in split_names("--seeds", text)]
    except ValueError:
        raise UsageError(f"--seeds {text}: seeds are comma-separated integers, e.g. 0,1,2") from None
    for seed in seeds:
        check_seed("--seeds", seed)
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise UsageError(f"--seeds {text}: seed {repeated[0]} is given twice (each seed is one run)")
    return seeds


def settings_tag(settings: list[str]) -> str:
    """A folder-name suffix for ``--set`` values: runs with other settings never collide."""
    if not settings:
        return ""
    return "-set" + hashlib.sha256("\n".join(sorted(settings)).encode()).hexdigest()[:8]


@dataclass
class Cell:
    config: RunConfig
    label: str

    @property
    def path(self) -> Path:
        return self.config.out_dir / RESULT_FILE


def unofficial_note(cells: list[Cell]) -> str | None:
    """Said before any work: which runs of a sweep will be unofficial, and why (their records
    cannot go to the leaderboard), so nobody learns it after hours of runs."""
    configs = [c.config for c in cells]
    why = unofficial_reasons(configs)
    if not why:
        return None
    count = sum(not config.official for config in configs)
    return (f"note: {count} of {len(cells)} runs will be unofficial ({'; '.join(why)}): "
            "their records cannot go to the leaderboard")


def existing_record(cell: Cell) -> Record | None:
    """The record of a finished run, or None; a record of another configuration in its place
    is an error (the output root is reused for something else)."""
    if not cell.path.exists():
        return None
    record = load_record(cell.path)
    c = record.config
    same = (record.protocol.sha256 == cell.config.protocol_sha256 and c.neuron == cell.config.neuron
            and c.pruner == cell.config.pruner and c.backend == cell.config.backend
            and c.seed == cell.config.seed and c.pruner_params == cell.config.pruner_params)
    if not same:
        raise UsageError(f"{cell.path} holds a record of another configuration; use another --out")
    return record


def grid_pruners(proto: Protocol, pruners: str | None) -> list[tuple[str, dict]]:
    """``--grid``: the (pruner, parameters) cells of the protocol's grid, of the pruners named
    in ``--pruner`` if given (each must be in the grid)."""
    cells = proto.grid_cells()
    if not cells:
        raise UsageError(f"--grid: protocol {proto.name} has no compression grid ([[grid.<pruner>]] tables)")
    in_grid = list(dict.fromkeys(pruner for pruner, _ in cells))
    if pruners is None:
        return cells
    chosen = split_names("--pruner", pruners)
    for name in chosen:
        if name not in in_grid:
            raise UsageError(f"--pruner {name}: not in the grid of protocol {proto.name} "
                             f"(its pruners: {', '.join(in_grid)})")
    return [(pruner, params) for pruner, params in cells if pruner in chosen]


def cell_settings(params: dict) -> list[str]:
    """Grid parameters as ``--set`` items (values in TOML, as ``--set`` reads them)."""
    return [f"{key}={json.dumps(value)}" for key, value in params.items()]


def sweep_cells(host: PluginHost, *, protocol: str, neurons: str, pruners: str | None, backends: str,
                seeds: str | None, settings: list[str], out: Path, options: RunOptions,
                grid: bool, job_cpus: int | None = None, baselines: bool = False) -> tuple[Path, list[Cell]]:
    """Every run of the sweep, resolved and checked (nothing runs yet), and the folder that
    holds their records."""
    overrides, pruner_settings = split_settings(settings)
    proto = load_protocol(protocol, overrides)
    seed_list = split_seeds(seeds) or proto.seeds
    if grid:
        check_grid(host, proto)
        if pruner_settings:
            raise UsageError(f"--set {next(iter(pruner_settings))}: with --grid the protocol's grid "
                             "sets the pruner parameters; only dotted protocol keys may be set")
        dotted = [s for s in settings if "." in s.partition("=")[0]]
        pruner_cells = [(pruner, [*cell_settings(params), *dotted],
                         f"{pruner}-{params_slug(params)}" if params else pruner)
                        for pruner, params in grid_pruners(proto, pruners)]
    else:
        pruners = pruners or "none"
        names = split_names("--pruner", pruners)
        for key in pruner_settings:
            if not any(key in host.pruner(p).Params.model_fields for p in names):
                raise UsageError(f"--set {key}: none of the pruners {pruners} has a parameter '{key}'")
        pruner_cells = []
        for pruner in names:
            fields = host.pruner(pruner).Params.model_fields
            given = [s for s in settings if "." in s.partition("=")[0] or s.partition("=")[0].strip() in fields]
            pruner_cells.append((pruner, given, pruner))
    folder = out / f"{proto.name}{settings_tag(settings)}"
    cells: list[Cell] = []
    for neuron in split_names("--neuron", neurons):
        for pruner, given, pruner_label in pruner_cells:
            for backend in split_names("--backend", backends):
                for seed in seed_list:
                    label = f"{neuron}-{pruner_label}-{backend}-s{seed}"
                    config = resolve(host, protocol=protocol, neuron=neuron, pruner=pruner, backend=backend,
                                     seed=seed, settings=given, out_dir=folder / label, options=options,
                                     plugins=common.STATE.plugins, job_cpus=job_cpus)
                    cells.append(Cell(config, label))
    if baselines:  # the board's reference rows (stxbench.run.baselines), each seed, on the first backend
        backend = split_names("--backend", backends)[0]
        dotted = [s for s in settings if "." in s.partition("=")[0]]
        for baseline in BASELINES:
            for seed in seed_list:
                label = f"baseline-{baseline}-{backend}-s{seed}"
                config = resolve(host, protocol=protocol, neuron="lif", pruner="none", backend=backend, seed=seed,
                                 settings=dotted, out_dir=folder / label, options=options,
                                 plugins=common.STATE.plugins, job_cpus=job_cpus, baseline=baseline)
                cells.append(Cell(config, label))
    return folder, cells


