"""The ``stxbench`` command line (typer). Each command lives in its own module here and
registers itself on the app of `stxbench.cli.root`; importing them here builds the whole CLI.

User mistakes (`UsageError`, click's usage errors) print one line and exit 2; a run that cannot
finish honestly (`RunFailed`) prints one line and exits 1; nothing half-written is left behind.
"""

from __future__ import annotations

import os

# OpenMP threads that wait by spinning keep their core: two runs with the default threads on one
# machine then wait at every barrier of the compiled kernels for a thread the other run's spinning
# threads keep off the CPU (measured: 1.6 steps/s each instead of 21 alone; with sleeping waiters
# no collapse, benchmarks/concurrent_runs.py). torch's OpenMP reads this once, when it loads:
# before any import of torch. A value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import shlex  # noqa: E402  (the environment above must be set before torch loads)
import sys
import traceback
from pathlib import Path

import typer

from stxbench.cli import (  # noqa: F401  (each command module registers its commands on app)
    common,
    compare,
    energy,
    leaderboard,
    listing,
    parity,
    run,
    sweep,
)
from stxbench.cli.root import app
from stxbench.run.errors import RunFailed, RunInterrupted, UsageError, one_line
from stxbench.run.signals import SignalInterrupt, signals_as_interrupts

__all__ = ["app", "main"]


def resume_command(argv: list[str] | None, out_dir) -> str:
    """The command that continues an interrupted run: the same one, with its --out."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not any(a in ("--out", "-o") or a.startswith("--out=") for a in args):
        args += ["--out", str(out_dir)]
    return shlex.join(["stxbench", *args])


def where(exc: BaseException) -> str:
    """`` at file.py:line`` of the innermost frame that raised ``exc``."""
    frames = traceback.extract_tb(exc.__traceback__)
    return f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""


def foreign_exit(exc: SystemExit) -> str:
    """One line for a ``sys.exit()`` that escaped the command: stxbench's commands return their
    exit code, so this came from code it called (a plugin), named by its innermost frame."""
    return f"error: stopped by sys.exit({exc.code!r}){where(exc)}, in code stxbench called (a plugin?)"


def main(argv: list[str] | None = None) -> None:
    common.STATE.argv = tuple(sys.argv[1:] if argv is None else argv)
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # `-p module` finds modules in the current directory, like python -m
    try:
        with signals_as_interrupts():
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
    except typer.Abort as exc:
        stop = exc.__context__ if isinstance(exc.__context__, SignalInterrupt) else SignalInterrupt()
        common.err_line("aborted" if type(stop) is SignalInterrupt else f"error: {stop.reason}")
        sys.exit(stop.exit_code)
    except SystemExit as exc:
        common.err_line(foreign_exit(exc))
        sys.exit(1)
    except Exception as exc:
        # click's usage errors (typer vendors click in recent versions, so match by shape)
        if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):
            raise  # a bug of stxbench's own: keep the traceback
        hint = ""
        ctx = getattr(exc, "ctx", None)
        if ctx is not None:
            hint = f" (see '{ctx.command_path} --help')"
        common.err_line(f"error: {exc.format_message()}{hint}".replace("\n", " "))
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, GeneratorExit):
        raise
    except BaseException as exc:  # not an Exception: raised by code stxbench called
        common.err_line(f"error: stopped by {one_line(exc)}{where(exc)}, in code stxbench called (a plugin?)")
        sys.exit(1)
    if isinstance(code, int) and code:
        sys.exit(code)
