"""A fake SLURM on PATH for the tests: ``sbatch`` numbers what it is given and runs nothing,
``squeue``/``sacct``/``sinfo`` print what the test wrote, ``scancel``/``scontrol`` are logged,
and `run_job` runs a submitted script as a node would (the
fake ``srun`` runs its command with the output and error files SLURM would give it)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

SCRIPTS = {
    "sbatch": """\
if [ -f "$STATE/sbatch_error" ]; then cat "$STATE/sbatch_error" >&2; exit 1; fi
n=$(cat "$STATE/next_id" 2>/dev/null || echo 1000)
echo $((n + 1)) > "$STATE/next_id"
echo "$@" >> "$STATE/sbatch_calls"
echo "Submitted batch job $n"
""",
    "srun": """\
while [ $# -gt 0 ]; do case "$1" in
    --unbuffered) shift;;
    --output) out="$2"; shift 2;;
    --error) err="$2"; shift 2;;
    *) break;;
esac; done
sub() { local s="${1//%A/$SLURM_ARRAY_JOB_ID}"; s="${s//%a/$SLURM_ARRAY_TASK_ID}"; s="${s//%t/0}"; echo "${s//%j/$SLURM_JOB_ID}"; }
out=$(sub "$out"); err=$(sub "$err"); mkdir -p "$(dirname "$out")"
exec "$@" >> "$out" 2>> "$err"
""",
    "scontrol": 'echo "$@" >> "$STATE/scontrol"\n',
    "squeue": 'cat "$STATE/queue" 2>/dev/null; exit 0\n',
    "sacct": 'cat "$STATE/sacct" 2>/dev/null; exit 0\n',
    "sinfo": 'cat "$STATE/partitions"\n',
    "scancel": 'echo "$@" >> "$STATE/scancel"\n',
}


@dataclass
class FakeSlurm:
    bin: Path
    state: Path

    def write(self, name: str, lines: list[str]) -> None:
        (self.state / name).write_text("".join(f"{line}\n" for line in lines))

    def calls(self, name: str) -> list[str]:
        path = self.state / name
        return path.read_text().splitlines() if path.exists() else []


def run_job(script: Path, job: str, index: int | None = None, wait: bool = True) -> subprocess.Popen:
    """Run ``script``, the sbatch script of job ``job``, as a node would (task ``index`` of it
    when it is an array; submitit submits a single job, not an array of one)."""
    env = {**os.environ, "SLURM_JOB_ID": job, "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0",
           "SLURM_NTASKS": "1", "SLURM_JOB_NUM_NODES": "1", "SLURM_JOB_NODELIST": "node1"}
    if index is not None:
        env |= {"SLURM_JOB_ID": str(int(job) + 500 + index), "SLURM_ARRAY_JOB_ID": job,
                "SLURM_ARRAY_TASK_ID": str(index)}
    process = subprocess.Popen(["bash", str(script)], env=env)
    if wait:
        assert process.wait(timeout=600) == 0
    return process


def install(root: Path, monkeypatch, commands=tuple(SCRIPTS), partitions=("debug", "gpu")) -> FakeSlurm:
    """Put the fake ``commands`` first on PATH (leave one out to test its absence)."""
    bin_dir, state = root / "fake-slurm-bin", root / "fake-slurm-state"
    bin_dir.mkdir()
    state.mkdir()
    for name in commands:
        path = bin_dir / name
        path.write_text(f'#!/bin/bash\nSTATE="{state}"\n{SCRIPTS[name]}')
        path.chmod(0o755)
    fake = FakeSlurm(bin_dir, state)
    fake.write("partitions", list(partitions))
    # only the fake commands and the basics they use: a real SLURM here must not answer
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    assert os.access(bin_dir / commands[0], os.X_OK) if commands else True
    return fake
