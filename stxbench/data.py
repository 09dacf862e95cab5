"""From a protocol's ``[data]`` section to the dataset plugin's splits."""

from __future__ import annotations

from typing import Any

from stxbench.api import DataSplits
from stxbench.errors import UsageError
from stxbench.host import PluginHost
from stxbench.protocol import Protocol


def dataset_options(proto: Protocol) -> dict[str, Any]:
    """The protocol's dataset options; event data are integrated into ``model.T`` frames."""
    options = dict(proto.data.options)
    if proto.data.encoding == "frames":
        if "frames" in options and options["frames"] != proto.model.T:
            raise UsageError(
                f"protocol {proto.name}: data.options.frames = {options['frames']} differs from "
                f"model.T = {proto.model.T}; with encoding 'frames' the frame count is model.T"
            )
        options["frames"] = proto.model.T
    return options


def load_splits(proto: Protocol, host: PluginHost, root: str | None) -> DataSplits:
    dataset = host.dataset(proto.data.dataset)
    options = dataset_options(proto)
    dataset.validate_options(options)
    splits = dataset.load(root, **options) if options else dataset.load(root)
    if splits.temporal != (proto.data.encoding == "frames"):
        raise UsageError(
            f"protocol {proto.name}: encoding '{proto.data.encoding}' does not fit dataset "
            f"'{proto.data.dataset}' ({'frames' if splits.temporal else 'static samples'})"
        )
    return splits
