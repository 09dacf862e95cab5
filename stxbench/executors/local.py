"""``--executor serial`` and ``--executor local``: a sweep's tasks on this machine.

serial runs the runs one after another in this process (the first run of a seed trains its
dense model), and stops at the first failure. local runs the tasks in ``--jobs`` worker
processes (`concurrent.futures` over spawned processes, each with its own ``--threads`` and,
where there are GPUs, its own GPU), dense tasks first: a run is handed to a worker once its
dense model is in the cache. A failed task does not stop the others; the runs whose dense model
failed are failed without starting. Each task's output goes to ``<task folder>/sweep.log``.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from stxbench.executors.plan import Plan
from stxbench.executors.tasks import Task, failure_reason, read_state, run_task, write_state
from stxbench.host.plugin_host import PluginHost
from stxbench.run.signals import SignalInterrupt, Terminated, signals_as_interrupts
from stxbench.run.training import Reporter

LOG_FILE = "sweep.log"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
#: how often the parent looks for tasks that have started (to announce them), in seconds
POLL_SECONDS = 2.0


@dataclass
class Outcome:
    task: Task
    ok: bool
    reason: str = ""
    log: str | None = None


def run_serial(plan: Plan, host: PluginHost, *, reporter: Callable[[], Reporter | None],
               warn: Callable[[str], None], on_start: Callable[[Task], None],
               on_end: Callable[[Outcome], None]) -> None:
    """The runs of ``plan`` in this process, in order; a failure is raised (the sweep stops)."""
    for task in plan.runs:
        on_start(task)
        run_task(task, "serial", host=host, reporter=reporter(), warn=warn)
        on_end(Outcome(task, True))


def visible_gpus() -> list[str]:
    """The GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` as given, else every CUDA device."""
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        return [g.strip() for g in given.split(",") if g.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def run_local(plan: Plan, jobs: int, gpus: list[str], *, on_end: Callable[[Outcome], None],
              on_start: Callable[[Task], None] = lambda task: None) -> list[Outcome]:
    """The tasks of ``plan`` in ``jobs`` worker processes, dense tasks first; worker ``k`` sees
    GPU ``gpus[k % len(gpus)]`` alone (none when ``gpus`` is empty). ``on_start`` hears of a task
    once a worker has begun it (within `POLL_SECONDS`, at the latest just before it ends),
    ``on_end`` when it ends. Returns every outcome."""
    for task in plan.tasks:
        write_state(task.folder, "queued", task.kind, "local", reason=None, job_id=None, log=None)
    waiting: dict[str, list[Task]] = {t.label: [] for t in plan.dense}
    ready: list[Task] = list(plan.dense)
    for task in plan.runs:  # (a dense model another sweep trains: the dense lock makes it wait)
        waiting[task.needs].append(task) if task.needs in waiting else ready.append(task)
    outcomes: list[Outcome] = []

    def finish(outcome: Outcome) -> None:
        outcomes.append(outcome)
        on_end(outcome)
        if outcome.task.kind != "dense":
            return
        for run in waiting.pop(outcome.task.label, []):
            if outcome.ok:
                ready.append(run)
            else:
                reason = f"its dense model ({outcome.task.label}) failed: {outcome.reason}"
                write_state(run.folder, "failed", run.kind, "local", reason=reason)
                finish(Outcome(run, False, reason, outcome.log))

    while ready:  # one pool; a new one only if a worker died and broke it
        with worker_pool(jobs, gpus) as pool:
            running: dict[Future, Task] = {}
            announced: set[str] = set()
            while ready or running:
                while ready:
                    task = ready.pop(0)
                    running[pool.submit(work, task)] = task
                done, _ = wait(running, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
                for future, task in running.items():  # a long dense model is not silent until it ends
                    # only futures the pool has handed out (at most jobs + 1) can have started
                    if task.label not in announced and (ended_well(future, done)
                                                        or future.running() and started(task)):
                        announced.add(task.label)
                        on_start(task)
                broken = False
                for future in done:
                    task = running.pop(future)
                    try:
                        finish(future.result())
                    except BrokenProcessPool:
                        broken = True
                        finish(died(task)) if started(task) else ready.append(task)
                if broken:
                    for future, task in running.items():
                        finish(died(task)) if started(task) else ready.append(task)
                    break
    return outcomes


def ended_well(future: Future, done: set[Future]) -> bool:
    """Whether the worker ran ``future``'s task to its end (a broken pool ends it unrun)."""
    return future in done and future.exception() is None


def started(task: Task) -> bool:
    state = read_state(task.folder)
    return state is not None and state.state == "started"


def died(task: Task) -> Outcome:
    reason = "its worker process died (killed, or out of memory?)"
    write_state(task.folder, "failed", task.kind, "local", reason=reason)
    return Outcome(task, False, reason, str(task.folder.resolve() / LOG_FILE))


@contextlib.contextmanager
def worker_pool(jobs: int, gpus: list[str]) -> Iterator[ProcessPoolExecutor]:
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no CUDA state, no forks of torch
    devices = context.SimpleQueue()
    for k in range(jobs):
        devices.put(gpus[k % len(gpus)] if gpus else None)
    pool = ProcessPoolExecutor(jobs, mp_context=context, initializer=start_worker, initargs=(devices, os.getpid()))
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


_parent_pid: int | None = None


def die_with_parent(parent_pid: int) -> None:
    """SIGTERM to this process when the process that started it ends (Linux; elsewhere a no-op),
    and exit at once if it has ended already."""
    global _parent_pid
    _parent_pid = parent_pid
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if parent_gone():  # it died before the request above: nobody will send it
        os._exit(Terminated.exit_code)


def parent_gone() -> bool:
    return _parent_pid is not None and os.getppid() != _parent_pid


def start_worker(devices, parent_pid: int) -> None:
    """Worker start: tied to the sweep's life, then this worker's GPU, before anything asks CUDA
    what it sees. Ctrl-C reaches a worker only while it runs a task (`work`), which then stops
    with its checkpoint kept."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(parent_pid)
    gpu = devices.get()
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu


def work(task: Task) -> Outcome:
    """A worker's task, its output (Python's and the libraries') appended to its log."""
    log = task.folder.resolve() / LOG_FILE
    try:
        with signals_as_interrupts(), output_to(log):
            run_task(task, "local", log=str(log))
    except BaseException as exc:  # the state file says why; the parent is told too
        if isinstance(exc, SignalInterrupt) and parent_gone():
            os._exit(exc.exit_code)  # nobody is left to tell: stop, the checkpoint is kept
        return Outcome(task, False, failure_reason(exc), str(log))
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    return Outcome(task, True, log=str(log))


@contextlib.contextmanager
def output_to(log: Path) -> Iterator[None]:
    """File descriptors 1 and 2 of this process appended to ``log`` (then restored)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush(), sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(log, "a") as handle:
        os.dup2(handle.fileno(), 1), os.dup2(handle.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])
