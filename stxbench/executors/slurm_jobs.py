"""Submitting a sweep's plan as SLURM job arrays with submitit (imported here only: the
``stxbench[slurm]`` extra), and the job every array task runs."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import submitit
from submitit.helpers import Checkpointable

from stxbench.executors.plan import Plan
from stxbench.executors.slurm import JOBS_FOLDER, SlurmProfile
from stxbench.executors.tasks import Task, run_task, write_state


class SweepJob(Checkpointable):
    """One task in a SLURM job (or a submitit local job). Checkpointable: at the time limit
    submitit requeues the job, and the run resumes from its last epoch's checkpoint."""

    def __call__(self, task: Task) -> None:
        env = submitit.JobEnvironment()  # "slurm"; "local" when tests run it with LocalExecutor
        run_task(task, env.cluster, job_id=env.job_id, log=str(env.paths.stderr))


def make_executor(folder: Path, profile: SlurmProfile, jobs: int) -> submitit.SlurmExecutor:
    executor = submitit.SlurmExecutor(folder=folder / JOBS_FOLDER / "%j", python=shlex.quote(sys.executable))
    executor.update_parameters(**profile.executor_parameters(jobs))
    return executor


def submit(plan: Plan, folder: Path, profile: SlurmProfile) -> list[str]:
    """Submit the dense array, then the array of runs after it; then write every task's state
    (queued, its job id and log). Returns the arrays' job ids. If the second submission fails,
    the first array is cancelled: a sweep is submitted whole or not at all."""
    arrays: list[str] = []
    submitted: list[tuple[list[Task], list[submitit.Job]]] = []
    after = list(plan.waits_for)
    try:
        if plan.dense:
            jobs = make_executor(folder, profile, len(plan.dense)).map_array(SweepJob(), plan.dense)
            submitted.append((plan.dense, jobs))
            arrays.append(jobs[0].job_id.split("_")[0])
            after.append(arrays[-1])
        if plan.runs:
            executor = make_executor(folder, profile, len(plan.runs))
            if after:
                executor.update_parameters(dependency="afterok:" + ":".join(after))
            jobs = executor.map_array(SweepJob(), plan.runs)
            submitted.append((plan.runs, jobs))
            arrays.append(jobs[0].job_id.split("_")[0])
    except BaseException:
        for array in arrays:
            subprocess.run(["scancel", array], capture_output=True, timeout=60, check=False)
        raise
    for tasks, jobs in submitted:
        mark_queued(tasks, jobs)
    return arrays


def mark_queued(tasks: list[Task], jobs: list[submitit.Job]) -> None:
    for task, job in zip(tasks, jobs):
        write_state(task.folder, "queued", task.kind, "slurm", job_id=job.job_id,
                    log=str(job.paths.stderr), reason=None)
