"""Dataset ``digits``: scikit-learn's 8x8 handwritten digits (UCI optdigits, 1797 images).

The data ship inside the scikit-learn wheel, so nothing downloads. There is no official split:
a stratified 80/20 split with a fixed seed gives 1437 training and 360 test images. Pixels
(0..16) are scaled to [0, 1].
"""

from __future__ import annotations

import torch

from stxbench.api import DataSplits, Dataset, hookimpl

SPLIT_SEED = 0
TEST_FRACTION = 0.2


class Digits(Dataset):
    name = "digits"
    summary = "scikit-learn digits, 8x8x1, 10 classes, stratified 1437/360 split (ships with sklearn)"
    options = ()

    def load(self, root: str | None) -> DataSplits:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        data = load_digits()
        x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
        y = torch.tensor(data.target, dtype=torch.int64)
        idx_train, idx_test = train_test_split(
            torch.arange(len(y)).numpy(),
            test_size=TEST_FRACTION,
            stratify=y.numpy(),
            random_state=SPLIT_SEED,
        )
        idx_train, idx_test = torch.as_tensor(idx_train), torch.as_tensor(idx_test)
        return DataSplits(
            train=torch.utils.data.TensorDataset(x[idx_train], y[idx_train]),
            test=torch.utils.data.TensorDataset(x[idx_test], y[idx_test]),
            input_shape=(1, 8, 8),
            num_classes=10,
            info={"source": "sklearn.datasets.load_digits", "split_seed": SPLIT_SEED},
        )


@hookimpl
def stxbench_add_datasets():
    return [Digits()]
