"""State and helpers shared by the CLI commands."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from stxbench.host import PluginHost


@dataclass
class CliState:
    plugins: tuple[str, ...] = ()


STATE = CliState()


def host() -> PluginHost:
    return PluginHost(STATE.plugins)


def err_line(text: str) -> None:
    print(" ".join(text.split()), file=sys.stderr)
