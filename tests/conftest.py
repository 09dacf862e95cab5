"""Shared fixtures: a tiny protocol (seconds, not minutes), the CLI as a user runs it."""

from __future__ import annotations

import io
import os
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

# Tests run on a shared 2-core machine; one thread keeps them deterministic and polite.
torch.set_num_threads(1)

# The torch backend compiles its fused neuron kernels (stxbench_backend_torch.fused) on first use.
# One kernel cache serves the whole session and later ones (torch's own folder under /tmp), so a
# kernel is compiled once per machine rather than once per test's --cache-dir.
if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    os.environ["TORCHINDUCTOR_CACHE_DIR"] = default_cache_dir()

TINY_PROTOCOL = """
name = "tiny"
description = "digits with a tiny model and few epochs, for tests"
cpu_cheap = true
accuracy_tolerance = 0.05
seeds = [0, 1]

[data]
dataset = "digits"

[model]
name = "spikformer-1-32"
T = 2

[model.options]
pools = 2

[train]
epochs = {dense_epochs}
batch_size = 32
lr = 5e-3
weight_decay = 0.01

[finetune]
epochs = 1
batch_size = 32
lr = 1e-3

[eval]
batch_size = 360
"""


@pytest.fixture
def tiny_protocol(tmp_path: Path) -> Path:
    """A protocol file that trains spikformer-1-32 (T=2, 4 tokens) on digits for 2 + 1 epochs
    (about 2 s; reaches roughly 0.5-0.6 accuracy, so predictions are not constant)."""
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_PROTOCOL.format(dense_epochs=2))
    return path


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


def run_cli(*args: str) -> CliResult:
    """Run ``stxbench ARGS`` in-process, as a user would, returning exit code and output."""
    from stxbench.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return CliResult(code, out.getvalue(), err.getvalue())


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def no_cxx(tmp_path: Path, monkeypatch):
    """No working C++ compiler, as on a machine without one, and an empty kernel cache."""
    import torch._inductor.config as inductor_config

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "empty-kernel-cache"))
    # patched inductor's own way: monkeypatch's undo deletes a config key for good
    with inductor_config.patch({"cpp.cxx": (None, str(tmp_path / "no-such-g++"))}):
        yield


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory):
    """Real records of the tiny protocol (lif seeds 0 and 1, plif seed 0, an unofficial run),
    made once per session through the CLI; see leaderboard_records.py."""
    from leaderboard_records import make_tiny_runs

    return make_tiny_runs(tmp_path_factory.mktemp("tiny-runs"))
