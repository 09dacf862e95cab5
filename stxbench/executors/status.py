"""A sweep folder's bookkeeping: its manifest, the status of every task, and its lock.

``<sweep folder>/sweep.json`` lists the sweep's runs (and the dense task each needs), its dense
tasks and its submissions; every task folder holds the ``state.json`` its worker keeps
(`stxbench.executors.tasks`). A task's status is read from both, and a task whose state says
queued or started is checked against what still exists: its process (serial, local) or its
SLURM job (``squeue``, then ``sacct`` for why it ended).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ValidationError

from stxbench.run.errors import UsageError
from stxbench.executors import slurm
from stxbench.executors.plan import Plan, dense_config, dense_path
from stxbench.executors.tasks import TaskState, process_alive, read_state
from stxbench.record.provenance import now_utc
from stxbench.record.schema import atomic_write_text
from stxbench.run.config import RunConfig
from stxbench.run.stages import RESULT_FILE

MANIFEST = "sweep.json"
LOCK = ".sweep.lock"

Status = Literal["done", "running", "queued", "failed", "missing"]
RUNNING = {"RUNNING", "COMPLETING", "CONFIGURING", "STAGE_OUT", "SIGNALING"}  # squeue's, not pending


class DenseEntry(BaseModel):
    label: str
    cache: str  # the dense checkpoint it writes


class Submission(BaseModel):
    executor: str
    submitted: str
    tasks: list[str]  # labels
    jobs: list[str] = []  # SLURM job ids (arrays)


class Manifest(BaseModel):
    protocol: str
    protocol_arg: str | None = None  # --protocol as given: a name, or a .toml path
    runs: list[str] = []  # labels, in grid order
    needs: dict[str, str] = {}  # run label -> label of the dense task it started after
    dense: list[DenseEntry] = []
    submissions: list[Submission] = []


def read_manifest(folder: Path) -> Manifest | None:
    path = folder / MANIFEST
    if not path.exists():
        return None
    try:
        return Manifest.model_validate_json(path.read_text())
    except (OSError, ValidationError) as exc:
        raise UsageError(f"{path} is not a sweep manifest ({type(exc).__name__}); was it edited?") from None


def record_sweep(folder: Path, protocol: str, labels: list[str], plan: Plan, executor: str,
                 jobs: list[str] = (), protocol_arg: str | None = None) -> None:
    """Add this submission (its runs, dense tasks and job ids) to the folder's manifest."""
    manifest = read_manifest(folder) or Manifest(protocol=protocol)
    manifest.protocol_arg = protocol_arg or manifest.protocol_arg
    manifest.runs += [label for label in labels if label not in manifest.runs]
    for task in plan.runs:
        if task.needs:
            manifest.needs[task.label] = task.needs
        else:
            manifest.needs.pop(task.label, None)
    known = {d.label for d in manifest.dense}
    manifest.dense += [DenseEntry(label=t.label, cache=str(dense_path(t.config).resolve()))
                       for t in plan.dense if t.label not in known]
    if plan.tasks:
        manifest.submissions.append(Submission(executor=executor, submitted=now_utc(),
                                               tasks=[t.label for t in plan.tasks], jobs=list(jobs)))
    atomic_write_text(folder / MANIFEST, manifest.model_dump_json(indent=2) + "\n")


@contextlib.contextmanager
def sweep_lock(folder: Path) -> Iterator[None]:
    """Held by a serial or local sweep while it runs in ``folder``: a second one is refused."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise UsageError(f"{folder} is being swept by {holder}; wait for it to finish "
                             f"(stxbench sweep status {folder})") from None
        handle.truncate(0)
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)


# -- status ---------------------------------------------------------------------------------


@dataclass
class TaskStatus:
    label: str
    kind: str
    status: Status
    reason: str = ""
    log: str | None = None
    job_id: str | None = None


class Liveness:
    """Whether the process or SLURM job behind a queued or started state still exists. SLURM is
    asked once, for all jobs (``squeue``; ``sacct`` for how the others ended)."""

    def __init__(self, states: list[TaskState]):
        pending = [s.job_id for s in states
                   if s.executor == "slurm" and s.state in ("queued", "started") and s.job_id]
        self.queue = slurm.queued(pending) if pending else {}
        gone = [job for job in pending if self.queue is not None and job not in self.queue]
        self.ended = slurm.final_states(gone) if gone else {}

    def slurm_state(self, state: TaskState) -> str | None:
        """SLURM's word for a queued or running job (PENDING, RUNNING...), None if not asked."""
        return (self.queue or {}).get(state.job_id) if state.executor == "slurm" else None

    def check(self, state: TaskState) -> tuple[bool | None, str]:
        """(True, "") alive; (False, how it ended); (None, why it cannot be told)."""
        if state.executor == "slurm":
            if not state.job_id:
                return None, "no SLURM job id recorded"
            if self.queue is None:
                return None, "not verified: squeue not found"
            if state.job_id in self.queue:
                return True, ""
            ended = self.ended.get(state.job_id)
            return False, f"SLURM job {state.job_id} ended ({ended})" if ended else \
                f"SLURM job {state.job_id} is no longer queued or running"
        if state.host != socket.gethostname():
            return None, f"not verified: its process runs on {state.host}"
        if state.pid is not None and process_alive(state.pid, state.pid_start):
            return True, ""
        return False, f"its process {state.pid} ended (killed?)"


