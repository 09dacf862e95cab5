"""Leaderboard entries on disk: where they live, what they are called, how they are found.

Layout: ``<root>/<protocol>/entries/<name>.json`` (result records), rendered files beside them.
An entry's name is derived from what identifies the run (protocol, neuron, pruner and its
parameters, backend, seed), so the same run always lands in the same file and a second run of
it is a duplicate.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stxbench.run.errors import UsageError, unknown_choice
from stxbench.run.protocol import Protocol, builtin_protocols, load_protocol
from stxbench.record.schema import Record, load_record

DEFAULT_ROOT = Path("leaderboards")
ENTRIES = "entries"
#: ``<root>/legacy/``: boards retired as they were (entries no longer current, e.g. made under a
#: superseded CPU pin), kept to be read; never checked, rendered or ranked
LEGACY = "legacy"


# -- names --------------------------------------------------------------------------------


def _value_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def params_slug(params: dict[str, Any]) -> str:
    """A short stable form of pruner parameters for file names: ``keep0.5-methodsvd``."""
    parts = (f"{key}{_value_text(value)}" for key, value in sorted(params.items()))
    return "-".join(re.sub(r"[^A-Za-z0-9.+_]", "_", part) for part in parts)


def params_label(params: dict[str, Any]) -> str:
    """Pruner parameters for people: ``keep=0.5, method=svd``."""
    return ", ".join(f"{key}={_value_text(value)}" for key, value in sorted(params.items()))


def pruner_label(pruner: str, params: dict[str, Any]) -> str:
    return f"{pruner} ({params_label(params)})" if params else pruner


def entry_name(record: Record) -> str:
    """``<protocol>__<neuron>__<pruner>[-<params>]__<backend>__s<seed>.json``; a baseline's
    ``<protocol>__baseline-<name>__<backend>__s<seed>.json``."""
    c = record.config
    if c.baseline is not None:
        return f"{record.protocol.name}__baseline-{c.baseline}__{c.backend}__s{c.seed}.json"
    slug = params_slug(c.pruner_params)
    pruner = f"{c.pruner}-{slug}" if slug else c.pruner
    return f"{record.protocol.name}__{c.neuron}__{pruner}__{c.backend}__s{c.seed}.json"


def identity(record: Record) -> tuple[str, ...]:
    """What makes two records the same leaderboard entry."""
    c = record.config
    params = json.dumps(c.pruner_params, sort_keys=True)
    return (record.protocol.name, c.neuron, c.pruner, params, c.backend, str(c.seed), c.baseline or "")


def describe(record: Record) -> str:
    c = record.config
    if c.baseline is not None:
        return f"{record.protocol.name} / baseline {c.baseline} / {c.backend} / seed {c.seed}"
    return (f"{record.protocol.name} / {c.neuron} / {pruner_label(c.pruner, c.pruner_params)} / "
            f"{c.backend} / seed {c.seed}")


# -- protocols ----------------------------------------------------------------------------


class ProtocolLookup:
    """Protocols by name: the built-in ones, then ``<dir>/<name>.toml`` in the extra folders
    (``--protocol-dir``). Built-ins cannot be shadowed, so an entry of ``digits`` is always
    checked against the protocol stxbench ships."""

    def __init__(self, extra_dirs: Sequence[Path] = ()):
        self.extra_dirs = [Path(d) for d in extra_dirs]
        for folder in self.extra_dirs:
            if not folder.is_dir():
                raise UsageError(f"--protocol-dir {folder}: no such folder")
        self._loaded: dict[str, Protocol] = {}

    def path(self, name: str) -> Path:
        builtin = builtin_protocols()
        candidates = [d / f"{name}.toml" for d in self.extra_dirs if (d / f"{name}.toml").is_file()]
        if name in builtin:
            if candidates:
                raise UsageError(f"{candidates[0]} would shadow the built-in protocol '{name}'; "
                                 "built-in protocols cannot be replaced")
            return builtin[name]
        if candidates:
            return candidates[0]
        extra = [p.stem for d in self.extra_dirs for p in d.glob("*.toml")]
        raise unknown_choice("protocol", name, [*builtin, *extra])

    def source(self, name: str) -> str:
        """What `load_protocol` and `stxbench run --protocol` take for this protocol."""
        return name if name in builtin_protocols() else str(self.path(name))

    def get(self, name: str) -> Protocol:
        if name not in self._loaded:
            path = self.path(name)
            protocol = load_protocol(self.source(name))
            if protocol.name != name:
                raise UsageError(f"protocol file {path} is named '{protocol.name}', not '{name}'")
            self._loaded[name] = protocol
        return self._loaded[name]


# -- entries ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One file under ``<root>/<protocol>/entries/``: its record, or why it did not load."""

    path: Path
    record: Record | None
    error: str | None = None

    @property
    def folder_protocol(self) -> str:
        return self.path.parent.parent.name


class Board:
    """A leaderboard folder."""

    def __init__(self, root: Path = DEFAULT_ROOT):
        self.root = Path(root)

    def entries_dir(self, protocol: str) -> Path:
        return self.root / protocol / ENTRIES

    def protocols(self) -> list[str]:
        """Protocol folders that hold an ``entries`` folder, by name."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.name != LEGACY and (p / ENTRIES).is_dir())

    def entry_files(self, protocol: str) -> list[Path]:
        return sorted(p for p in self.entries_dir(protocol).iterdir() if p.is_file())

    def entries(self) -> list[Entry]:
        out = []
        for protocol in self.protocols():
            for path in self.entry_files(protocol):
                if path.suffix != ".json":
                    out.append(Entry(path, None, "not an entry: only .json result records belong here"))
                    continue
                try:
                    out.append(Entry(path, load_record(path)))
                except UsageError as exc:
                    out.append(Entry(path, None, str(exc).removeprefix(f"{path}: ")))
        return out

    def relative(self, path: Path) -> str:
        """A path as shown in messages: relative to the folder holding the root."""
        try:
            return str(path.relative_to(self.root.parent))
        except ValueError:
            return str(path)
