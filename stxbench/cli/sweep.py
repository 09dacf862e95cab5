"""``stxbench sweep``: the grid neurons x pruners x backends x seeds under one protocol, run one
after another (``--executor serial``), in worker processes on this machine (``local``) or as
SLURM job arrays (``slurm``); ``stxbench sweep status DIR`` says where a sweep stands.

Every run's record goes to ``<out>/<protocol>/<neuron>-<pruner>-<backend>-s<seed>/result.json``
(plus a suffix naming the ``--set`` values, if any), so a sweep that stops can be started again
with the same command: runs whose record exists are skipped, and so are runs that are queued or
running. Every name and setting is checked before the first run starts.

With ``--grid`` the pruners and their parameters come from the protocol's compression grid
(``[[grid.<pruner>]]`` tables, `Protocol.grid_cells`), one run per cell, neuron, backend and
seed, in ``<neuron>-<pruner>-<params>-<backend>-s<seed>`` folders; ``--pruner`` then picks
pruners of the grid. Runs of one seed share the dense model (the dense cache).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import shutil
import statistics
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from stxbench.cli import common
from stxbench.cli.layout import fit_table, pruner_text, wrap
from stxbench.cli.options import (
    ProtocolOption,
    QuietOption,
    SettingsOption,
    with_model_options,
    with_run_options,
)
from stxbench.cli.root import app
from stxbench.cli.progress import reporter_for
from stxbench.cli.sweep_cells import Cell, existing_record, sweep_cells, unofficial_note
from stxbench.cli.sweep_status import print_submit_hint, status_command
from stxbench.run.errors import RunFailed, RunInterrupted, UsageError
from stxbench.executors import slurm
from stxbench.executors.local import LOG_FILE, Outcome, run_local, run_serial, visible_gpus
from stxbench.executors.plan import Plan, make_plan
from stxbench.executors.status import in_flight, record_sweep, sweep_lock
from stxbench.executors.tasks import Task
from stxbench.run.paths import check_not_in_use
from stxbench.run.protocol import DEFAULT_PROTOCOL
from stxbench.record.schema import Record, load_record
from stxbench.run.stages import RESULT_FILE
from stxbench.run.config import RunOptions, folder_parser, usable_cpus

sweep_app = typer.Typer()
app.add_typer(sweep_app, name="sweep")
sweep_app.command("status")(status_command)


class Executor(str, Enum):
    serial = "serial"
    local = "local"
    slurm = "slurm"


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
        pruner = pruner_text(c.pruner, dict(sorted(c.pruner_params.items())))  # wraps at its spaces
        who = f"baseline {c.baseline}" if c.baseline else c.neuron  # a reference row, apart
        groups.setdefault((who, pruner, c.backend), []).append(r)
    rows = []
    for (neuron, pruner, backend), group in groups.items():
        acc = [r.metrics.accuracy for r in group]
        spread = f" ± {statistics.stdev(acc):.4f}" if len(acc) > 1 else ""
        rows.append([
            neuron, pruner, backend, len(group), f"{statistics.mean(acc):.4f}{spread}",
            f"{statistics.mean(before_finetuning(r) for r in group):.4f}",
            f"{statistics.mean(r.metrics.params_effective for r in group):,.0f}",
            f"{statistics.mean(r.metrics.sparsity for r in group):.3f}",
            "-" if None in (rates := [r.metrics.firing_rate for r in group]) else f"{statistics.mean(rates):.4f}",
        ])
    # short headers and one wrapping column: nine columns fit 100 (the header above the table
    # says what the shorthands mean)
    headers = ["neuron", "pruner", "backend", "seeds", "accuracy ± std", "before FT", "params", "sparsity", "firing"]
    legend = "accuracy: mean over seeds; before FT: before fine-tuning; params: effective; firing: rate"
    return wrap(legend) + "\n" + fit_table(rows, headers=headers, wrappable=[1])


# -- the executor ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ExecutorChoice:
    kind: Executor
    jobs: int = 1  # local: worker processes
    gpus: tuple[str, ...] = ()  # local: the GPUs the workers take in turn
    profile: slurm.SlurmProfile | None = None


def choose_executor(kind: Executor, jobs: int | None, profile_path: Path | None,
                    slurm_given: dict[str, Any], options: RunOptions) -> tuple[ExecutorChoice, RunOptions]:
    """Check the executor's options (nothing written, nothing submitted), and settle the run
    options it implies: each local worker's --threads, each SLURM job's."""
    if jobs is not None and kind is not Executor.local:
        raise UsageError(f"--jobs applies to --executor local only (got --executor {kind.value}; "
                         "a SLURM sweep caps its running jobs with --max-running)")
    if kind is not Executor.slurm and (slurm_given or profile_path):
        flag = "--slurm-profile" if profile_path else f"--{next(iter(slurm_given)).replace('_', '-')}"
        raise UsageError(f"{flag} applies to --executor slurm only")
    if kind is Executor.local:
        return choose_local(jobs, options)
    if kind is Executor.slurm:
        profile = slurm.load_profile(profile_path, slurm_given)
        if options.device.startswith("cuda:"):
            raise UsageError(f"--device {options.device} with --executor slurm: each job sees its own GPUs; "
                             "use --device cuda or auto")
        if options.device == "cuda" and profile.gpus_per_job == 0:
            raise UsageError("--device cuda with --executor slurm needs --gpus-per-job >= 1")
        slurm.check_cluster(profile, warn=lambda line: common.err_line(f"warning: {line}"))
        if options.threads is None and profile.cpus_per_job:
            options = dataclasses.replace(options, threads=profile.cpus_per_job)
        return ExecutorChoice(kind, profile=profile), options
    return ExecutorChoice(kind), options


def choose_local(jobs: int | None, options: RunOptions) -> tuple[ExecutorChoice, RunOptions]:
    gpus = visible_gpus() if options.device != "cpu" else []
    if jobs is None:
        jobs = len(gpus) or len(os.sched_getaffinity(0))
    most = max(usable_cpus(), len(gpus))  # each worker is a process with a CPU (or a GPU) of its own
    if not 1 <= jobs <= most:
        what = "CPU this process may use" + (" or visible GPU" if gpus else "")
        raise UsageError(f"--jobs must be in 1..{most} (one worker per {what} at most), got {jobs}")
    if gpus and options.device.startswith("cuda:"):
        raise UsageError(f"--device {options.device} with --executor local: each worker sees one GPU; "
                         "use --device cuda or auto")
    if options.threads is None:  # the cores shared out, rather than every worker taking all
        threads = max(1, len(os.sched_getaffinity(0)) // jobs)
        options = dataclasses.replace(options, threads=threads)
        common.err_line(f"{jobs} workers, {threads} thread(s) each (--threads)")
    return ExecutorChoice(Executor.local, jobs, tuple(gpus)), options


# -- the command ----------------------------------------------------------------------------


@sweep_app.callback(invoke_without_command=True)
@with_model_options("slurm_given", slurm.SlurmProfile, panel="SLURM (--executor slurm)")
@with_run_options
def sweep_command(
    ctx: typer.Context,
    neurons: str = typer.Option("lif", "--neuron", "-n", help="Comma-separated neurons, e.g. lif,plif,slif."),
    pruners: str | None = typer.Option(None, "--pruner",
        help="Comma-separated pruners, e.g. none,l1p,dsp [default: none; with --grid, every pruner of the grid]."),
    backends: str = typer.Option("torch", "--backend", "-b", help="Comma-separated backends."),
    seeds: str | None = typer.Option(None, "--seeds", help="Comma-separated seeds [default: the protocol's seeds]."),
    grid: bool = typer.Option(False, "--grid",
        help="Run the protocol's compression grid: every pruner and parameter set its [[grid.<pruner>]] tables list."),
    baselines: bool = typer.Option(False, "--baselines",
        help="Also run the board's reference rows (linear, ann: docs/baselines.md) for every seed, on the first backend."),
    protocol: ProtocolOption = DEFAULT_PROTOCOL,
    settings: SettingsOption = [],
    out: Path = typer.Option(Path("runs/sweep"), "--out", "-o", parser=folder_parser("--out"),
                             help="Root folder of the sweep's records."),
    quiet: QuietOption = False,
    executor: Executor = typer.Option(
        Executor.serial, "--executor", "-e", rich_help_panel="Executor",
        help="serial: one run after another in this process; local: --jobs worker processes here; "
        "slurm: SLURM job arrays (needs submitit). Dense models are trained first, once."),
    jobs: int | None = typer.Option(
        None, "--jobs", "-j", rich_help_panel="Executor", show_default=False,
        help="Worker processes of --executor local, each with its own --threads (default: the cores "
        "shared out) and its own GPU in turn over CUDA_VISIBLE_DEVICES [default: one per GPU, or per core]."),
    slurm_profile: Path | None = typer.Option(
        None, "--slurm-profile", metavar="FILE.toml", rich_help_panel="SLURM (--executor slurm)",
        help="TOML file with any of the SLURM options below (as partition = \"gpu\", gpus_per_job = 1); "
        "options given on the command line win."),
    *,
    options: RunOptions,
    slurm_given: dict[str, Any],
) -> None:
    """Run every neuron x pruner x backend x seed under one protocol (with --grid: every cell of
    its compression grid); skip finished (and queued or running) runs; print a summary table
    (mean ± std over seeds)."""
    if ctx.invoked_subcommand is not None:
        given = [(p.opts or p.secondary_opts)[0] for p in ctx.command.params
                 if getattr(ctx.get_parameter_source(p.name), "name", "DEFAULT") != "DEFAULT"]
        if given:
            raise UsageError(f"{given[0]} is an option of the sweep itself, not of 'sweep {ctx.invoked_subcommand}'")
        return
    choice, options = choose_executor(executor, jobs, slurm_profile, slurm_given, options)
    host = common.host()
    requested = options
    if choice.kind is Executor.slurm and (options.device == "auto" or options.device.startswith("cuda")):
        options = dataclasses.replace(options, device="cpu")  # checked here; resolved on the nodes
    job_cpus = choice.profile.cpus_per_job if choice.kind is Executor.slurm else None
    folder, cells = sweep_cells(host, protocol=protocol, neurons=neurons, pruners=pruners, backends=backends,
                                seeds=seeds, settings=settings, out=out, options=options, grid=grid,
                                job_cpus=job_cpus, baselines=baselines)
    done = [existing_record(c) for c in cells]  # checked before anything runs
    for cell, record in zip(cells, done):
        if record is None:
            check_not_in_use(cell.config.out_dir)
    if cells:  # workers and SLURM jobs inherit the pinned environment
        common.restart_pinned(cells[0].config.protocol, cells[0].config.device)
    fresh = next((p for p in reversed([folder, *folder.parents]) if not p.exists()), None)
    try:
        with sweep_lock(folder):
            sweep_in(folder, cells, done, choice, requested, host, protocol, quiet)
    except RunInterrupted as exc:  # resumed by the same sweep command, not by its run's
        raise RunInterrupted(exc.reason, out, exc.last_checkpoint, exc.exit_code) from None
    except KeyboardInterrupt:  # Ctrl-C in a local sweep: each worker kept its run's checkpoint
        raise RunInterrupted("interrupted", out, "of each run stopped") from None
    except UsageError:
        if fresh is not None and choice.kind is Executor.slurm:  # a refused submission
            shutil.rmtree(fresh, ignore_errors=True)
        raise



def sweep_in(folder: Path, cells: list[Cell], done: list[Record | None], choice: ExecutorChoice,
             requested: RunOptions, host, protocol: str, quiet: bool) -> None:
    pending = [c for c, r in zip(cells, done) if r is None]
    unofficial = unofficial_note(pending)
    if unofficial:
        common.err_line(unofficial)
    flight = in_flight(folder, [c.config for c in pending])
    active_runs = flight.runs
    todo = [c for c in pending if c.label not in active_runs]
    if active_runs:
        common.err_line(f"{len(active_runs)} run(s) queued or running already: not started again "
                        f"(stxbench sweep status {folder})")
    plan = make_plan([c.config for c in todo], folder, requested, active=flight.dense,
                     trained=flight.trained, train_cached=choice.kind is Executor.slurm)
    if choice.kind is Executor.serial:  # the first run of a seed trains the dense model, as always
        plan = Plan([], [dataclasses.replace(t, needs=None) for t in plan.runs])
    labels = [c.label for c in cells]
    name = cells[0].config.protocol.name if cells else ""
    if choice.kind is Executor.slurm:
        submit_slurm(folder, plan, choice.profile, labels, name, protocol)
        return
    record_sweep(folder, name, labels, plan, choice.kind.value, protocol_arg=protocol)
    if choice.kind is Executor.serial:
        ran = sweep_serial(cells, done, plan, host, quiet)
        failed = 0
    else:
        ran, failed = sweep_local(cells, plan, choice)
    records = [existing_record(c) for c in cells]
    typer.echo(summary([r for r in records if r is not None]))
    skipped = len(cells) - ran - failed - len(active_runs)
    extra = f", {len(active_runs)} elsewhere" if active_runs else ""
    typer.echo(f"{len(cells)} runs: {ran} ran, {skipped} skipped{extra}"
               f"{f', {failed} failed' if failed else ''}; records under {folder}")
    print_submit_hint(folder, protocol)
    if failed:
        raise RunFailed(f"{failed} of {len(plan.runs)} runs failed; see stxbench sweep status {folder}")


def sweep_serial(cells: list[Cell], done: list[Record | None], plan: Plan, host, quiet: bool) -> int:
    """Today's sweep: the runs one after another in this process, with progress bars."""
    console = Console(stderr=True)
    to_run = {t.label for t in plan.runs}
    index_of = {c.label: i for i, c in enumerate(cells, 1)}
    started = time.perf_counter()
    ran = 0
    for cell, record in zip(cells, done):
        if record is not None:
            common.err_line(f"[{index_of[cell.label]}/{len(cells)}] {cell.label}: done already "
                            f"(accuracy {record.metrics.accuracy:.4f}), skipped")

    def on_start(task: Task) -> None:
        common.err_line(f"[{index_of[task.label]}/{len(cells)}] {task.label}: running")

    def on_end(outcome: Outcome) -> None:
        nonlocal ran
        ran += 1
        record = load_record(outcome.task.folder / RESULT_FILE)
        elapsed = time.perf_counter() - started
        remaining = len(to_run) - ran
        eta = f", about {elapsed / ran * remaining / 60:.1f} min left" if remaining else ""
        common.err_line(f"[{index_of[outcome.task.label]}/{len(cells)}] {outcome.task.label}: accuracy "
                        f"{record.metrics.accuracy:.4f} ({elapsed / 60:.1f} min so far{eta})")

    run_serial(plan, host, reporter=lambda: None if quiet else reporter_for(console),
               warn=lambda line: common.err_line(f"warning: {line}"), on_start=on_start, on_end=on_end)
    return ran


