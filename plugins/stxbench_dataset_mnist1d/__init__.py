"""Dataset ``mnist1d``: MNIST-1D (Greydanus & Kobak, ICML 2024), 10 classes of 40-step signals.

Generated offline by the ``mnist1d`` package with its published arguments
(``make_dataset(get_dataset_args())``), which reproduces the published file exactly; the
package's ``get_dataset(download=True)`` would make a network request, so it is never called.
Official split: the first 4000 samples train, the last 1000 test. Each sample is fed to the
model as a one-channel sequence ``(1, 40)``; values are already standardised by the generator.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from stxbench.api import DataSplits, Dataset, UsageError, check_options, hookimpl


class MNIST1D(Dataset):
    name = "mnist1d"
    summary = "MNIST-1D, (1, 40) sequences, 10 classes, official 4000/1000 split (generated offline)"
    options = ()

    def load(self, root: str | None, **options) -> DataSplits:
        check_options(self.name, options, ())
        try:
            from mnist1d.data import get_dataset_args, make_dataset
        except ImportError:
            raise UsageError(
                "dataset 'mnist1d' needs the mnist1d package: pip install 'stxbench[mnist1d]'"
            ) from None
        # The generator reseeds Python's and numpy's global generators; leave them as they were.
        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            data = make_dataset(get_dataset_args())
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)

        def split(x_key: str, y_key: str) -> torch.utils.data.TensorDataset:
            x = torch.tensor(data[x_key], dtype=torch.float32).unsqueeze(1)
            return torch.utils.data.TensorDataset(x, torch.tensor(data[y_key], dtype=torch.int64))

        return DataSplits(
            train=split("x", "y"),
            test=split("x_test", "y_test"),
            input_shape=(1, 40),
            num_classes=10,
            info={"source": "mnist1d.data.make_dataset(get_dataset_args())"},
        )


@hookimpl
def stxbench_add_datasets():
    return [MNIST1D()]
