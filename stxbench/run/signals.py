"""Ctrl-C and SIGTERM as the CLI receives them.

A signal becomes a `SignalInterrupt` (a `KeyboardInterrupt`) raised wherever the process is, so
a run stops the same way on either: its last checkpoint kept, one line saying how to resume
(exit code 130 for Ctrl-C, 143 = 128 + SIGTERM for a termination). Because these come from a
signal, they are told apart from a ``KeyboardInterrupt`` that plugin code raises itself, which is
contained like any other exception of a plugin.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class SignalInterrupt(KeyboardInterrupt):
    """Ctrl-C (SIGINT) reached the process."""

    exit_code = 130
    reason = "interrupted"


class Terminated(SignalInterrupt):
    """SIGTERM reached the process (``kill``, a batch scheduler ending a job)."""

    exit_code = 143
    reason = "terminated (SIGTERM)"


def _raise(kind: type[SignalInterrupt]):
    def handler(signum, frame):
        raise kind()

    return handler


@contextlib.contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """While active, SIGINT raises `SignalInterrupt` and SIGTERM raises `Terminated` (only the
    main thread can take signals; elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, _raise(SignalInterrupt))
    signal.signal(signal.SIGTERM, _raise(Terminated))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def from_plugin(exc: BaseException) -> bool:
    """Whether plugin code's exception is that plugin's failure, to be contained: anything it
    raised, ``sys.exit()`` and ``KeyboardInterrupt`` included, but not a signal that reached the
    process while it ran."""
    return not isinstance(exc, SignalInterrupt)
