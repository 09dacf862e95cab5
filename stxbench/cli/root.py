"""The typer app every command registers on, and its root options (``-p``)."""

from __future__ import annotations

import typer

from stxbench.cli import common

app = typer.Typer(
    name="stxbench",
    help="Benchmark suite for efficient spiking Transformers: neurons x pruners x SNN backends, "
    "one protocol, one energy rule, a checked leaderboard.",
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback(invoke_without_command=True)
def root(
    ctx: typer.Context,
    plugin: list[str] = typer.Option(
        [], "-p", "--plugin", metavar="MODULE",
        help="Load a local plugin module (importable from the current directory or sys.path); repeatable.",
    ),
) -> None:
    """Benchmark suite for efficient spiking Transformers."""
    common.STATE.plugins = tuple(plugin)
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
