"""How a run executes (not what it runs): one declaration per option, used everywhere.

`RunOptions` is the single model of the options every run takes: ``stxbench run`` and
``stxbench sweep`` build their command-line options from its fields (`stxbench.cli.options`),
`stxbench.runconfig.resolve` checks and resolves them into the `RunConfig` (which extends this
class, so a resolved option is ``config.<name>``), the processes of a torchrun job receive them
through `RunOptions.to_args`, and leaderboard re-runs and the benchmark scripts construct them.

Adding a run option is a one-place change: add a field here, declared with `option` (its
default, its flag(s) as typer/click spell them, its help). Both commands then accept it, torchrun
children get it, and ``config.<name>`` holds it in the runner. Only if the value needs checking
add a line to `RunOptions.check`, and only if ``None`` means "decide later" resolve it in
`stxbench.runconfig.resolve`. An option of one command only (sweep's ``--seeds``) is a parameter
of that command instead.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stxbench.errors import UsageError


@dataclass(frozen=True)
class CliSpec:
    """A field's command-line form: click's parameter declarations (``"--threads"``; a boolean
    as ``"--on/--off"``, or ``" /--off"`` for an off-switch alone) and the help text."""

    decls: tuple[str, ...]
    help: str
    show_default: bool = True


def option(default: Any, *decls: str, help: str, show_default: bool = True) -> Any:
    """A `RunOptions` field with its command-line form."""
    return dataclasses.field(default=default, metadata={"cli": CliSpec(decls, help, show_default)})


def default_cache_dir() -> Path:
    env = os.environ.get("STXBENCH_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "stxbench"


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
        "to a minute, cached, and later runs reuse the graphs) [default: the protocol's].")
    cache_dir: Path | None = option(
        None, "--cache-dir",
        help="Where dense checkpoints are cached [default: $STXBENCH_CACHE or ~/.cache/stxbench].")
    data_root: str | None = option(
        None, "--data-root", help="Folder holding a dataset that does not ship with a package.")
    counts: bool = option(
        True, " /--no-counts", show_default=False,
        help="Skip op counting: the record holds no counts and no energy.")

    def check(self) -> None:
        """Refuse values no run can use (one line each, as `UsageError`)."""
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"--threads must be >= 1, got {self.threads}")
        if self.workers is not None and self.workers < 0:
            raise UsageError(f"--workers must be >= 0, got {self.workers}")

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
