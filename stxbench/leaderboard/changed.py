"""``check --rerun-changed BASE``: the entries added or modified since a git revision."""

from __future__ import annotations

import subprocess
from pathlib import Path

from stxbench.run.errors import UsageError
from stxbench.leaderboard.store import Entry


def _git(folder: Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"git failed: {exc}") from None
    if done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, args, done.stdout, done.stderr)
    return done.stdout


def changed_since(root: Path, base: str) -> set[Path]:
    """Files under ``root`` added or modified since the commit ``base`` (committed or not, and
    untracked ones), as resolved paths."""
    root = root.resolve()
    if not base or base.startswith("-"):
        raise UsageError(f"--rerun-changed {base!r}: not a git revision (give a commit, branch or tag, e.g. HEAD~3)")
    try:
        top = Path(_git(root, "rev-parse", "--show-toplevel").strip())
    except subprocess.CalledProcessError:
        raise UsageError(f"--rerun-changed: {root} is not in a git checkout") from None
    try:
        commit = _git(root, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{base}^{{commit}}").strip()
    except subprocess.CalledProcessError:
        raise UsageError(f"--rerun-changed {base}: not a commit of this repository "
                         "(give a commit, branch or tag, e.g. HEAD~3 or origin/main)") from None
    diff = _git(root, "diff", "--name-only", "--no-renames", "--diff-filter=AMT", "-z", commit, "--", str(root))
    untracked = _git(root, "ls-files", "--others", "--exclude-standard", "-z", "--full-name", "--", str(root))
    names = [n for n in (diff + untracked).split("\0") if n]
    return {(top / name).resolve() for name in names}


def changed_entries(entries: list[Entry], root: Path, base: str) -> list[Entry]:
    changed = changed_since(root, base)
    return [entry for entry in entries if entry.path.resolve() in changed]
