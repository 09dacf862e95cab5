"""Run options are declared once (`RunOptions`): both commands take every one of them, torchrun
children receive every one of them, and what a child parses is what the parent resolved."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest
import typer
from typer.main import get_command

from stxbench.cli import app
from stxbench.cli.options import with_run_options
from stxbench.cli.run import child_args
from stxbench.host.plugin_host import PluginHost
from stxbench.run.resolve import resolve
from stxbench.run.config import RunOptions

FIELDS = [f.name for f in dataclasses.fields(RunOptions)]


def other_value(name: str):
    """A value unlike the field's default, chosen by the field's type (so a new field is covered)."""
    hint = typing.get_type_hints(RunOptions)[name]
    default = getattr(RunOptions(), name)
    kinds = set(typing.get_args(hint)) or {hint}
    if bool in kinds:
        return not default if default is not None else True
    if int in kinds:
        return 3
    if Path in kinds:
        return Path("some/folder")
    return "cpu" if name == "device" else "fp32" if name == "precision" else "some-value"


def parse(args: list[str]) -> RunOptions:
    """What a command decorated with `with_run_options` builds from ``args``."""
    seen: list[RunOptions] = []
    probe = typer.Typer()

    @probe.command()
    @with_run_options
    def command(*, options: RunOptions) -> None:
        seen.append(options)

    get_command(probe).main(args, standalone_mode=False)
    return seen[0]


def test_defaults_parse_to_the_default_options():
    assert parse([]) == RunOptions()


@pytest.mark.parametrize("name", FIELDS)
def test_every_option_survives_to_args_and_back(name):
    options = RunOptions(**{name: other_value(name)})
    assert parse(options.to_args()) == options


def test_off_switches_and_flag_pairs_spell_as_on_the_command_line():
    assert RunOptions(counts=False, compile=True).to_args() == [
        "--device", "auto", "--precision", "auto", "--compile", "--no-counts"]
    assert "--no-compile" in RunOptions(compile=False).to_args()
    assert not any("counts" in arg for arg in RunOptions().to_args())


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_both_commands_take_every_run_option(command):
    params = get_command(app).commands[command].params
    flags = {flag for p in params for flag in (*p.opts, *p.secondary_opts)}
    for f in dataclasses.fields(RunOptions):
        for decl in f.metadata["cli"].decls:
            for flag in filter(None, (part.strip() for part in decl.split("/"))):
                assert flag in flags, f"stxbench {command} lacks {flag}"


def test_torchrun_children_get_the_resolved_run(tiny_protocol, tmp_path):
    """The parent resolves auto device, precision, compile and the cache folder; the children
    get those values pinned, and --no-counts (which they once lost)."""
    options = RunOptions(threads=1, counts=False, data_root=str(tmp_path))
    config = resolve(PluginHost(()), protocol=str(tiny_protocol), neuron="plif", pruner="l1p", backend="torch",
                     seed=None, settings=["sparsity=0.7"], out_dir=tmp_path / "out", options=options)
    args = child_args(config, str(tiny_protocol), ["sparsity=0.7"], quiet=True)
    assert args[:12] == ["--protocol", str(tiny_protocol), "--neuron", "plif", "--pruner", "l1p",
                         "--backend", "torch", "--seed", "0", "--out", str(tmp_path / "out")]
    assert args[-3:] == ["--set", "sparsity=0.7", "--quiet"]
    child = parse(args[12:-3])
    assert child == RunOptions(device="cpu", precision="fp32", threads=1, compile=False,
                               cache_dir=config.cache_dir, data_root=str(tmp_path), counts=False)
    assert child.values() == {name: getattr(config, name) for name in FIELDS}
