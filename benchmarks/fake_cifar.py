"""Fabricate CIFAR-10 in the official python layout, random images and labels, for timing runs
where the real files are absent (``benchmarks/gpu.sh``): nothing it trains means anything.

    python benchmarks/fake_cifar.py DIR --per-batch 1000     # DIR/cifar-10-batches-py/...
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import numpy as np


def write_batch(path: Path, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    batch = {
        b"batch_label": b"fabricated",
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, (n, 3 * 32 * 32)).astype(np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }
    # pickle protocol 2 and numpy 1.x's module name, as in the official files
    path.write_bytes(pickle.dumps(batch, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("root", type=Path)
    p.add_argument("--per-batch", type=int, default=1000, help="images in each of the 5 training batches and the test batch")
    args = p.parse_args()
    folder = args.root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, 6):
        write_batch(folder / f"data_batch_{i}", args.per_batch, i)
    write_batch(folder / "test_batch", args.per_batch, 0)
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"fabricated"] * 10}, protocol=2))
    print(f"fabricated CIFAR-10 ({5 * args.per_batch} training, {args.per_batch} test images) in {folder}")


if __name__ == "__main__":
    main()
