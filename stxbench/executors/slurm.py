"""``--executor slurm``: a sweep as SLURM job arrays, submitted through submitit.

Dense models first: one array trains the dense models the runs need, and the array of runs
starts after it (``--dependency=afterok:<dense array>``, with ``--kill-on-invalid-dep=yes`` so
that a failed dense job cancels the runs instead of leaving them pending forever). Every job
runs one task (`stxbench.executors.tasks.run_task`) and is requeued when it reaches the time
limit (submitit's `Checkpointable`): the run resumes from the checkpoint of its last epoch.

The resources of every job come from a profile: a small TOML file (``--slurm-profile``) whose
keys are the fields of `SlurmProfile`, each also settable on the command line (which wins).
"""

from __future__ import annotations

import getpass
import math
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from stxbench.run.errors import UsageError, unknown_choice

JOBS_FOLDER = "_slurm"  # <sweep folder>/_slurm/<job id>/: submitit's scripts, pickles and logs

#: sbatch options the executor writes itself (an extra option may not set them)
MANAGED = {"array", "dependency", "output", "error", "open-mode", "signal", "wckey",
           "kill-on-invalid-dep"}
#: sbatch options that have a field of their own
OWN_FIELD = {"partition": "partition", "p": "partition", "time": "time", "t": "time",
             "cpus-per-task": "cpus_per_job", "c": "cpus_per_job", "gpus-per-node": "gpus_per_job",
             "mem": "mem", "job-name": "job_name", "J": "job_name"}
TIME_FORMATS = "minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS"


def slurm_minutes(text: str) -> int:
    """A SLURM time limit (``--time``'s formats) in whole minutes, rounded up."""
    days, dash, rest = text.strip().partition("-")
    if not dash:
        days, rest = "0", days
    parts = rest.split(":")
    if not days.isdigit() or not all(p.isdigit() for p in parts) or len(parts) > 3 or (dash and not parts[0]):
        raise ValueError(f"'{text}' is not a SLURM time ({TIME_FORMATS})")
    numbers = [int(p) for p in parts]
    if dash:  # D-HH, D-HH:MM, D-HH:MM:SS
        hours, minutes, seconds = (numbers + [0, 0])[:3]
    elif len(numbers) == 3:
        hours, minutes, seconds = numbers
    else:  # minutes, or MM:SS
        hours, (minutes, seconds) = 0, (numbers + [0])[:2]
    total = int(days) * 1440 + hours * 60 + minutes + math.ceil(seconds / 60)
    if total < 1:
        raise ValueError(f"'{text}' is shorter than a minute")
    return total


def sbatch_option(text: str) -> tuple[str, str | bool]:
    """``--account=abc`` (or ``account=abc``, ``--exclusive``) as (key, value)."""
    key, eq, value = text.strip().lstrip("-").partition("=")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*", key):
        raise ValueError(f"'{text}' is not an sbatch option (write --name=value or --flag)")
    if key in MANAGED:
        raise ValueError(f"'{text}': the sweep sets --{key} itself")
    if key in OWN_FIELD:
        raise ValueError(f"'{text}': set {OWN_FIELD[key]} instead")
    return key, value if eq else True


