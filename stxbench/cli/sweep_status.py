"""``stxbench sweep status DIR``: done / running / queued / failed / missing per run of a sweep,
the reason and log of every failure, and the command that submits the finished records."""

from __future__ import annotations

import shlex
from collections import Counter
from pathlib import Path

import typer
from stxbench.cli.layout import fit_table, wrap

from stxbench.executors.status import TaskStatus, find_sweeps, sweep_status
from stxbench.record.schema import load_record
from stxbench.run.stages import RESULT_FILE

ORDER = ("done", "running", "queued", "failed", "missing")


def status_command(
    folder: Path = typer.Argument(..., metavar="DIR", help="A sweep's folder, or the --out root holding sweeps."),
) -> None:
    """Where a sweep stands: every run (and dense model) done, running, queued, failed (with the
    reason and the log) or missing. Re-running the sweep's command runs what is failed or missing."""
    for sweep in find_sweeps(folder):
        manifest, dense, runs = sweep_status(sweep)
        typer.echo(f"{manifest.protocol} ({sweep}): {len(runs)} runs: {counts(runs)}")
        if dense:
            typer.echo(f"dense models: {counts(dense)}")
        tasks = [*dense, *runs]
        rows = [[s.label, s.status, s.job_id if s.status != "done" and s.job_id else "", note(s)] for s in tasks]
        typer.echo(fit_table(rows, headers=["task", "status", "job", "note"]))
        for s in tasks:  # one line each: a reason and a log path do not fit a table
            if s.status == "failed":
                typer.echo(wrap(f"failed {s.label}: {s.reason}" + (f" (log: {s.log})" if s.log else "")))
        hint = submit_hint(sweep, manifest.protocol_arg)
        if hint:
            typer.echo(wrap(hint))


def counts(statuses: list[TaskStatus]) -> str:
    found = Counter(s.status for s in statuses)
    return ", ".join(f"{found[name]} {name}" for name in ORDER if found[name] or name in ("done", "missing"))


def note(status: TaskStatus) -> str:
    """A short note for the table (a failure's reason is printed below it)."""
    return "see below" if status.status == "failed" else status.reason


def submit_hint(folder: Path, protocol_arg: str | None) -> str | None:
    """The ``leaderboard submit`` command for the sweep's finished official records."""
    done = sorted(folder.glob(f"*/{RESULT_FILE}"))
    if not done:
        return None
    official = [path for path in done if load_record(path).protocol.official]
    if not official:
        return (f"the {len(done)} finished record(s) are unofficial (protocol changed with --set, or "
                "seeds not the protocol's): they cannot go to the leaderboard")
    paths = (f"{shlex.quote(str(folder))}/*/{RESULT_FILE}" if len(official) == len(done)
             else " ".join(shlex.quote(str(p)) for p in official))
    where = ""
    if protocol_arg and protocol_arg.endswith(".toml"):
        where = f" --protocol-dir {shlex.quote(str(Path(protocol_arg).parent))}"
    return f"submit the {len(official)} finished record(s): stxbench leaderboard submit {paths}{where}"


def print_submit_hint(folder: Path, protocol_arg: str | None) -> None:
    hint = submit_hint(folder, protocol_arg)
    if hint:
        typer.echo(hint)
