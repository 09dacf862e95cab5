"""The dataset contract (`Dataset`, `DataSplits`) and helpers for dataset plugins: checking a
user's folder, option handling, tensor augmentation.

Plugins import these through `stxbench.api`; none of them touches the network.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F

from stxbench.run.errors import UsageError


@dataclass
class DataSplits:
    """What a dataset plugin hands the host.

    ``train``/``test`` are torch datasets yielding ``(x, label)``; a ``TensorDataset`` takes a
    fast path (batches are sliced, not collated). ``input_shape`` is one sample's shape without
    time: ``(C, H, W)`` for images, ``(C, L)`` for sequences. With ``temporal=True`` each sample
    already carries its own time axis ``[T, *input_shape]`` (event frames); otherwise the model
    repeats the input over T (direct encoding). ``prepare`` turns a stored batch into the float
    model input (scaling, normalisation); ``augment`` is applied to training batches only, with
    the run's seeded generator.
    """

    train: torch.utils.data.Dataset
    test: torch.utils.data.Dataset
    input_shape: tuple[int, ...]
    num_classes: int
    temporal: bool = False
    prepare: Callable[[torch.Tensor], torch.Tensor] | None = None
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None
    info: dict[str, object] = field(default_factory=dict)


class Dataset(ABC):
    """Real data from an installed package or the user's folder. Never downloads."""

    name: ClassVar[str]
    summary: ClassVar[str]
    #: the names of the options `load` takes; None: read from `load`'s signature (its keyword
    #: parameters; a ``**options`` catch-all leaves the checking to `load`)
    options: ClassVar[tuple[str, ...] | None] = None

    @abstractmethod
    def load(self, root: str | None, **options) -> DataSplits:
        """Return the splits. A missing or incomplete folder raises `UsageError` naming the
        expected layout and the first missing file. ``options`` come from the protocol's
        ``[data.options]`` (plus ``frames = T`` for event data); the host passes none when the
        protocol sets none, and an unknown option is a `UsageError`."""

    def validate_options(self, options: Mapping[str, object]) -> None:
        """Refuse (`UsageError`) options `load` would refuse, before any work: the host calls
        this when it resolves a run. The default checks the names against `options`; override
        it to check values too (whatever needs the data itself stays in `load`)."""
        valid = self.options
        if valid is None:
            params = inspect.signature(self.load).parameters.values()
            if any(p.kind is p.VAR_KEYWORD for p in params):
                return
            keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
            valid = tuple(p.name for p in params if p.kind in keyword and p.name != "root")
        check_options(self.name, options, valid)


def data_folder(dataset: str, root: str | None, layout: str) -> Path:
    """The user's ``--data-root`` as a folder, or a `UsageError` naming the expected layout."""
    if root is None:
        raise UsageError(f"dataset '{dataset}' reads your own copy: pass --data-root DIR with {layout}")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise UsageError(f"dataset '{dataset}': --data-root {root} is not a folder (expected {layout})")
    return path


def require_files(dataset: str, paths: Iterable[Path], layout: str) -> None:
    """Fail with one line naming the expected layout and the first missing file. Files in a
    format the host knows (IDX) are then checked, header first, without reading more than their
    header promises, and against the published shape of ``dataset`` where it has one
    (`stxbench.data.files`): a folder of another dataset is refused here, before any work."""
    from stxbench.data.files import check_data_files

    paths = list(paths)
    for path in paths:
        if not path.is_file():
            raise UsageError(f"dataset '{dataset}': incomplete folder, expected {layout}; missing {path}")
    check_data_files(dataset, paths)


def check_options(dataset: str, options: Mapping[str, object], valid: Sequence[str]) -> None:
    """Options outside ``valid`` are a `UsageError` naming them and the valid ones."""
    unknown = sorted(set(options) - set(valid))
    if unknown:
        listing = ", ".join(valid) if valid else "none"
        raise UsageError(f"dataset '{dataset}' has no option(s) {', '.join(unknown)}; valid: {listing}")


def random_crop_flip(
    x: torch.Tensor, generator: torch.Generator, *, padding: int = 0, flip: bool = True,
    fill: torch.Tensor | float = 0.0,
) -> torch.Tensor:
    """Random crop after zero-padding by ``padding`` and random horizontal flip, per sample.

    ``x`` is ``[B, ..., H, W]``; every leading axis after the batch (channels, time) gets the
    same crop and flip, so an event clip moves as one. ``fill`` is the value padding takes (a
    per-channel tensor broadcasting against ``x[0]`` is allowed: after normalisation a black
    border is ``-mean/std``). Random numbers come from ``generator`` (a CPU generator), so the
    run's seed fixes every crop; the arithmetic runs on ``x``'s device.
    """
    B, H, W = x.shape[0], x.shape[-2], x.shape[-1]
    if padding:
        fill = torch.as_tensor(fill, dtype=x.dtype, device=x.device)
        padded = F.pad(x - fill, (padding, padding, padding, padding)) + fill
        dy = torch.randint(0, 2 * padding + 1, (B,), generator=generator).to(x.device)
        dx = torch.randint(0, 2 * padding + 1, (B,), generator=generator).to(x.device)
        per_sample = (B,) + (1,) * (x.dim() - 3) + (1, 1)
        rows = dy.view(per_sample) + torch.arange(H, device=x.device).view(H, 1)
        x = padded.gather(-2, rows.expand(*padded.shape[:-2], H, padded.shape[-1]))
        cols = dx.view(per_sample) + torch.arange(W, device=x.device).view(1, W)
        x = x.gather(-1, cols.expand(*x.shape[:-1], W))
    if flip:
        mask = (torch.rand(B, generator=generator) < 0.5).to(x.device)
        x = torch.where(mask.view(B, *[1] * (x.dim() - 1)), x.flip(-1), x)
    return x


def normalizer(mean: Sequence[float], std: Sequence[float], scale: float = 255.0):
    """``prepare`` for stored uint8 images ``[B, C, H, W]``: ``(x / scale - mean) / std``."""
    mean_t = torch.tensor(mean).view(-1, 1, 1)
    std_t = torch.tensor(std).view(-1, 1, 1)

    def prepare(x: torch.Tensor) -> torch.Tensor:
        m, s = mean_t.to(x.device), std_t.to(x.device)
        return (x.float() / scale - m) / s

    return prepare


def scaled(scale: float):
    """``prepare`` for stored uint8 data: ``x / scale`` as float32."""

    def prepare(x: torch.Tensor) -> torch.Tensor:
        return x.float() / scale

    return prepare
