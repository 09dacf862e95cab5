"""``stxbench sweep``: the grid neurons x pruners x backends x seeds under one protocol.

Every run's record goes to ``<out>/<protocol>/<neuron>-<pruner>-<backend>-s<seed>/result.json``
(plus a suffix naming the ``--set`` values, if any), so a sweep that stops can be started again
with the same command: runs whose record exists are skipped. Every name and setting is checked
before the first run starts.

With ``--grid`` the pruners and their parameters come from the protocol's compression grid
(``[[grid.<pruner>]]`` tables, `Protocol.grid_cells`), one run per cell, neuron, backend and
seed, in ``<neuron>-<pruner>-<params>-<backend>-s<seed>`` folders; ``--pruner`` then picks
pruners of the grid. Runs of one seed share the dense model (the dense cache).
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import typer
from rich.console import Console
from tabulate import tabulate

from stxbench.cli import common
from stxbench.cli.root import app
from stxbench.cli.options import ProtocolOption, QuietOption, SettingsOption, with_run_options
from stxbench.cli.run import RichReporter
from stxbench.errors import UsageError
from stxbench.host import PluginHost
from stxbench.leaderboard.store import params_slug
from stxbench.protocol import DEFAULT_PROTOCOL, Protocol, load_protocol
from stxbench.record import Record, load_record
from stxbench.runconfig import RunConfig, check_grid, resolve, split_settings
from stxbench.runner import RESULT_FILE, execute
from stxbench.runoptions import RunOptions


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


def before_finetuning(record: Record) -> float:
    """Accuracy right after pruning: on the test set, or where the protocol has a validation
    split (and the test set is touched once, at the end), on the validation split."""
    if record.recovery is not None:
        return record.recovery.curve[0].accuracy
    return record.metrics.accuracy_pruned


def summary(records: list[Record]) -> str:
    groups: dict[tuple[str, str, str], list[Record]] = {}
    for r in records:
        c = r.config
        params = ",".join(f"{k}={v}" for k, v in sorted(c.pruner_params.items()))
        pruner = f"{c.pruner}({params})" if params else c.pruner
        groups.setdefault((c.neuron, pruner, c.backend), []).append(r)
    rows = []
    for (neuron, pruner, backend), group in groups.items():
        acc = [r.metrics.accuracy for r in group]
        spread = f" ± {statistics.stdev(acc):.4f}" if len(acc) > 1 else ""
        rows.append([
            neuron, pruner, backend, len(group), f"{statistics.mean(acc):.4f}{spread}",
            f"{statistics.mean(before_finetuning(r) for r in group):.4f}",
            f"{statistics.mean(r.metrics.params_effective for r in group):,.0f}",
            f"{statistics.mean(r.metrics.sparsity for r in group):.3f}",
            f"{statistics.mean(r.metrics.firing_rate for r in group):.4f}",
        ])
    headers = ["neuron", "pruner", "backend", "seeds", "accuracy (mean ± std)", "before fine-tune",
               "params effective", "sparsity", "firing rate"]
    return tabulate(rows, headers=headers)


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
                grid: bool) -> tuple[Path, list[Cell]]:
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
                                     plugins=common.STATE.plugins)
                    cells.append(Cell(config, label))
    return folder, cells


@app.command("sweep")
@with_run_options
def sweep_command(
    neurons: str = typer.Option("lif", "--neuron", "-n", help="Comma-separated neurons, e.g. lif,plif,slif."),
    pruners: str | None = typer.Option(None, "--pruner",
        help="Comma-separated pruners, e.g. none,l1p,dsp [default: none; with --grid, every pruner of the grid]."),
    backends: str = typer.Option("torch", "--backend", "-b", help="Comma-separated backends."),
    seeds: str | None = typer.Option(None, "--seeds", help="Comma-separated seeds [default: the protocol's seeds]."),
    grid: bool = typer.Option(False, "--grid",
        help="Run the protocol's compression grid: every pruner and parameter set its [[grid.<pruner>]] tables list."),
    protocol: ProtocolOption = DEFAULT_PROTOCOL,
    settings: SettingsOption = [],
    out: Path = typer.Option(Path("runs/sweep"), "--out", "-o", help="Root folder of the sweep's records."),
    quiet: QuietOption = False,
    *,
    options: RunOptions,
) -> None:
    """Run every neuron x pruner x backend x seed under one protocol (with --grid: every cell of
    its compression grid); skip finished runs; print a summary table (mean ± std over seeds)."""
    host = common.host()
    folder, cells = sweep_cells(host, protocol=protocol, neurons=neurons, pruners=pruners, backends=backends,
                                seeds=seeds, settings=settings, out=out, options=options, grid=grid)
    done = [existing_record(c) for c in cells]  # checked before anything runs

    console = Console(stderr=True)
    records: list[Record] = []
    started = time.perf_counter()
    ran = 0
    for index, (cell, record) in enumerate(zip(cells, done), 1):
        prefix = f"[{index}/{len(cells)}] {cell.label}"
        if record is not None:
            common.err_line(f"{prefix}: done already (accuracy {record.metrics.accuracy:.4f}), skipped")
        else:
            common.err_line(f"{prefix}: running")
            record = execute(cell.config, host, reporter=None if quiet else RichReporter(console),
                             warn=lambda line: common.err_line(f"warning: {line}"))
            ran += 1
            elapsed = time.perf_counter() - started
            left = sum(r is None for r in done[index:])
            eta = f", about {elapsed / ran * left / 60:.1f} min left" if left else ""
            common.err_line(f"{prefix}: accuracy {record.metrics.accuracy:.4f} ({elapsed / 60:.1f} min so far{eta})")
        records.append(record)
    typer.echo(summary(records))
    typer.echo(f"{len(cells)} runs: {ran} ran, {len(cells) - ran} skipped; records under {folder}")
