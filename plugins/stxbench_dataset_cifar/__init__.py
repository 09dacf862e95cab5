"""Datasets ``cifar10`` and ``cifar100`` from the user's folder (``--data-root DIR``).

Either official release is read, without torchvision::

    DIR/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}   (python pickles)
    DIR/cifar-10-batches-bin/{data_batch_1..5.bin, test_batch.bin}       (1 label + 3072 bytes)
    DIR/cifar-100-python/{train, test, meta}                              (python pickles)
    DIR/cifar-100-binary/{train.bin, test.bin}                            (2 labels + 3072 bytes)

The pickles are read by an unpickler that admits plain containers and numpy arrays only, so a
tampered file cannot run code. Images stay uint8 in memory (150 MB); ``prepare`` normalises
with the per-channel mean and std (Spikformer's values). Training batches are augmented as
is standard for CIFAR: a random 32x32 crop of the image zero-padded by 4 (option
``crop_padding``; 0 turns the crop off, as the timm recipes of Spikformer and the Spike-driven
Transformer have it), and a horizontal flip with probability 1/2, drawn from the run's seeded
generator.
"""

from __future__ import annotations

import codecs
import io
import pickle
from dataclasses import dataclass
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
    normalizer,
    random_crop_flip,
    require_files,
)

PIXELS = 3 * 32 * 32
#: the largest file of either release (CIFAR-100's python ``train``: 50000 images, 155 MB), with
#: room to spare: a larger file is not one of them, and is refused before it is read
MAX_FILE_BYTES = 200 << 20
#: the published split sizes: a folder holding more is another dataset
TRAIN_IMAGES, TEST_IMAGES = 50000, 10000
CROP_PADDING = 4  # option crop_padding: 0 = no crop (Spikformer's and SDT's timm recipes)
_RECONSTRUCT = np.zeros(1).__reduce__()[0]  # numpy's array-unpickling function, any version
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,  # how Python 3 protocol-2 pickles spell bytes
}


class RestrictedUnpickler(pickle.Unpickler):
    """Admits dicts, lists, tuples, strings, numbers and numpy arrays; nothing callable else."""

    def find_class(self, module: str, name: str):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None


