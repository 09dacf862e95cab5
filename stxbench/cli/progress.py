"""Training progress on stderr: rich bars on a terminal, plain lines in a log.

A rich bar redraws one line in place; written to a file or a pipe it prints only when the stage
ends (a redirected 18-minute fine-tune showed nothing until it finished). Where stderr is not a
terminal, `LogReporter` prints one plain line when a stage starts, then every
``STXBENCH_PROGRESS_SECONDS`` seconds (default 30) and when it ends:

    finetune  epoch 2/5  step 120/300  40%  48 s  2.5 steps/s  loss 0.4123  about 72 s left
"""

from __future__ import annotations

import os
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

INTERVAL_ENV = "STXBENCH_PROGRESS_SECONDS"
DEFAULT_INTERVAL = 30.0


class RichReporter:
    """Training progress as rich bars on stderr, one bar per stage."""

    def __init__(self, console: Console):
        self.console = console
        self.progress: Progress | None = None
        self.task = None

    def start(self, stage: str, total_steps: int, completed: int = 0, steps_per_epoch: int = 0) -> None:
        self.progress = Progress(
            TextColumn("{task.description:<9}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(),
            console=self.console,
        )
        self.progress.start()
        self.task = self.progress.add_task(stage, total=total_steps, completed=completed, loss="-")

    def advance(self, loss: float) -> None:
        self.progress.update(self.task, advance=1, loss=f"{loss:.4f}")

    def finish(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def interval_seconds() -> float:
    """The seconds between log lines: ``$STXBENCH_PROGRESS_SECONDS`` if it is a positive number."""
    try:
        value = float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL))
    except ValueError:
        return DEFAULT_INTERVAL
    return value if 0 < value < float("inf") else DEFAULT_INTERVAL


class LogReporter:
    """Training progress as plain lines, at a steady interval (stderr is a file or a pipe)."""

    def __init__(self, console: Console, interval: float | None = None, clock=time.monotonic):
        self.console, self.clock = console, clock
        self.interval = interval_seconds() if interval is None else interval
        self.stage, self.total, self.step, self.per_epoch, self.loss = "", 0, 0, 0, None
        self.started = self.last = self.first_step = 0.0

    def start(self, stage: str, total_steps: int, completed: int = 0, steps_per_epoch: int = 0) -> None:
        self.stage, self.total, self.step, self.per_epoch, self.loss = stage, total_steps, completed, steps_per_epoch, None
        self.started = self.last = self.clock()
        self.first_step = completed
        self._line("started" if not completed else "resumed")

    def advance(self, loss: float) -> None:
        self.step += 1
        self.loss = loss
        now = self.clock()
        if now - self.last >= self.interval:
            self.last = now
            self._line()

    def finish(self) -> None:
        if self.stage:
            self._line("done" if self.step >= self.total else "stopped")
            self.stage = ""

    def _line(self, note: str = "") -> None:
        elapsed = self.clock() - self.started
        parts = [f"{self.stage:<9}"]
        if self.per_epoch:
            epochs = max(1, round(self.total / self.per_epoch))
            parts.append(f"epoch {min(self.step // self.per_epoch + 1, epochs)}/{epochs}")
        percent = 100 * self.step / self.total if self.total else 100.0
        parts += [f"step {self.step}/{self.total}", f"{percent:.0f}%", f"{elapsed:.0f} s"]
        done = self.step - self.first_step
        if done and elapsed > 0:
            rate = done / elapsed
            parts.append(f"{rate:.1f} steps/s")
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4f}")
        if note:
            parts.append(note)
        elif done and elapsed > 0 and self.step < self.total:
            parts.append(f"about {(self.total - self.step) / (done / elapsed):.0f} s left")
        self.console.print("  ".join(parts), markup=False, highlight=False, soft_wrap=True)


def reporter_for(console: Console) -> RichReporter | LogReporter:
    """Bars where a person watches a terminal, lines where stderr goes to a log."""
    return RichReporter(console) if console.is_terminal else LogReporter(console)
