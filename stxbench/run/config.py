"""A run's configuration: `RunOptions`, how a run executes (not what it runs), one declaration per
option, used everywhere; and `RunConfig`, everything one run needs, resolved and checked
(`stxbench.run.resolve` makes it).

`RunOptions` is the single model of the options every run takes: ``stxbench run`` and
``stxbench sweep`` build their command-line options from its fields (`stxbench.cli.options`),
`stxbench.run.resolve.resolve` checks and resolves them into the `RunConfig` (which extends this
class, so a resolved option is ``config.<name>``), the processes of a torchrun job receive them
through `RunOptions.to_args`, and leaderboard re-runs and the benchmark scripts construct them.

Adding a run option is a one-place change: add a field here, declared with `option` (its
default, its flag(s) as typer/click spell them, its help). Both commands then accept it, torchrun
children get it, and ``config.<name>`` holds it in the runner. Only if the value needs checking
add a line to `RunOptions.check`, and only if ``None`` means "decide later" resolve it in
`stxbench.run.resolve.resolve`. An option of one command only (sweep's ``--seeds``) is a parameter
of that command instead.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stxbench.neurons.site import Surrogate
from stxbench.run.errors import UsageError
from stxbench.run.paths import path_text
from stxbench.run.protocol import Protocol


@dataclass(frozen=True)
class CliSpec:
    """A field's command-line form: click's parameter declarations (``"--threads"``; a boolean
    as ``"--on/--off"``, or ``" /--off"`` for an off-switch alone) and the help text."""

    decls: tuple[str, ...]
    help: str
    show_default: bool = True
    #: turns the typed text into the value (a `UsageError` for text no run can use)
    parser: Callable[[str], Any] | None = None


def option(default: Any, *decls: str, help: str, show_default: bool = True,
           parser: Callable[[str], Any] | None = None) -> Any:
    """A `RunOptions` field with its command-line form."""
    return dataclasses.field(default=default, metadata={"cli": CliSpec(decls, help, show_default, parser)})


def folder_parser(flag: str) -> Callable[[str], Path]:
    """A folder option as typed: ``--cache-dir ""`` is refused, not read as the current folder."""
    return lambda raw: path_text(flag, raw)


def default_cache_dir() -> Path:
    """``$STXBENCH_CACHE``, else ``$XDG_CACHE_HOME/stxbench``, else ``~/.cache/stxbench``. An
    empty or relative ``$XDG_CACHE_HOME`` is ignored (the XDG rule); an empty or relative
    ``$HOME`` is a `UsageError` (the cache would land in ``/`` or wherever the run starts)."""
    env = os.environ.get("STXBENCH_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):
        return Path(xdg) / "stxbench"
    home = os.environ.get("HOME")
    if home is not None and not os.path.isabs(home):
        raise UsageError(
            f"$HOME is {home!r}, not an absolute path, so there is no default cache folder; "
            "set STXBENCH_CACHE or pass --cache-dir"
        )
    return Path.home() / ".cache" / "stxbench"


def cache_dir_source(cache_dir: str | os.PathLike | None) -> str:
    """Where the cache folder came from, as messages name it."""
    if cache_dir is not None:
        return "--cache-dir"
    return "$STXBENCH_CACHE" if os.environ.get("STXBENCH_CACHE") else "the default cache folder"


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass(frozen=True)
class RunOptions:
    """The options of a run as the user gave them (``None``: the default, decided per run)."""

    device: str = option("auto", "--device", help="auto (CUDA when present), cpu, cuda, cuda:N.")
    precision: str = option(
        "auto", "--precision",
        help="auto (bf16 autocast on CUDA, fp32 on CPU), fp32, bf16 (autocast, also on CPU).")
    threads: int | None = option(None, "--threads", help="CPU threads for torch [default: torch's].")
    workers: int | None = option(
        None, "--workers",
        help="DataLoader workers for file-backed datasets [default: 0 on CPU, up to 8 per GPU].")
    compile: bool | None = option(
        None, "--compile/--no-compile",
        help="Run the neuron layers through torch.compile (same results; compiling costs seconds "
        "to a minute, cached, and later runs reuse the graphs) [default: the protocol's, or the "
        "backend's: spikingjelly compiles on CPU].")
    cache_dir: Path | None = option(
        None, "--cache-dir",
        help="Where dense checkpoints are cached [default: $STXBENCH_CACHE or ~/.cache/stxbench].",
        parser=folder_parser("--cache-dir"))
    data_root: str | None = option(
        None, "--data-root", help="Folder holding a dataset that does not ship with a package.",
        parser=lambda raw: str(path_text("--data-root", raw)))
    counts: bool = option(
        True, " /--no-counts", show_default=False,
        help="Skip op counting: the record holds no counts and no energy.")

    def check(self, cpus: int | None = None) -> None:
        """Refuse values no run can use (one line each, as `UsageError`). ``cpus``: the CPUs of
        the job the run will have, when it runs elsewhere (a SLURM job); else this process's."""
        where = "the CPUs of each job" if cpus else "the CPUs this process may use"
        cpus = cpus or usable_cpus()
        if self.threads is not None and not 1 <= self.threads <= cpus:
            raise UsageError(f"--threads must be in 1..{cpus} ({where}), got {self.threads}")
        if self.workers is not None and not 0 <= self.workers <= cpus:
            raise UsageError(f"--workers must be in 0..{cpus} ({where}), got {self.workers}")

    def values(self) -> dict[str, Any]:
        """The options by field name (to build a `RunConfig` from them)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(RunOptions)}

    def to_args(self) -> list[str]:
        """These options as ``stxbench run`` arguments: what every process of a torchrun job gets.
        On a resolved `RunConfig` they pin what was resolved (device, precision, compile, cache)."""
        args: list[str] = []
        for f in dataclasses.fields(RunOptions):
            value, decls = getattr(self, f.name), f.metadata["cli"].decls
            on, slash, off = decls[0].partition("/")
            if slash:  # a boolean flag pair: the flag that says the value (None: the default)
                flag = (on if value else off).strip() if value is not None else ""
                args += [flag] if flag else []
            elif value is not None:
                args += [decls[0], str(value)]
        return args


@dataclass(frozen=True, kw_only=True)
class RunConfig(RunOptions):
    """Everything one run needs, resolved and checked: what it runs, and its `RunOptions` with
    every default decided (device, precision, compile and cache folder pinned)."""

    protocol: Protocol
    protocol_sha256: str
    official: bool
    overrides: dict[str, Any]
    neuron: str
    pruner: str
    pruner_params: dict[str, Any]
    backend: str
    seed: int
    out_dir: Path
    plugins: tuple[str, ...] = ()
    device: str
    precision: str  # fp32 or bf16 (autocast)
    compile: bool  # neuron layers through torch.compile (stxbench.neurons.compile)
    cache_dir: Path
    #: a board's reference row (`stxbench.run.baselines`): ``protocol`` is then the baseline's, and
    #: ``protocol_sha256`` the board protocol's
    baseline: str | None = None

    @property
    def surrogate(self) -> Surrogate:
        m = self.protocol.model
        return Surrogate(m.surrogate, m.surrogate_alpha)
