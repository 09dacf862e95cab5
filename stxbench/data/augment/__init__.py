"""Protocol-selected training augmentation beyond a dataset's own (crop, flip): timm's
RandAugment and RandomErasing, as the published Spikformer and Spike-driven Transformer CIFAR
recipes use them. A stage section turns them on (``rand_augment``, ``random_erasing``; off by
default, so protocols that do not name them keep their hashes and their results).

Where they act in a training batch, in timm's order as far as it matters::

    stored batch (uint8 images) -> RandAugment -> dataset.prepare (normalise)
        -> dataset.augment (crop, flip) -> RandomErasing -> mixup

(timm flips before RandAugment; every RandAugment op commutes with a horizontal flip in
distribution, its geometric ones because their signs are drawn with probability 1/2.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from stxbench.data.contract import DataSplits
from stxbench.data.augment.erasing import RandomErasing
from stxbench.data.augment.randaugment import RandAugment, RandAugmentConfig
from stxbench.run.errors import UsageError

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
DEFAULT_FILL = 128.0  # timm's fill when it knows no dataset mean


@dataclass
class StageAugmentation:
    """What a stage applies besides the dataset's augment: ``raw`` on stored batches (before
    ``prepare``), ``erase`` on prepared and augmented ones."""

    raw: Augment | None = None
    erase: Augment | None = None


def mean_pixel(splits: DataSplits, channels: int) -> torch.Tensor:
    """The stored pixel value the dataset's ``prepare`` maps to 0 (its normalisation mean),
    rounded as timm's ``img_mean``; 128 where ``prepare`` is not a per-channel affine map."""
    if splits.prepare is None:
        return torch.full((channels,), DEFAULT_FILL)
    probe = torch.tensor([0, 128, 255], dtype=torch.uint8).view(3, 1, 1, 1).expand(3, channels, 1, 1)
    p0, p128, p255 = splits.prepare(probe.contiguous()).to(torch.float64).view(3, channels).unbind(0)
    slope = (p255 - p0) / 255.0
    affine = bool(((p0 + 128 * slope - p128).abs() <= 1e-4 * (p255 - p0).abs()).all()) and bool((slope != 0).all())
    if not affine:
        return torch.full((channels,), DEFAULT_FILL)
    return (-p0 / slope).round().clamp(0, 255).to(torch.float32)


def _sample_shape(splits: DataSplits) -> tuple[torch.dtype, tuple[int, ...]]:
    data = splits.train
    x = data.tensors[0][0] if isinstance(data, torch.utils.data.TensorDataset) else data[0][0]
    x = torch.as_tensor(x)
    return x.dtype, tuple(x.shape)


def stage_augmentation(stage, splits: DataSplits, where: str) -> StageAugmentation:
    """The augmentation ``stage`` (a protocol stage section) asks for, checked against the
    data: a mismatch is a `UsageError` naming the stage (``where``: ``train``/``finetune``)."""
    out = StageAugmentation()
    if stage.rand_augment is None and not stage.random_erasing:
        return out
    dtype, shape = _sample_shape(splits)
    image = not splits.temporal and len(splits.input_shape) == 3
    if stage.rand_augment is not None:
        if not (image and dtype == torch.uint8 and shape[0] in (1, 3)):
            raise UsageError(
                f"{where}.rand_augment needs a dataset of 8-bit images (uint8, 1 or 3 channels, "
                f"[C, H, W]); this one stores {dtype} samples of shape {list(shape)}"
                + (" (event frames)" if splits.temporal else "")
            )
        config = RandAugmentConfig.parse(stage.rand_augment)
        names = tuple(stage.rand_augment_ops) if stage.rand_augment_ops else config.op_names()
        out.raw = RandAugment(config, names, mean_pixel(splits, shape[0]), stage.rand_augment_interpolation)
    if stage.random_erasing:
        if not image:
            raise UsageError(
                f"{where}.random_erasing needs image samples [C, H, W]; this dataset has "
                f"{'event frames' if splits.temporal else f'inputs of shape {list(splits.input_shape)}'}"
            )
        out.erase = RandomErasing(stage.random_erasing, stage.random_erasing_mode, stage.random_erasing_count)
    return out
