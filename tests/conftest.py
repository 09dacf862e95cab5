"""Shared fixtures: a tiny protocol (seconds, not minutes), the CLI as a user runs it."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
import torch
# the shared helpers' one home is helpers.py; re-exported here for `from conftest import ...`
from helpers import TINY_PROTOCOL, CliResult, run_args, run_cli, sweep_args, write_tiny_protocol  # noqa: F401

# Tests run on a shared 2-core machine; one thread keeps them deterministic and polite.
torch.set_num_threads(1)

# The torch backend compiles its fused neuron kernels (stxbench_backend_torch.fused) on first use.
# One kernel cache serves the whole session and later ones (torch's own folder under /tmp), so a
# kernel is compiled once per machine rather than once per test's --cache-dir.
if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    os.environ["TORCHINDUCTOR_CACHE_DIR"] = default_cache_dir()


#: what the terminal-size variables were in the process that ran pytest
_TERMINAL_VARIABLES = ("COLUMNS", "LINES")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """pytest-xdist (controller): hand each worker the terminal-size variables pytest ran with."""
    node.workerinput["terminal_variables"] = {name: os.environ.get(name) for name in _TERMINAL_VARIABLES}


def pytest_configure(config):
    """Under ``-n N`` (pytest-xdist) a file's tests run in one process (``--dist loadfile``, unless
    ``--dist`` is given), so a module-scoped fixture (a module's shared runs) is made once, not
    once per process. In an xdist worker, the terminal-size variables are those of the process
    that ran pytest: a worker starts with COLUMNS=80, and the CLI lays its tables out at $COLUMNS
    (else 100 columns when not on a terminal), so tests reading its tables would see them wrapped."""
    explicit = any(arg.startswith("--dist") for arg in config.invocation_params.args)
    if getattr(config.option, "dist", "no") == "load" and not explicit:
        config.option.dist = "loadfile"
    given = getattr(config, "workerinput", {}).get("terminal_variables")
    for name, value in (given or {}).items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Every test starts with one torch thread: an in-process run with ``--threads 2`` sets
    torch's count for the process, and the tests after it would otherwise run (and key their
    dense models) on two."""
    yield
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


@pytest.fixture
def tiny_protocol(tmp_path: Path) -> Path:
    """A protocol file that trains spikformer-1-32 (T=2, 4 tokens) on digits for 2 + 1 epochs
    (about 2 s; reaches roughly 0.5-0.6 accuracy, so predictions are not constant)."""
    return write_tiny_protocol(tmp_path)


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch):
    """``plugin_dir(name, source)`` writes the test plugin module ``name`` (its ``source``,
    dedented) where it imports, as a user's ``-p name`` would; returns ``name``."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(name: str, source: str) -> str:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        return name

    return write


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
    """An empty dense cache of this test's own: for tests that count what the cache holds or
    need a run to train its dense model."""
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One dense cache for the whole session (for each xdist process): a test whose runs only
    need *a* dense model of the tiny protocol (not to train it, nor to count the cache's files)
    takes it from here, so the tiny dense model is trained once per process, not once per test.
    Not shared between processes: a run that finds another process holding the dense model's
    lock says so on stderr ("waiting for process ..."), which tests of exact output would trip on."""
    return tmp_path_factory.mktemp("shared-dense-cache")


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory):
    """Real records of the tiny protocol (lif seeds 0 and 1, plif seed 0, an unofficial run),
    made once per session through the CLI; see leaderboard_records.py."""
    from leaderboard_records import make_tiny_runs

    return make_tiny_runs(tmp_path_factory.mktemp("tiny-runs"))


#: fixtures that drive stxbench through its CLI or hand a test real runs of the tiny protocol: a
#: test using one is in the integration tier unless it is marked e2e
INTEGRATION_FIXTURES = frozenset({"cli", "tiny_protocol", "tiny_runs", "cache_dir", "shared_cache"})


def pytest_collection_modifyitems(config, items):
    """Every test lands in one tier: ``e2e`` (marked by hand), ``integration`` (marked by hand or
    using a fixture of INTEGRATION_FIXTURES), else ``unit``; ``-m unit`` / ``-m integration`` /
    ``-m e2e`` select one (CONTRIBUTING.md, "Running the tests")."""
    for item in items:
        if item.get_closest_marker("e2e") is not None or item.get_closest_marker("integration") is not None:
            continue
        if INTEGRATION_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
        else:
            item.add_marker(pytest.mark.unit)
