"""From a protocol's ``[data]`` section to the dataset plugin's splits, and the validation split
carved from the training set."""

from __future__ import annotations

import dataclasses
from typing import Any
from typing import Protocol as TypingProtocol

import numpy as np
import torch

from stxbench.data.contract import DataSplits, Dataset
from stxbench.run.errors import UsageError
from stxbench.run.protocol import Protocol


class Datasets(TypingProtocol):
    """What `load_splits` asks of the plugin host (`stxbench.host.plugin_host.PluginHost`, which
    imports the modules that import this one): the dataset plugin of a name."""

    def dataset(self, name: str) -> Dataset: ...


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


def load_splits(proto: Protocol, host: Datasets, root: str | None) -> DataSplits:
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


# -- the validation split -------------------------------------------------------------------


def dataset_labels(dataset: torch.utils.data.Dataset) -> np.ndarray:
    """Every label of ``dataset``: read from the tensors of a `TensorDataset`, from a
    ``targets`` attribute where the dataset keeps one, else by reading each sample once."""
    if isinstance(dataset, torch.utils.data.TensorDataset):
        return dataset.tensors[1].numpy()
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        return np.asarray(targets)
    return np.asarray([int(y) for _, y in dataset])


def stratified_indices(labels: np.ndarray, samples: int, seed: int) -> np.ndarray:
    """``samples`` indices (ascending) drawn per class in proportion to the class sizes: each
    class gets the floor of its share, the samples left over go to the largest remainders (ties
    to the lower label), and each class's indices are a uniform draw from numpy's PCG64 seeded
    with ``seed``. Written out rather than taken from scikit-learn so that the split is pinned
    by the protocol alone, not by a library version."""
    classes, counts = np.unique(labels, return_counts=True)
    shares = counts * samples / len(labels)
    take = np.floor(shares).astype(int)
    left = samples - int(take.sum())
    order = sorted(range(len(classes)), key=lambda i: (-(shares[i] - take[i]), i))
    for i in order[:left]:
        take[i] += 1
    rng = np.random.Generator(np.random.PCG64(seed))
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)]
    return np.sort(np.concatenate(chosen))


def subset(dataset: torch.utils.data.Dataset, index: np.ndarray) -> torch.utils.data.Dataset:
    """``dataset`` at ``index``; in-memory tensors stay a `TensorDataset` (the fast path)."""
    if isinstance(dataset, torch.utils.data.TensorDataset):
        rows = torch.from_numpy(index)
        return torch.utils.data.TensorDataset(*(t[rows] for t in dataset.tensors))
    return torch.utils.data.Subset(dataset, index.tolist())


def carve_validation(proto: Protocol, splits: DataSplits) -> tuple[DataSplits, torch.utils.data.Dataset | None]:
    """The protocol's validation split taken out of the training set: (splits whose ``train``
    no longer holds it, the validation set), both in the training set's order. Without a
    ``[data.validation]`` section: (splits, None)."""
    spec = proto.data.validation
    if spec is None:
        return splits, None
    labels = dataset_labels(splits.train)
    n = len(labels)
    classes = len(np.unique(labels))
    if spec.samples >= n or spec.samples < classes:
        raise UsageError(
            f"protocol {proto.name}: data.validation.samples = {spec.samples} must be at least "
            f"the {classes} classes and fewer than the {n} training samples"
        )
    held = stratified_indices(labels, spec.samples, spec.seed)
    kept = np.setdiff1d(np.arange(n), held, assume_unique=True)
    return dataclasses.replace(splits, train=subset(splits.train, kept)), subset(splits.train, held)
