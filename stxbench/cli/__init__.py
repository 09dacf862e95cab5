"""The ``stxbench`` command line (typer). Each command lives in its own module here.

User mistakes (`UsageError`, click's usage errors) print one line and exit 2; a run that cannot
finish honestly (`RunFailed`) prints one line and exits 1; nothing half-written is left behind.
"""

from __future__ import annotations

import shlex
import sys

import typer

from stxbench.cli import common
from stxbench.errors import RunFailed, RunInterrupted, UsageError

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


def _register() -> None:
    from stxbench.cli import (  # noqa: F401  (commands register themselves on import)
        compare,
        energy,
        leaderboard,
        listing,
        parity,
        run,
        sweep,
    )


_register()


def resume_command(argv: list[str] | None, out_dir) -> str:
    """The command that continues an interrupted run: the same one, with its --out."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not any(a in ("--out", "-o") or a.startswith("--out=") for a in args):
        args += ["--out", str(out_dir)]
    return shlex.join(["stxbench", *args])


def main(argv: list[str] | None = None) -> None:
    common.STATE.argv = tuple(sys.argv[1:] if argv is None else argv)
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # `-p module` finds modules in the current directory, like python -m
    try:
        code = app(args=argv, prog_name="stxbench", standalone_mode=False)
    except UsageError as exc:
        common.err_line(f"error: {exc}")
        sys.exit(2)
    except RunInterrupted as exc:
        common.err_line(f"error: {exc}; resume with: {resume_command(argv, exc.out_dir)}")
        sys.exit(exc.exit_code)
    except RunFailed as exc:
        common.err_line(f"error: {exc}")
        sys.exit(1)
    except typer.Abort:
        common.err_line("aborted")
        sys.exit(130)
    except Exception as exc:
        # click's usage errors (typer vendors click in recent versions, so match by shape)
        if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):
            raise
        hint = ""
        ctx = getattr(exc, "ctx", None)
        if ctx is not None:
            hint = f" (see '{ctx.command_path} --help')"
        common.err_line(f"error: {exc.format_message()}{hint}".replace("\n", " "))
        sys.exit(exc.exit_code)
    if isinstance(code, int) and code:
        sys.exit(code)
