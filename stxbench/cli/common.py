"""State and helpers shared by the CLI commands."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

from stxbench.host.plugin_host import PluginHost


@dataclass
class CliState:
    plugins: tuple[str, ...] = ()
    argv: tuple[str, ...] = ()  # the command line, to start it again (`restart_pinned`)


STATE = CliState()


def host() -> PluginHost:
    return PluginHost(STATE.plugins)


def err_line(text: str) -> None:
    """``text`` as one line of stderr: line breaks (with the indentation around them) become one
    space; other spacing stays, so paths and quoted commands in the line stay as they are."""
    print(re.sub(r"\s*[\r\n]+\s*", " ", text).strip(), file=sys.stderr)


def restart_pinned(protocol, device: str) -> None:
    """A CPU run of a protocol that pins CPU numerics needs them set before torch's libraries
    start: run this very command again in a fresh process with them (`stxbench.run.cpu_pin`), and
    exit with its exit code. Nothing to do on a GPU, without a pin, or once they are set."""
    import typer

    from stxbench.run import cpu_pin
    if device != "cpu" or protocol.cpu_pin is None:
        return
    pin = cpu_pin.PINS[protocol.cpu_pin]
    if cpu_pin.needs_restart(pin):
        raise typer.Exit(cpu_pin.restart(pin, list(STATE.argv)))