class SlurmProfile(BaseModel):
    """How every job of a SLURM sweep is submitted. A TOML profile holds any of these keys; the
    command-line option of the same name (``--gpus-per-job`` for ``gpus_per_job``) wins."""

    model_config = ConfigDict(extra="forbid")

    partition: str | None = Field(None, description="Partition (sbatch --partition).")
    time: str | None = Field(None, description=f"Time limit per job ({TIME_FORMATS}); a run "
                             "that reaches it is requeued and resumes from its last epoch.")
    gpus_per_job: int = Field(0, ge=0, description="GPUs per job (sbatch --gpus-per-node).")
    cpus_per_job: int | None = Field(None, ge=1, description="CPUs per job (sbatch --cpus-per-task); "
                                     "also the job's --threads unless --threads is given.")
    mem: str | None = Field(None, description="Memory per job (sbatch --mem), e.g. 32G.")
    max_running: int | None = Field(None, ge=1, description="At most this many jobs of an array "
                                    "run at once (sbatch --array=...%N).")
    sbatch: list[str] = Field([], description="Extra sbatch option, e.g. --account=abc or --qos=high; repeatable.")
    setup: list[str] = Field([], description="Shell line run before each job (e.g. module load, source "
                             "venv/bin/activate); repeatable.")
    job_name: str = Field("stxbench", min_length=1, description="Job name.")

    @field_validator("time", mode="before")
    @classmethod
    def _time(cls, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # time = 90 in a profile: minutes
        if isinstance(value, str):
            slurm_minutes(value)
        return value

    @field_validator("mem")
    @classmethod
    def _mem(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"\d+[KMGT]?", value):
            raise ValueError(f"'{value}' is not an amount of memory (a whole number with an optional "
                             "K, M, G or T, e.g. 32G)")
        return value

    @field_validator("sbatch")
    @classmethod
    def _sbatch(cls, value: list[str]) -> list[str]:
        for item in value:
            sbatch_option(item)
        return value

    def executor_parameters(self, jobs: int) -> dict[str, Any]:
        """submitit's SlurmExecutor parameters for an array of ``jobs`` jobs."""
        params: dict[str, Any] = {
            "job_name": self.job_name,
            "array_parallelism": min(jobs, self.max_running or jobs),
            "additional_parameters": {"kill-on-invalid-dep": "yes", **dict(map(sbatch_option, self.sbatch))},
        }
        optional = {"partition": self.partition, "cpus_per_task": self.cpus_per_job, "mem": self.mem,
                    "time": slurm_minutes(self.time) if self.time else None,
                    "gpus_per_node": self.gpus_per_job or None, "setup": self.setup or None}
        return params | {k: v for k, v in optional.items() if v is not None}


def profile_errors(exc: ValidationError, path: Path | None, given: dict[str, Any]) -> UsageError:
    """Every error of a profile and of the SLURM options, on one line; an option given on the
    command line is named as its flag, a key of the profile file as the key."""
    problems = []
    for error in exc.errors():
        key = str(error["loc"][0]) if error["loc"] else "?"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = f"unknown key (valid: {', '.join(SlurmProfile.model_fields)})"
        name = f"--{key.replace('_', '-')}" if key in given else f"{path}: {key}" if path else key
        problems.append(f"{name}: {message}")
    return UsageError(f"SLURM options: {'; '.join(problems)}")


def load_profile(path: Path | None, given: dict[str, Any]) -> SlurmProfile:
    """The profile in ``path`` (if any) with the command line's values ``given`` on top (the
    lists, extra sbatch options and setup lines, are joined)."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            values = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise UsageError(f"--slurm-profile {path}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--slurm-profile {path}: cannot read it ({exc})") from None
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"--slurm-profile {path}: not TOML ({exc})") from None
    merged = {**values, **given}
    for key in ("sbatch", "setup"):  # the command line's extra lines come after the profile's
        if key in values and key in given and isinstance(values[key], list):
            merged[key] = [*values[key], *given[key]]
    try:
        return SlurmProfile(**merged)
    except ValidationError as exc:
        raise profile_errors(exc, path, given) from None


# -- the cluster ----------------------------------------------------------------------------


def check_cluster(profile: SlurmProfile, warn) -> None:
    """What would make submission fail, refused before anything is written: submitit missing,
    no ``sbatch``/``srun`` here, a partition that ``sinfo`` does not list."""
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise UsageError("--executor slurm needs submitit: pip install 'stxbench[slurm]'") from None
    for command in ("sbatch", "srun"):
        if shutil.which(command) is None:
            raise UsageError(f"--executor slurm: {command} is not on PATH (submit from a SLURM login "
                             "node, or use --executor local)")
    if profile.partition is None:
        return
    if shutil.which("sinfo") is None:
        warn(f"partition '{profile.partition}' not checked: sinfo is not on PATH (sbatch will refuse it if unknown)")
        return
    listing = _call(["sinfo", "--noheader", "--format=%R"])
    if listing is None:
        warn(f"partition '{profile.partition}' not checked: sinfo failed")
        return
    partitions = sorted({line.strip() for line in listing.splitlines() if line.strip()})
    if profile.partition not in partitions:
        raise unknown_choice("partition", profile.partition, partitions)


def _call(command: list[str]) -> str | None:
    """A SLURM command's output, or None when it fails or hangs."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def queued(job_ids: list[str]) -> dict[str, str] | None:
    """The SLURM state of those of ``job_ids`` still queued or running (``123_4`` for an array
    task); None when ``squeue`` cannot be asked."""
    if shutil.which("squeue") is None:
        return None
    out = _call(["squeue", "--noheader", "--array", "--format=%i|%T", f"--user={getpass.getuser()}"])
    if out is None:
        return None
    wanted = set(job_ids)
    states = dict(line.strip().split("|", 1) for line in out.splitlines() if "|" in line)
    return {job: state for job, state in states.items() if job in wanted}


def final_states(job_ids: list[str]) -> dict[str, str]:
    """How jobs that left the queue ended (``sacct``: TIMEOUT, OUT_OF_MEMORY, CANCELLED...);
    empty where sacct is missing or keeps no accounting."""
    if shutil.which("sacct") is None:
        return {}
    out = _call(["sacct", "--noheader", "--parsable2", "--allocations", "--format=JobID,State",
                 f"--jobs={','.join(job_ids)}"])
    if out is None:
        return {}
    return dict(line.strip().split("|", 1) for line in out.splitlines() if "|" in line)
