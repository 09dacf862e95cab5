"""The one error type for mistakes a user can fix.

Anything raised as `UsageError` reaches the user as a single line (exit code 2) that says what
was wrong and what is valid; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UsageError(Exception):
    """Bad input from the user: unknown name, out-of-range value, missing data, bad file."""


def one_line(exc: BaseException) -> str:
    """An exception as ``Type: message`` on one line (for reports of plugins that failed)."""
    if isinstance(exc, SystemExit):
        return f"SystemExit: called sys.exit({exc.code!r})"
    text = " ".join(str(exc).split()) or "(no message)"
    return f"{type(exc).__name__}: {text}"


def unknown_choice(kind: str, name: str, choices: Iterable[str]) -> UsageError:
    """`unknown neuron 'lfi'; did you mean 'lif'? valid: lif, plif, slif`."""
    valid = sorted(choices)
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    listing = ", ".join(valid) if valid else "(none installed)"
    return UsageError(f"unknown {kind} '{name}'{hint} valid: {listing}")


class RunFailed(Exception):
    """A run that started could not finish honestly (diverged, a metric failed). The CLI
    prints one line, exits 1, and no result record is written."""


class RunInterrupted(RunFailed):
    """A run stopped by Ctrl-C or by running out of GPU memory. Its last checkpoint is kept, and
    running the same command with the same ``--out`` resumes it."""

    def __init__(self, reason: str, out_dir, last_checkpoint: str | None, exit_code: int = 130):
        self.reason, self.out_dir, self.last_checkpoint = reason, out_dir, last_checkpoint
        self.exit_code = exit_code
        kept = (f"the last checkpoint ({last_checkpoint}) is in {out_dir}" if last_checkpoint
                else "no epoch had finished, so there is no checkpoint")
        super().__init__(f"{reason}; {kept}")


def unknown_key(kind: str, name: str, choices: Iterable[str], how_many: int = 5) -> UsageError:
    """For a long list of valid names (a protocol's ~70 keys): the closest few, not all of them.
    `unknown protocol key 'train.epoch'; did you mean 'train.epochs'? closest valid: ...`; with
    nothing close, the valid keys of the same section (``train.``), else the sections."""
    valid = sorted(set(choices))
    close = difflib.get_close_matches(name, valid, n=how_many, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    if not close:
        section = name.rpartition(".")[0]
        close = [c for c in valid if section and c.startswith(f"{section}.")][:how_many]
    if close:
        more = len(valid) - len(close)
        rest = f" ({more} more)" if more > 0 else ""
        return UsageError(f"unknown {kind} '{name}'{hint} closest valid: {', '.join(close)}{rest}")
    tops = sorted({c.partition(".")[0] for c in valid})
    return UsageError(f"unknown {kind} '{name}'; valid keys start with {', '.join(tops)}")
