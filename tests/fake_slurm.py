"""A fake SLURM on PATH for the tests: ``sbatch`` numbers and keeps what it is given (it runs
nothing), ``squeue``/``sacct``/``sinfo`` print what the test wrote, ``scancel`` is logged."""

from __future__ import annotations

import os
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
    "srun": "exit 0\n",
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
