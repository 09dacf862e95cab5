"""Datasets ``dvs128-gesture`` and ``cifar10-dvs``: event-camera recordings, 2x128x128, in
spikingjelly's ``events_np`` layout in the user's folder (``--data-root DIR``)::

    DVS128 Gesture: DIR/events_np/{train,test}/{0..10}/*.npz          (11 classes)
    CIFAR10-DVS:    DIR/events_np/{airplane,automobile,...,truck}/*.npz (10 classes)

Each ``.npz`` holds the arrays ``t, x, y, p`` of one sample (spikingjelly writes them when it
prepares a download; any tool writing the same arrays works). A sample is integrated into T
frames as spikingjelly's ``integrate_events_by_fixed_frames_number`` does: with ``split_by =
"number"`` (the default, as in Spikformer) frame j holds events ``[j*(N//T), (j+1)*(N//T))``, the
last frame also the remainder; with ``split_by = "time"`` the interval from the first to the
last timestamp is cut into T slices of ``(t_last - t_first) // T`` (the last slice takes the
rest). Pixel (p, y, x) of a frame counts its events; frames are float32 ``[T, 2, 128, 128]``.

The recordings are read lazily, one file per sample (CIFAR10-DVS as frames would need 20 GB);
use DataLoader workers (``--workers``). CIFAR10-DVS has no official split: this plugin pins
spikingjelly's deterministic 9:1 split as Spikformer uses it: per class, files sorted by name,
the first ceil(0.9 n) train and the rest test. Training clips are flipped horizontally with
probability 1/2 (all frames alike; option ``flip = false`` turns that off).

Option ``size`` (default 128) resizes the frames to ``size x size`` as torchvision's
``Resize`` does on tensors (bilinear, no antialiasing; 128 -> 64 averages 2x2 blocks), which is
how the Spike-driven Transformer's CIFAR10-DVS code feeds 64x64 frames.
"""

from __future__ import annotations

import math
import zipfile
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
    random_crop_flip,
)

H = W = 128
SPLIT_BY = ("number", "time")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
TRAIN_FRACTION = 0.9
ARRAYS = ("t", "x", "y", "p")
#: events in one recording: the longest of DVS128 Gesture and CIFAR10-DVS hold a few million
MAX_EVENTS = 1 << 28


