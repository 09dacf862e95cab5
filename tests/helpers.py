"""The one home of what tests share to drive stxbench: the tiny protocol, the CLI run in-process,
and the argument lists of ``stxbench run`` / ``stxbench sweep`` (conftest.py re-exports them, so
``from conftest import TINY_PROTOCOL, run_cli`` keeps working)."""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

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


def tiny_protocol_text(dense_epochs: int = 2) -> str:
    """The tiny protocol's TOML with ``dense_epochs`` dense epochs (the fixture's protocol: 2)."""
    return TINY_PROTOCOL.format(dense_epochs=dense_epochs)


def write_tiny_protocol(folder: Path, dense_epochs: int = 2, name: str = "tiny.toml") -> Path:
    """Write the tiny protocol into ``folder/name`` and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(tiny_protocol_text(dense_epochs))
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


def run_args(protocol, out, cache, *extra, threads: str | None = "1") -> list[str]:
    """``run --protocol P --out O --cache-dir C [--threads N] -q EXTRA``: the arguments of a quiet
    run into ``out`` with its dense cache in ``cache`` (one thread unless ``threads`` says
    otherwise; ``threads=None`` leaves the option out, torch's count)."""
    threads_args = ["--threads", str(threads)] if threads is not None else []
    return ["run", "--protocol", str(protocol), "--out", str(out), "--cache-dir", str(cache),
            *threads_args, "-q", *extra]


def sweep_args(protocol, out, cache, *extra, threads: str | None = None) -> list[str]:
    """``sweep --protocol P --device cpu [--threads N] --out O --cache-dir C -q EXTRA``."""
    threads_args = ["--threads", str(threads)] if threads is not None else []
    return ["sweep", "--protocol", str(protocol), "--device", "cpu", *threads_args, "--out", str(out),
            "--cache-dir", str(cache), "-q", *extra]


def lb(cli, command: str, root, protocol_dir, *args: str):
    """``stxbench leaderboard COMMAND --root ROOT --protocol-dir DIR ARGS`` through ``cli``."""
    return cli("leaderboard", command, "--root", str(root), "--protocol-dir", str(protocol_dir), *args)


def backend_source(cls: str, name: str, summary: str, neuron: str, base: str = "Backend", families: str = "") -> str:
    """The source of a test plugin's backend class ``cls`` (registered as ``name``), whose
    neurons are ``neuron(spec, site, surrogate)`` modules; ``families``: its ``families = ...``
    line's value, for a backend of other families than lif."""
    lines = [f"class {cls}({base}):", f"    name = {name!r}", f"    summary = {summary!r}"]
    if families:
        lines.append(f"    families = {families}")
    lines += ["", "    def make_neuron(self, spec, site, surrogate):", "        self.check_neuron(spec, surrogate)",
              f"        return {neuron}(spec, site, surrogate)"]
    return "\n".join(lines) + "\n"


def backends_hook(*classes: str) -> str:
    """The source of a test plugin's ``stxbench_add_backends``, returning one of each class."""
    return f"@hookimpl\ndef stxbench_add_backends():\n    return [{', '.join(f'{c}()' for c in classes)}]\n"
