"""State and helpers shared by the CLI commands."""

from __future__ import annotations

import re
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
    """``text`` as one line of stderr: line breaks (with the indentation around them) become one
    space; other spacing stays, so paths and quoted commands in the line stay as they are."""
    print(re.sub(r"\s*[\r\n]+\s*", " ", text).strip(), file=sys.stderr)
