"""Reading a user's data files without trusting them: the header first, never more bytes than
it promises, and the known shape of a published dataset checked before any work.

IDX (the MNIST family's format) is checked here, in the host, when a dataset plugin names its
files through `stxbench.api.require_files`: a gzipped file is inflated as a stream, chunk by
chunk, and given up as soon as it yields more bytes than its header promises, so a small file
that inflates to gigabytes costs a few megabytes of memory, not the gigabytes. `read_idx` is
the bounded reader itself, for plugins to use.
"""

from __future__ import annotations

import gzip
import math
import re
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from stxbench.run.errors import UsageError

IDX_UBYTE = 0x08
CHUNK = 1 << 20
#: an IDX file whose dimensions are not known in advance holds at most this many data bytes
MAX_IDX_BYTES = 4 << 30
IDX_NAME = re.compile(r"-idx(\d)-ubyte(\.gz)?$")

#: the published shapes of the MNIST family's files, by dataset and file stem: (samples, *one
#: sample's shape). A file must hold samples of that shape, and at most that many (a copy cut
#: short is allowed: the record states the samples it used); labels are 0..9.
_MNIST_FAMILY = {
    "train-images-idx3-ubyte": (60000, 28, 28), "train-labels-idx1-ubyte": (60000,),
    "t10k-images-idx3-ubyte": (10000, 28, 28), "t10k-labels-idx1-ubyte": (10000,),
}
KNOWN_IDX: dict[str, dict[str, tuple[int, ...]]] = {
    "fashion-mnist": _MNIST_FAMILY, "mnist": _MNIST_FAMILY, "kmnist": _MNIST_FAMILY,
}
KNOWN_CLASSES = {"fashion-mnist": 10, "mnist": 10, "kmnist": 10}


def _opener(path: Path):
    with open(path, "rb") as fh:
        gzipped = fh.read(2) == b"\x1f\x8b"
    return (gzip.open if gzipped else open)(path, "rb"), gzipped


def _read_exactly(fh, size: int) -> bytes:
    out = bytearray()
    while len(out) < size:
        chunk = fh.read(min(CHUNK, size - len(out)))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def idx_header(fh, path: Path) -> tuple[int, ...]:
    """The dimensions an IDX stream's header promises (the stream left at the data)."""
    magic = fh.read(4)
    if len(magic) < 4:
        raise UsageError(f"{path}: not an IDX file (too short)")
    zero, dtype, ndim = struct.unpack(">HBB", magic)
    if zero != 0 or dtype != IDX_UBYTE or ndim == 0:
        raise UsageError(f"{path}: not an IDX file of unsigned bytes (magic {magic.hex()})")
    raw = fh.read(4 * ndim)
    if len(raw) < 4 * ndim:
        raise UsageError(f"{path}: not an IDX file (header cut short)")
    return struct.unpack(f">{ndim}I", raw)


def _expected(dataset: str | None, path: Path) -> tuple[int, ...] | None:
    stem = path.name.removesuffix(".gz")
    return KNOWN_IDX.get(dataset or "", {}).get(stem)


def read_idx(path: Path, dataset: str | None = None, keep: bool = True,
             limit: int = MAX_IDX_BYTES) -> np.ndarray | None:
    """An IDX file of unsigned bytes (gzipped or not), its header read first: a header that
    does not fit the published shape of ``dataset``'s file, or that promises more than
    ``limit`` bytes, is refused before anything else is read, and the data is read (inflated)
    only up to what the header promises, one byte more telling a longer file. ``keep=False``
    checks the file without keeping its data (memory: one chunk)."""
    try:
        fh, gzipped = _opener(path)
        with fh:
            dims = idx_header(fh, path)
            expected = _expected(dataset, path)
            if expected is not None and (len(dims) != len(expected) or dims[1:] != expected[1:]
                                         or dims[0] > expected[0]):
                def shape(d):
                    return f"{d[0]:,} samples of {'x'.join(map(str, d[1:])) or '1'}"
                raise UsageError(
                    f"{path}: holds {shape(dims)}, but this file of dataset '{dataset}' holds at most "
                    f"{shape(expected)}; the folder holds another dataset")
            size = math.prod(dims)
            if size > limit:
                raise UsageError(f"{path}: header promises {size:,} bytes of data, more than the "
                                 f"{limit:,} an IDX file may hold here")
            labels_of = KNOWN_CLASSES.get(dataset or "") if len(dims) == 1 else None
            if keep:
                data = _read_exactly(fh, size)
                got, top = len(data), (max(data) if data and labels_of else 0)
            else:
                got, top = 0, 0
                while got < size:
                    chunk = fh.read(min(CHUNK, size - got))
                    if not chunk:
                        break
                    got += len(chunk)
                    if labels_of:
                        top = max(top, max(chunk))
            longer = got == size and fh.read(1) != b""
    except UsageError:
        raise
    except (OSError, EOFError, zlib.error) as exc:  # a broken gzip stream, an unreadable file
        raise UsageError(f"{path}: cannot read: {' '.join(str(exc).split())}") from None
    if got != size or longer:
        what = f"{got:,} bytes of data follow" if got != size else "more data follow"
        raise UsageError(f"{path}: truncated or padded IDX file: header says {dims}, "
                         f"{what}{' once inflated' if gzipped else ''}")
    if labels_of and top >= labels_of:
        raise UsageError(f"{path}: label {top}; dataset '{dataset}' has labels 0..{labels_of - 1}")
    return np.frombuffer(data, dtype=np.uint8).reshape(dims) if keep else None


def check_data_files(dataset: str, paths: Iterable[Path]) -> None:
    """Files in a format the host knows (IDX), checked as `read_idx` reads them, without
    keeping their data: called by `require_files`, so before a plugin reads any of them."""
    for path in paths:
        if IDX_NAME.search(path.name):
            read_idx(path, dataset, keep=False)
