"""A sweep's unit of work and the state file its worker keeps.

A `Task` trains one dense model (``kind="dense"``) or does one run (``kind="run"``). Every
executor carries tasks out through `run_task`, which keeps ``<task folder>/state.json`` up to
date: queued (by the submitter: job id, log path), started (host, pid), finished, or failed with
a one-line reason. ``stxbench sweep status`` reads these files, and a re-submitted sweep uses
them to run only what is missing or failed.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import socket
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ValidationError

from stxbench.run.errors import RunFailed, UsageError, one_line
from stxbench.run.processes import resolve_precision
from stxbench.host.plugin_host import PluginHost
from stxbench.record.provenance import now_utc
from stxbench.record.schema import atomic_write_text
from stxbench.run.resolve import resolve_device
from stxbench.run.config import RunConfig
from stxbench.run.stages import execute, execute_dense
from stxbench.run.training import Reporter

STATE_FILE = "state.json"
DENSE_FOLDER = "_dense"  # <sweep folder>/_dense/<dense model>/: the dense tasks' folders

Kind = Literal["dense", "run"]
State = Literal["queued", "started", "finished", "failed"]


@dataclass(frozen=True)
class Task:
    """One task of a sweep. ``device`` and ``precision`` are the options as the user gave them
    (``auto``...): they are resolved where the task runs, a GPU node or a worker given one GPU,
    not where the sweep was submitted."""

    kind: Kind
    config: RunConfig
    device: str
    precision: str
    #: the dense task this run starts after (its label), None when the dense model is cached
    needs: str | None = None

    @property
    def folder(self) -> Path:
        return self.config.out_dir

    @property
    def label(self) -> str:
        return f"{DENSE_FOLDER}/{self.folder.name}" if self.kind == "dense" else self.folder.name

    def resolved(self) -> RunConfig:
        """The config with device and precision resolved on this machine."""
        device = resolve_device(self.device)
        return dataclasses.replace(self.config, device=device,
                                   precision=resolve_precision(self.precision, device))


class TaskState(BaseModel):
    """``state.json``: what the submitter and then the worker last said about a task."""

    state: State
    kind: Kind
    executor: str
    reason: str | None = None  # why it failed, one line
    job_id: str | None = None  # the scheduler's (SLURM array task "123_4"); None in-process
    log: str | None = None  # where the task's errors go
    host: str | None = None  # who last wrote this file, and its process
    pid: int | None = None
    pid_start: int | None = None  # the process's start time (tells a live pid from a reused one)
    updated: str


def read_state(folder: Path) -> TaskState | None:
    """The task's state, or None when it has none (never submitted) or it cannot be read."""
    try:
        return TaskState.model_validate_json((folder / STATE_FILE).read_text())
    except (OSError, ValidationError):
        return None


def write_state(folder: Path, state: State, kind: Kind, executor: str, **fields) -> TaskState:
    """Write the task's state (atomically), keeping the job id and log of the previous state
    when this one does not name them; stamps this process as the writer."""
    previous = read_state(folder)
    keep = {k: getattr(previous, k) for k in ("job_id", "log")} if previous else {}
    value = TaskState(state=state, kind=kind, executor=executor, **{**keep, **fields},
                      host=socket.gethostname(), pid=os.getpid(), pid_start=process_start(os.getpid()),
                      updated=now_utc())
    atomic_write_text(folder / STATE_FILE, json.dumps(value.model_dump(), indent=2) + "\n")
    return value


def process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot, from /proc), None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[19])  # field 22, counted after the command name


def process_alive(pid: int, start: int | None) -> bool:
    """Whether process ``pid`` of this machine is the one that was started at ``start``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process holds the pid
    return start is None or process_start(pid) == start


@functools.lru_cache(maxsize=4)
def plugin_host(plugins: tuple[str, ...]) -> PluginHost:
    """One plugin host per worker process (it runs task after task)."""
    return PluginHost(plugins)


def failure_reason(exc: BaseException) -> str:
    """One line saying why a task failed."""
    if isinstance(exc, (UsageError, RunFailed)):
        return " ".join(str(exc).split())
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if type(exc).__name__ == "UncompletedJobError":  # submitit gave up requeuing a SLURM job
        return f"{' '.join(str(exc).split())} (its last epoch's checkpoint is kept: raise --time and re-run the sweep)"
    return f"{one_line(exc)} (an error in stxbench: the traceback is in the log)"


def run_task(
    task: Task,
    executor: str,
    *,
    host: PluginHost | None = None,
    reporter: Reporter | None = None,
    warn: Callable[[str], None] = lambda line: print(f"warning: {line}", file=sys.stderr),
    job_id: str | None = None,
    log: str | None = None,
) -> None:
    """Carry ``task`` out, keeping its state file: started, then finished or failed (with the
    reason; an unexpected error also prints its traceback to stderr, the task's log). The
    exception is raised again for the caller to decide whether the sweep goes on."""
    ids = {k: v for k, v in (("job_id", job_id), ("log", log)) if v is not None}
    write_state(task.folder, "started", task.kind, executor, **ids)
    try:
        host = host or plugin_host(task.config.plugins)
        config = task.resolved()
        if task.kind == "dense":
            execute_dense(config, host, reporter=reporter, warn=warn)
        else:
            execute(config, host, reporter=reporter, warn=warn)
    except BaseException as exc:
        if isinstance(exc, SystemExit):  # submitit requeued the job at SLURM's signal
            write_state(task.folder, "queued", task.kind, executor,
                        reason="requeued by SLURM (time limit or preemption)")
            raise
        if not isinstance(exc, (UsageError, RunFailed, KeyboardInterrupt)):
            traceback.print_exc()
        write_state(task.folder, "failed", task.kind, executor, reason=failure_reason(exc))
        raise
    write_state(task.folder, "finished", task.kind, executor)
