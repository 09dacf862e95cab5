"""Datasets ``fashion-mnist``, ``mnist``, ``kmnist``: the official IDX files, 28x28x1, 10 classes.

One reader serves the whole MNIST family. Files (gzipped or not) are looked for in the folder
given with ``--data-root``, or in torchvision's ``<root>/<Name>/raw/``::

    train-images-idx3-ubyte[.gz]  train-labels-idx1-ubyte[.gz]
    t10k-images-idx3-ubyte[.gz]   t10k-labels-idx1-ubyte[.gz]

Without ``--data-root``, ``fashion-mnist`` reads ``/usr/share/datasets/fashion-mnist/`` (Debian
package ``dataset-fashion-mnist``). Official splits (60000/10000); pixels are scaled to [0, 1].
Option ``train_samples = N`` keeps the first N training images (the files' own order), for
protocols that must run in minutes on a CPU. Option ``downsample = F`` averages every F x F
block of pixels (F divides 28; the mean is rounded half up to a whole grey level, so images
stay 8-bit): ``downsample = 2`` gives 14x14 images, a quarter of the work of every layer of a
convolutional stem.
"""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np
import torch

from stxbench.api import (
    DataSplits,
    Dataset,
    UsageError,
    check_options,
    data_folder,
    hookimpl,
    require_files,
    scaled,
)

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
LAYOUT = "{" + ", ".join(FILES.values()) + "}[.gz]"
IDX_UBYTE = 0x08
NUM_CLASSES = 10


def read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes: magic ``>HBB`` (0, 0x08, ndim), big-endian uint32 dims,
    then the data. A gzipped file is recognised by its first two bytes."""
    with open(path, "rb") as fh:
        gzipped = fh.read(2) == b"\x1f\x8b"
    try:
        with (gzip.open if gzipped else open)(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise UsageError(f"{path}: cannot read: {exc}") from None
    if len(raw) < 4:
        raise UsageError(f"{path}: not an IDX file (too short)")
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != IDX_UBYTE or ndim == 0:
        raise UsageError(f"{path}: not an IDX file of unsigned bytes (magic {raw[:4].hex()})")
    header = 4 + 4 * ndim
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    if len(raw) - header != math.prod(dims):
        raise UsageError(
            f"{path}: truncated or padded IDX file: header says {dims}, "
            f"{len(raw) - header} bytes of data follow"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def block_mean(images: np.ndarray, factor: int) -> np.ndarray:
    """``[N, H, W]`` uint8 -> ``[N, H/f, W/f]`` uint8: the mean of each f x f block, rounded
    half up (integer arithmetic, so the result is exact)."""
    n, h, w = images.shape
    blocks = images.reshape(n, h // factor, factor, w // factor, factor).astype(np.uint32)
    area = factor * factor
    return ((blocks.sum(axis=(2, 4)) + area // 2) // area).astype(np.uint8)


def find_file(folder: Path, stem: str) -> Path:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return folder / f"{stem}[.gz]"


class IdxDataset(Dataset):
    """A dataset of the MNIST family in the official IDX files."""

    options = ("train_samples", "downsample")

    def __init__(self, name: str, torchvision_name: str, summary: str, default_root: str | None = None):
        self.name = name
        self.torchvision_name = torchvision_name
        self.summary = summary
        self.default_root = default_root

    def folder(self, root: str | None) -> Path:
        layout = f"{LAYOUT} in DIR or in DIR/{self.torchvision_name}/raw/"
        if root is None and self.default_root is not None:
            path = Path(self.default_root)
            if not path.is_dir():
                raise UsageError(
                    f"dataset '{self.name}': {path} does not exist; install the Debian package "
                    f"(apt-get install dataset-{self.name}) or pass --data-root DIR with {layout}"
                )
        else:
            path = data_folder(self.name, root, layout)
        nested = path / self.torchvision_name / "raw"
        if not find_file(path, FILES["train_images"]).is_file() and nested.is_dir():
            path = nested
        files = [find_file(path, stem) for stem in FILES.values()]
        require_files(self.name, files, f"{path}/{LAYOUT}")
        return path

    def validate_options(self, options) -> None:
        check_options(self.name, options, self.options)
        limit = options.get("train_samples", 1)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise UsageError(f"dataset '{self.name}': train_samples must be a whole number >= 1, got {limit!r}")

    def load(self, root: str | None, **options) -> DataSplits:
        self.validate_options(options)
        folder = self.folder(root)
        arrays = {key: read_idx(find_file(folder, stem)) for key, stem in FILES.items()}
        for split in ("train", "test"):
            images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
            if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
                raise UsageError(
                    f"dataset '{self.name}': {split} images {images.shape} do not match "
                    f"labels {labels.shape} in {folder}"
                )
        limit = options.get("train_samples")
        if limit is not None and (not isinstance(limit, int) or not 0 < limit <= len(arrays["train_labels"])):
            raise UsageError(
                f"dataset '{self.name}': train_samples must be an integer in "
                f"1..{len(arrays['train_labels'])}, got {limit!r}"
            )

        factor = options.get("downsample", 1)
        height, width = arrays["train_images"].shape[1:]
        if (not isinstance(factor, int) or isinstance(factor, bool) or factor < 1
                or height % factor or width % factor):
            divisors = ", ".join(str(f) for f in range(1, height + 1) if height % f == 0 and width % f == 0)
            raise UsageError(f"dataset '{self.name}': downsample must be a whole number dividing "
                             f"the {height}x{width} images ({divisors}), got {factor!r}")

        def split(images: np.ndarray, labels: np.ndarray) -> torch.utils.data.TensorDataset:
            images = block_mean(images, factor) if factor > 1 else images
            x = torch.from_numpy(images.copy()).unsqueeze(1)  # uint8, scaled in prepare
            return torch.utils.data.TensorDataset(x, torch.from_numpy(labels.astype(np.int64)))

        top = int(max(arrays["train_labels"].max(), arrays["test_labels"].max()))
        if top >= NUM_CLASSES:
            raise UsageError(
                f"dataset '{self.name}': label {top} in {folder}; the MNIST family has 10 classes"
            )
        return DataSplits(
            train=split(arrays["train_images"][:limit], arrays["train_labels"][:limit]),
            test=split(arrays["test_images"], arrays["test_labels"]),
            input_shape=(1, height // factor, width // factor),
            num_classes=NUM_CLASSES,
            prepare=scaled(255.0),
            info={"source": str(folder)},
        )


@hookimpl
def stxbench_add_datasets():
    return [
        IdxDataset(
            "fashion-mnist", "FashionMNIST",
            "Fashion-MNIST, 28x28x1, 10 classes, 60000/10000 (Debian dataset-fashion-mnist or --data-root)",
            default_root="/usr/share/datasets/fashion-mnist",
        ),
        IdxDataset("mnist", "MNIST", "MNIST, 28x28x1, 10 classes, 60000/10000 (IDX files in --data-root)"),
        IdxDataset("kmnist", "KMNIST",
                   "Kuzushiji-MNIST, 28x28x1, 10 classes, 60000/10000 (IDX files in --data-root)"),
    ]