def check_events_file(path: Path) -> None:
    """One ``.npz`` checked without reading its events: a zip archive whose arrays ``t, x, y,
    p`` are one-dimensional, of integer or boolean type and of one length, as their ``.npy``
    headers say, and whose members are as large as those headers promise. Done for every file
    when the dataset loads, so a broken file is refused before any work, not mid-training."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()}
            missing = [k for k in ARRAYS if k not in members]
            if missing:
                raise UsageError(f"{path}: an events file needs arrays t, x, y, p; missing {missing[0]}")
            lengths = set()
            for key in ARRAYS:
                info = members[key]
                with archive.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read_header(fh)
                    header = fh.tell() if fh.seekable() else None
                if len(shape) != 1 or dtype.kind not in "iub" or shape[0] > MAX_EVENTS:
                    raise UsageError(f"{path}: array {key} is {dtype} {shape}; events are "
                                     f"one-dimensional integers (at most {MAX_EVENTS:,})")
                if header is not None and info.file_size != header + shape[0] * dtype.itemsize:
                    raise UsageError(f"{path}: array {key} is cut short or padded ({info.file_size} bytes "
                                     f"for {shape[0]} {dtype} values)")
                lengths.add(shape[0])
            if len(lengths) > 1:
                raise UsageError(f"{path}: arrays t, x, y, p differ in length ({sorted(lengths)})")
    except UsageError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise UsageError(f"{path}: not a readable .npz of events: {' '.join(str(exc).split())}") from None


def frame_index(t: np.ndarray, frames: int, split_by: str) -> np.ndarray:
    """The frame each event falls in (events in recording order)."""
    n = len(t)
    if split_by == "number":
        per = n // frames
        if per == 0:
            return np.full(n, frames - 1)
        return np.minimum(np.arange(n) // per, frames - 1)
    t = t.astype(np.int64)
    dt = (t[-1] - t[0]) // frames if n else 0
    if dt == 0:
        return np.full(n, frames - 1)
    return np.minimum((t - t[0]) // dt, frames - 1)


def integrate(events: dict[str, np.ndarray], frames: int, split_by: str) -> np.ndarray:
    """Event counts per (frame, polarity, y, x) as float32 ``[frames, 2, H, W]``."""
    t, x, y, p = (np.asarray(events[k]) for k in ("t", "x", "y", "p"))
    if len(t) == 0:
        return np.zeros((frames, 2, H, W), dtype=np.float32)
    j = frame_index(t, frames, split_by)
    position = ((j * 2 + (p != 0)) * H + y.astype(np.int64)) * W + x.astype(np.int64)
    counts = np.bincount(position, minlength=frames * 2 * H * W)
    return counts.reshape(frames, 2, H, W).astype(np.float32)


def resize(frames: torch.Tensor, size: int) -> torch.Tensor:
    """``[T, 2, H, W]`` -> ``[T, 2, size, size]``: torchvision ``Resize`` on tensors (bilinear,
    half-pixel centres, no antialiasing)."""
    if frames.shape[-1] == size and frames.shape[-2] == size:
        return frames
    return torch.nn.functional.interpolate(frames, size=(size, size), mode="bilinear",
                                           align_corners=False, antialias=False)


class EventClips(torch.utils.data.Dataset):
    """Samples read from ``.npz`` files on demand, integrated into frames (then resized)."""

    def __init__(self, files: list[Path], labels: list[int], frames: int, split_by: str,
                 size: int = H):
        self.files, self.labels, self.frames, self.split_by = files, labels, frames, split_by
        self.size = size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        with np.load(self.files[i]) as events:
            missing = [k for k in ("t", "x", "y", "p") if k not in events.files]
            if missing:
                raise UsageError(
                    f"{self.files[i]}: an events file needs arrays t, x, y, p; missing {missing[0]}"
                )
            x, y = np.asarray(events["x"]), np.asarray(events["y"])
            if len(x) and (int(x.min()) < 0 or int(y.min()) < 0 or int(x.max()) >= W or int(y.max()) >= H):
                raise UsageError(f"{self.files[i]}: events outside the {W}x{H} sensor")
            frames = integrate(events, self.frames, self.split_by)
        return resize(torch.from_numpy(frames), self.size), self.labels[i]


def class_files(dataset: str, folder: Path, classes: list[str], layout: str) -> list[list[Path]]:
    """The ``.npz`` files of each class folder, sorted by name; the first missing or empty
    folder is an error."""
    out = []
    for name in classes:
        path = folder / name
        if not path.is_dir():
            raise UsageError(f"dataset '{dataset}': incomplete folder, expected {layout}; missing {path}")
        files = sorted(path.glob("*.npz"), key=lambda f: f.name)
        if not files:
            raise UsageError(
                f"dataset '{dataset}': incomplete folder, expected {layout}; no .npz files in {path}"
            )
        for file in files:
            check_events_file(file)
        out.append(files)
    return out


def flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return random_crop_flip(x, generator, flip=True)


@dataclass(frozen=True)
class ClipSettings:
    frames: int
    split_by: str
    size: int = H
    flip: bool = True


class EventDataset(Dataset):
    classes: tuple[str, ...]
    layout: str
    options = ("frames", "split_by", "size", "flip")

    def validate_options(self, options) -> None:
        self.settings(dict(options))

    def events_root(self, root: str | None) -> Path:
        folder = data_folder(self.name, root, self.layout)
        if (folder / "events_np.building").exists():
            raise UsageError(
                f"dataset '{self.name}': spikingjelly's preparation of {folder / 'events_np'} did not "
                f"finish ({folder / 'events_np.building'} exists); delete both and prepare again"
            )
        return folder / "events_np"

    def settings(self, options: dict) -> ClipSettings:
        check_options(self.name, options, self.options)
        size, flip = options.get("size", H), options.get("flip", True)
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= H:
            raise UsageError(f"dataset '{self.name}': size must be a whole number of pixels in 1..{H}, got {size!r}")
        if not isinstance(flip, bool):
            raise UsageError(f"dataset '{self.name}': flip must be true or false, got {flip!r}")
        frames, split_by = options.get("frames"), options.get("split_by", "number")
        if not isinstance(frames, int) or isinstance(frames, bool) or frames < 1:
            raise UsageError(
                f"dataset '{self.name}' needs frames = T >= 1 (protocol encoding 'frames'), got {frames!r}"
            )
        if split_by not in SPLIT_BY:
            raise UsageError(
                f"dataset '{self.name}': split_by must be one of {', '.join(SPLIT_BY)}, got {split_by!r}"
            )
        return ClipSettings(frames, split_by, size, flip)

    def splits(self, train: list[tuple[Path, int]], test: list[tuple[Path, int]], clip: ClipSettings,
               source: Path) -> DataSplits:
        def clips(samples: list[tuple[Path, int]]) -> EventClips:
            return EventClips([f for f, _ in samples], [c for _, c in samples], clip.frames,
                              clip.split_by, clip.size)

        return DataSplits(
            train=clips(train), test=clips(test), input_shape=(2, clip.size, clip.size),
            num_classes=len(self.classes), temporal=True, augment=flip if clip.flip else None,
            info={"source": str(source), "frames": clip.frames, "split_by": clip.split_by,
                  "size": clip.size, "augment": "horizontal flip" if clip.flip else "none"},
        )


class DVS128Gesture(EventDataset):
    name = "dvs128-gesture"
    summary = "DVS128 Gesture, T x 2x128x128 event frames, 11 classes, official 1176/288 split (--data-root)"
    classes = tuple(str(i) for i in range(11))
    layout = "DIR/events_np/{train,test}/{0..10}/*.npz (spikingjelly)"

    def load(self, root: str | None, **options) -> DataSplits:
        clip = self.settings(options)
        events = self.events_root(root)

        def samples(part: str) -> list[tuple[Path, int]]:
            folders = class_files(self.name, events / part, list(self.classes), self.layout)
            return [(f, c) for c, files in enumerate(folders) for f in files]

        return self.splits(samples("train"), samples("test"), clip, events)


class Cifar10DVS(EventDataset):
    name = "cifar10-dvs"
    summary = "CIFAR10-DVS, T x 2x128x128 event frames, 10 classes, pinned 9:1 split per class (--data-root)"
    classes = CIFAR10_CLASSES
    layout = "DIR/events_np/{" + ",".join(CIFAR10_CLASSES) + "}/*.npz (spikingjelly)"

    def load(self, root: str | None, **options) -> DataSplits:
        clip = self.settings(options)
        events = self.events_root(root)
        train, test = [], []
        for c, files in enumerate(class_files(self.name, events, list(self.classes), self.layout)):
            cut = math.ceil(len(files) * TRAIN_FRACTION)
            train += [(f, c) for f in files[:cut]]
            test += [(f, c) for f in files[cut:]]
        return self.splits(train, test, clip, events)


@hookimpl
def stxbench_add_datasets():
    return [DVS128Gesture(), Cifar10DVS()]