def task_status(folder: Path, kind: str, state: TaskState | None, liveness: Liveness,
                cache: Path | None = None) -> TaskStatus:
    label = folder.name if kind == "run" else f"{folder.parent.name}/{folder.name}"
    if kind == "run" and (folder / RESULT_FILE).exists():
        return TaskStatus(label, kind, "done")
    if kind == "dense" and ((state is not None and state.state == "finished") or (cache and cache.exists())):
        return TaskStatus(label, kind, "done")  # (a node may cache it elsewhere than planned here)
    if state is None:
        return TaskStatus(label, kind, "missing")
    known = {"log": state.log, "job_id": state.job_id}
    if state.state == "finished":
        return TaskStatus(label, kind, "missing", "finished, but its result.json is gone", **known)
    if state.state == "failed":
        return TaskStatus(label, kind, "failed", state.reason or "", **known)
    alive, how = liveness.check(state)
    if alive is False:
        if state.state == "queued" and state.executor != "slurm":
            return TaskStatus(label, kind, "missing", "its sweep ended before it started", **known)
        return TaskStatus(label, kind, "failed", f"{how} without a result", **known)
    running = state.state == "started" or liveness.slurm_state(state) in RUNNING
    status: Status = "running" if running else "queued"
    note = state.reason if state.state == "queued" and state.reason else ""
    return TaskStatus(label, kind, status, "; ".join(x for x in (note, how) if x), **known)


def sweep_status(folder: Path) -> tuple[Manifest, list[TaskStatus], list[TaskStatus]]:
    """The status of every dense task and every run of the sweep in ``folder``."""
    manifest = read_manifest(folder)
    if manifest is None:
        raise UsageError(f"{folder} holds no sweep ({MANIFEST} is missing)")
    dense_dirs = {d.label: (folder / d.label, Path(d.cache)) for d in manifest.dense}
    run_dirs = {label: folder / label for label in manifest.runs}
    states = {label: read_state(path) for label, (path, _) in dense_dirs.items()}
    states |= {label: read_state(path) for label, path in run_dirs.items()}
    liveness = Liveness([s for s in states.values() if s is not None])
    dense = [task_status(path, "dense", states[label], liveness, cache)
             for label, (path, cache) in dense_dirs.items()]
    by_label = {d.label: d for d in dense}
    runs = []
    for label, path in run_dirs.items():
        status = task_status(path, "run", states[label], liveness)
        needed = by_label.get(manifest.needs.get(label, ""))
        if status.status in ("queued", "failed") and needed is not None and needed.status == "failed":
            status.status, status.reason = "failed", f"its dense model ({needed.label}) failed: {needed.reason}"
            status.log = status.log or needed.log
        runs.append(status)
    return manifest, dense, runs


@dataclass
class InFlight:
    """What an earlier submission into a sweep folder still has under way."""

    runs: set[str]  # labels of runs queued or running (their job or process is alive)
    dense: dict[Path, str | None]  # dense models being trained -> the job id of their task
    trained: set[Path]  # dense models whose task finished (cached, maybe where a node put it)


def in_flight(folder: Path, configs: list[RunConfig]) -> InFlight:
    """What is under way for the runs ``configs`` of the sweep in ``folder``. A task whose state
    says queued or started counts unless its process or job is known to be gone."""
    states = {c.out_dir.name: read_state(c.out_dir) for c in configs}
    dense_states = {dense_path(c): read_state(dense_config(c, folder).out_dir) for c in configs}
    liveness = Liveness([s for s in (*states.values(), *dense_states.values()) if s is not None])

    def alive(state: TaskState | None) -> bool:
        return state is not None and state.state in ("queued", "started") and liveness.check(state)[0] is not False

    return InFlight(
        runs={label for label, state in states.items() if alive(state)},
        dense={path: state.job_id for path, state in dense_states.items() if alive(state)},
        trained={path for path, state in dense_states.items() if state is not None and state.state == "finished"},
    )


def find_sweeps(root: Path) -> list[Path]:
    """The sweep folders at ``root``: itself, or its subfolders (one per protocol under --out)."""
    if (root / MANIFEST).exists():
        return [root]
    found = sorted(p.parent for p in root.glob(f"*/{MANIFEST}"))
    if not found:
        if not root.exists():
            raise UsageError(f"{root}: no such folder")
        if not root.is_dir():
            raise UsageError(f"{root} is not a folder (give a sweep's folder, or the --out root of sweeps)")
        raise UsageError(f"{root} holds no sweep (no {MANIFEST} in it or in its subfolders)")
    return found
