"""Dataset ``mnist1d``: MNIST-1D (Greydanus & Kobak, ICML 2024), 10 classes of 40-step signals.

Generated offline by the ``mnist1d`` package with its published arguments
(``make_dataset(get_dataset_args())``), which reproduces the published file exactly; the
package's ``get_dataset(download=True)`` would make a network request, so it is never called.
Official split: the first 4000 samples train, the last 1000 test. Each sample is fed to the
model as a one-channel sequence ``(1, 40)``; values are already standardised by the generator.

Options ``samples = N`` and ``test_samples = M`` draw more from the same generator (same
templates, transforms and seed 42): ``N`` signals in all, the last ``M`` of them the test set.
The defaults (5000 and 1000) are the published dataset exactly; a larger ``N`` is a different,
larger draw (its first 5000 signals are not the published ones, because the generator makes
the signals class by class and then shuffles them all at once). A board that needs a test set
of 10,000 signals says ``samples = 16000, test_samples = 10000``.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from stxbench.api import DataSplits, Dataset, UsageError, check_options, hookimpl


class MNIST1D(Dataset):
    name = "mnist1d"
    summary = "MNIST-1D, (1, 40) sequences, 10 classes, official 4000/1000 split (generated offline)"
    options = ("samples", "test_samples")

    def load(self, root: str | None, **options) -> DataSplits:
        check_options(self.name, options, self.options)
        samples, test_samples = _sizes(options)
        try:
            from mnist1d.data import get_dataset_args, make_dataset
        except ImportError:
            raise UsageError(
                "dataset 'mnist1d' needs the mnist1d package: pip install 'stxbench[mnist1d]'"
            ) from None
        # The generator reseeds Python's and numpy's global generators; leave them as they were.
        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            args = get_dataset_args()
            args.num_samples = samples
            # The split is taken here, by count: the generator's own float split could be off by one.
            args.train_split = 1.0
            data = make_dataset(args)
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)

        cut = samples - test_samples

        def split(part: slice) -> torch.utils.data.TensorDataset:
            x = torch.tensor(data["x"][part], dtype=torch.float32).unsqueeze(1)
            return torch.utils.data.TensorDataset(x, torch.tensor(data["y"][part], dtype=torch.int64))

        source = "mnist1d.data.make_dataset(get_dataset_args())"
        if (samples, test_samples) != (DEFAULT_SAMPLES, DEFAULT_TEST_SAMPLES):
            source += f" with num_samples={samples}, the last {test_samples} as test"
        return DataSplits(
            train=split(slice(0, cut)),
            test=split(slice(cut, samples)),
            input_shape=(1, 40),
            num_classes=10,
            info={"source": source},
        )


DEFAULT_SAMPLES, DEFAULT_TEST_SAMPLES = 5000, 1000


def _sizes(options) -> tuple[int, int]:
    """``samples`` and ``test_samples``, checked: whole numbers, ``samples`` a multiple of 10
    (the generator makes ``samples // 10`` per class), at least one training and one test signal."""
    samples = options.get("samples", DEFAULT_SAMPLES)
    test_samples = options.get("test_samples", DEFAULT_TEST_SAMPLES)
    for key, value in (("samples", samples), ("test_samples", test_samples)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UsageError(f"dataset 'mnist1d': {key} must be a whole number >= 1, got {value!r}")
    if samples % 10:
        raise UsageError(
            f"dataset 'mnist1d': samples must be a multiple of 10 (one tenth per class), got {samples}"
        )
    if samples > 200_000:
        raise UsageError(f"dataset 'mnist1d': samples must be at most 200000, got {samples}")
    if test_samples >= samples:
        raise UsageError(
            f"dataset 'mnist1d': test_samples must be below samples ({samples}) to leave training "
            f"signals, got {test_samples}"
        )
    return samples, test_samples


@hookimpl
def stxbench_add_datasets():
    return [MNIST1D()]