def sweep_local(cells: list[Cell], plan: Plan, choice: ExecutorChoice) -> tuple[int, int]:
    """The plan in worker processes; one line per finished task. Returns (ran, failed) runs."""
    index_of = {c.label: i for i, c in enumerate(cells, 1)}
    started = time.perf_counter()
    counts = {"ran": 0, "failed": 0}
    common.err_line(f"{len(plan.runs)} runs and {len(plan.dense)} dense model(s) to train, "
                    f"{choice.jobs} at a time" + (f" on GPUs {','.join(choice.gpus)}" if choice.gpus else ""))

    def where(task: Task) -> str:
        return f"[{index_of[task.label]}/{len(cells)}] {task.label}" if task.kind == "run" else f"dense {task.label}"

    def on_start(task: Task) -> None:
        doing = "running" if task.kind == "run" else "training"
        common.err_line(f"{where(task)}: {doing} ({(time.perf_counter() - started) / 60:.1f} min so far; "
                        f"log: {task.folder.resolve() / LOG_FILE})")

    def on_end(outcome: Outcome) -> None:
        task = outcome.task
        minutes = (time.perf_counter() - started) / 60
        if not outcome.ok:
            counts["failed"] += task.kind == "run"
            common.err_line(f"{where(task)}: failed: {outcome.reason} (log: {outcome.log}) ({minutes:.1f} min so far)")
        elif task.kind == "run":
            counts["ran"] += 1
            record = load_record(task.folder / RESULT_FILE)
            common.err_line(f"{where(task)}: accuracy {record.metrics.accuracy:.4f} ({minutes:.1f} min so far)")
        else:
            common.err_line(f"{where(task)}: trained ({minutes:.1f} min so far)")

    run_local(plan, choice.jobs, list(choice.gpus), on_end=on_end, on_start=on_start)
    return counts["ran"], counts["failed"]


def submit_slurm(folder: Path, plan: Plan, profile: slurm.SlurmProfile, labels: list[str], name: str,
                 protocol: str) -> None:
    from stxbench.executors.slurm_jobs import submit

    if not plan.tasks:
        record_sweep(folder, name, labels, plan, "slurm", protocol_arg=protocol)
        typer.echo(f"nothing to submit: every run is done, queued or running (stxbench sweep status {folder})")
        return
    before = set(folder.rglob("*"))
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # submitit echoes sbatch's error: once is enough
            arrays = submit(plan, folder, profile)
    except Exception as exc:  # sbatch refused (its message is the reason): leave nothing behind
        for path in sorted(set(folder.rglob("*")) - before, reverse=True):  # files before their folders
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        message = " ".join(str(exc).split())[-300:]
        raise UsageError(f"sbatch refused the sweep: {message}") from None
    record_sweep(folder, name, labels, plan, "slurm", jobs=arrays, protocol_arg=protocol)
    dense = f"{len(plan.dense)} dense job(s) (array {arrays[0]}), then " if plan.dense else ""
    typer.echo(f"submitted {dense}{len(plan.runs)} run(s) (array {arrays[-1]}) from {folder}")
    typer.echo(f"follow it with: stxbench sweep status {folder}")