def check_size(path: Path) -> int:
    """The file's size, refused before reading when no CIFAR file is that large."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise UsageError(f"{path}: {size / 1e6:,.0f} MB; no file of a CIFAR release is larger than "
                         f"{MAX_FILE_BYTES / 1e6:.0f} MB")
    return size


def load_pickle(path: Path) -> dict:
    check_size(path)
    try:
        with open(path, "rb") as fh:
            data = RestrictedUnpickler(io.BytesIO(fh.read(MAX_FILE_BYTES + 1)), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise UsageError(f"{path}: not a CIFAR python batch: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: not a CIFAR python batch (a {type(data).__name__}, not a dict)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in data.items()}


def python_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    batch = load_pickle(path)
    if "data" not in batch or label_key not in batch:
        raise UsageError(f"{path}: a CIFAR python batch needs keys 'data' and '{label_key}'")
    data, labels = np.asarray(batch["data"]), np.asarray(batch[label_key])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != PIXELS or len(labels) != len(data):
        raise UsageError(
            f"{path}: 'data' must be uint8 (N, {PIXELS}) with N labels, got {data.dtype} {data.shape}"
        )
    return data, labels


def binary_batch(path: Path, label_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """Records of ``label_bytes`` label bytes (the fine label last) then 3072 pixel bytes."""
    record = label_bytes + PIXELS
    size = check_size(path)
    if size == 0 or size % record:
        raise UsageError(f"{path}: size {size} is not a multiple of the {record}-byte CIFAR record")
    raw = np.fromfile(path, dtype=np.uint8, count=size)
    if raw.size != size:
        raise UsageError(f"{path}: changed while it was read ({raw.size} of {size} bytes)")
    rows = raw.reshape(-1, record)
    return rows[:, label_bytes:], rows[:, label_bytes - 1]


@dataclass(frozen=True)
class Release:
    """Where one CIFAR release keeps its files, and how its labels are stored."""

    python_dir: str
    python_train: tuple[str, ...]
    python_test: tuple[str, ...]
    python_meta: str
    label_key: str  # in the python pickles
    binary_dir: str
    binary_train: tuple[str, ...]
    binary_test: tuple[str, ...]
    label_bytes: int  # per binary record; the label used is the last of them

    def layout(self) -> str:
        python = ", ".join([*self.python_train, *self.python_test, self.python_meta])
        binary = ", ".join([*self.binary_train, *self.binary_test])
        return f"DIR/{self.python_dir}/{{{python}}} or DIR/{self.binary_dir}/{{{binary}}}"


class Cifar(Dataset):
    options = ("crop_padding",)

    def __init__(self, name: str, summary: str, release: Release, num_classes: int,
                 mean: tuple[float, ...], std: tuple[float, ...]):
        self.name, self.summary, self.release = name, summary, release
        self.num_classes, self.mean, self.std = num_classes, mean, std

    def read(self, root: Path) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], Path]:
        """The python release if its folder exists, else the binary one."""
        r = self.release
        if (root / r.binary_dir).is_dir() and not (root / r.python_dir).is_dir():
            folder = root / r.binary_dir
            train, test = [folder / f for f in r.binary_train], [folder / f for f in r.binary_test]
            require_files(self.name, [*train, *test], r.layout())
            read = lambda path: binary_batch(path, r.label_bytes)  # noqa: E731
        else:
            folder = root / r.python_dir
            train, test = [folder / f for f in r.python_train], [folder / f for f in r.python_test]
            require_files(self.name, [*train, *test, folder / r.python_meta], r.layout())
            read = lambda path: python_batch(path, r.label_key)  # noqa: E731

        def join(paths: list[Path], published: int) -> tuple[np.ndarray, np.ndarray]:
            parts = [read(p) for p in paths]
            images = sum(len(p[0]) for p in parts)
            if images > published:
                raise UsageError(f"dataset '{self.name}': {images} images in {', '.join(p.name for p in paths)}; "
                                 f"{self.name} has {published}: the folder holds another dataset")
            return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

        return join(train, TRAIN_IMAGES), join(test, TEST_IMAGES), folder

    def validate_options(self, options) -> None:
        check_options(self.name, options, self.options)
        padding = options.get("crop_padding", CROP_PADDING)
        if not isinstance(padding, int) or isinstance(padding, bool) or not 0 <= padding <= 16:
            raise UsageError(f"dataset '{self.name}': crop_padding must be a whole number of pixels "
                             f"in 0..16, got {padding!r}")

    def load(self, root: str | None, **options) -> DataSplits:
        self.validate_options(options)
        padding = options.get("crop_padding", CROP_PADDING)
        (x_train, y_train), (x_test, y_test), folder = self.read(
            data_folder(self.name, root, self.release.layout())
        )
        for labels in (y_train, y_test):
            if labels.dtype.kind not in "iu" or int(labels.min()) < 0 or int(labels.max()) >= self.num_classes:
                bad = labels.max() if labels.dtype.kind in "iu" and labels.min() >= 0 else labels.min()
                raise UsageError(f"dataset '{self.name}': label {bad!r} in {folder}; {self.name} has "
                                 f"labels 0..{self.num_classes - 1}")

        def split(x: np.ndarray, y: np.ndarray) -> torch.utils.data.TensorDataset:
            images = torch.from_numpy(np.ascontiguousarray(x).reshape(-1, 3, 32, 32))
            return torch.utils.data.TensorDataset(images, torch.from_numpy(y.astype(np.int64)))

        prepare = normalizer(self.mean, self.std)
        fill = prepare(torch.zeros(1, 3, 1, 1, dtype=torch.uint8))[0]  # padding is black
        return DataSplits(
            train=split(x_train, y_train),
            test=split(x_test, y_test),
            input_shape=(3, 32, 32),
            num_classes=self.num_classes,
            prepare=prepare,
            augment=lambda x, generator: random_crop_flip(x, generator, padding=padding, flip=True, fill=fill),
            info={"source": str(folder), "augment": (f"random crop 32 of {padding}-padded, " if padding else "")
                  + "horizontal flip"},
        )


BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10 = Release(
    "cifar-10-batches-py", BATCHES, ("test_batch",), "batches.meta", "labels",
    "cifar-10-batches-bin", tuple(f"{b}.bin" for b in BATCHES), ("test_batch.bin",), 1,
)
CIFAR100 = Release(
    "cifar-100-python", ("train",), ("test",), "meta", "fine_labels",
    "cifar-100-binary", ("train.bin",), ("test.bin",), 2,
)


@hookimpl
def stxbench_add_datasets():
    return [
        Cifar("cifar10", "CIFAR-10, 32x32x3, 10 classes, 50000/10000 (official release in --data-root)",
              CIFAR10, 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
        Cifar("cifar100",
              "CIFAR-100 (fine labels), 32x32x3, 100 classes, 50000/10000 (official release in --data-root)",
              CIFAR100, 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    ]
