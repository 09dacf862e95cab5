"""MNIST-family IDX files and CIFAR releases: fabricated files in the official layouts, the real
Fashion-MNIST files where the Debian package is installed, and every user error as one line."""

from __future__ import annotations

import gzip
import hashlib
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from stxbench.run.errors import UsageError
from stxbench.host.plugin_host import PluginHost

FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost()


def write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    raw = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    raw += array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)


def fake_mnist(folder: Path, gz: bool, n_train: int = 12, n_test: int = 5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) * 3) % 10,
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        write_idx(folder / name, array, gz)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_idx_reader_reads_plain_and_gzipped_files(host, tmp_path, gz):
    arrays = fake_mnist(tmp_path, gz)
    splits = host.dataset("mnist").load(str(tmp_path))
    x, y = splits.train.tensors
    assert x.dtype == torch.uint8 and x.shape == (12, 1, 28, 28)
    assert torch.equal(x[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"].astype(np.uint8)))
    assert y.tolist() == [i % 10 for i in range(12)]
    assert splits.test.tensors[1].tolist() == [0, 3, 6, 9, 2]
    assert splits.input_shape == (1, 28, 28) and splits.num_classes == 10
    assert splits.prepare(torch.tensor([255, 0], dtype=torch.uint8)).tolist() == [1.0, 0.0]


def test_idx_reader_finds_torchvision_layout_and_limits_training_samples(host, tmp_path):
    fake_mnist(tmp_path / "KMNIST" / "raw", gz=True)
    splits = host.dataset("kmnist").load(str(tmp_path), train_samples=4)
    assert len(splits.train) == 4 and len(splits.test) == 5


def test_idx_errors_are_one_line(host, tmp_path):
    fake_mnist(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(UsageError, match=r"missing .*t10k-labels-idx1-ubyte\[\.gz\]$"):
        host.dataset("mnist").load(str(tmp_path))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x09" + bytes(5))
    with pytest.raises(UsageError, match="header says \\(9,\\), 5 bytes of data follow"):
        host.dataset("mnist").load(str(tmp_path))
    fake_mnist(tmp_path, gz=False)
    with pytest.raises(UsageError, match="train_samples must be an integer in 1..12"):
        host.dataset("mnist").load(str(tmp_path), train_samples=13)
    with pytest.raises(UsageError, match="has no option\\(s\\) frames; valid: train_samples"):
        host.dataset("mnist").load(str(tmp_path), frames=4)
    with pytest.raises(UsageError, match="pass --data-root DIR"):
        host.dataset("mnist").load(None)


def test_idx_downsample_averages_blocks_and_rounds_half_up(host, tmp_path):
    arrays = fake_mnist(tmp_path, gz=False)
    splits = host.dataset("mnist").load(str(tmp_path), downsample=2)
    x = splits.train.tensors[0]
    assert x.dtype == torch.uint8 and x.shape == (12, 1, 14, 14) and splits.input_shape == (1, 14, 14)
    image = arrays["train-images-idx3-ubyte"][3].astype(int)
    block = image[4:6, 10:12].sum()  # the block of output pixel (2, 5)
    assert int(x[3, 0, 2, 5]) == (block + 2) // 4
    assert splits.test.tensors[0].shape == (5, 1, 14, 14)
    from stxbench_dataset_idx import block_mean

    assert block_mean(np.array([[[0, 1], [1, 0]], [[0, 1], [0, 0]]], dtype=np.uint8), 2).tolist() == [[[1]], [[0]]]
    for bad in (3, 0, True, 2.0):
        with pytest.raises(UsageError, match=r"downsample must be a whole number dividing the 28x28 images "
                                             r"\(1, 2, 4, 7, 14, 28\), got "):
            host.dataset("mnist").load(str(tmp_path), downsample=bad)


@pytest.mark.skipif(not FASHION.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_real_fashion_mnist_from_the_debian_package(host):
    splits = host.dataset("fashion-mnist").load(None)
    x, y = splits.train.tensors
    assert x.shape == (60000, 1, 28, 28) and len(splits.test) == 10000
    assert torch.bincount(y).tolist() == [6000] * 10
    assert torch.bincount(splits.test.tensors[1]).tolist() == [1000] * 10
    # the official files' label order (first training labels: ankle boot, t-shirt, t-shirt)
    assert y[:3].tolist() == [9, 0, 0]
    assert hashlib.sha256(splits.test.tensors[1].numpy().tobytes()).hexdigest()[:16] == "d51d859896c55775"


# -- CIFAR ------------------------------------------------------------------------------------


def cifar_batch(n: int, seed: int, label_key: str, classes: int) -> dict[bytes, object]:
    """A batch as the official pickles hold it (bytes keys, uint8 (N, 3072) rows)."""
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": b"fabricated",
        label_key.encode(): [int(v) for v in rng.integers(0, classes, n)],
        b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }


def write_pickle(path: Path, obj: object) -> None:
    # protocol 2 as in the official files; name numpy's function as numpy 1.x did
    raw = pickle.dumps(obj, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    path.write_bytes(raw)


def fake_cifar10(root: Path, n: int = 4) -> list[dict]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = [cifar_batch(n, i, "labels", 10) for i in range(6)]
    for i, batch in enumerate(batches[:5], 1):
        write_pickle(folder / f"data_batch_{i}", batch)
    write_pickle(folder / "test_batch", batches[5])
    write_pickle(folder / "batches.meta", {b"label_names": [b"airplane"] * 10})
    return batches


def test_cifar10_python_release(host, tmp_path):
    batches = fake_cifar10(tmp_path)
    splits = host.dataset("cifar10").load(str(tmp_path))
    x, y = splits.train.tensors
    assert x.shape == (20, 3, 32, 32) and x.dtype == torch.uint8
    first = batches[0][b"data"][0].reshape(3, 32, 32)
    assert torch.equal(x[0], torch.from_numpy(first))
    assert y.tolist() == sum((b[b"labels"] for b in batches[:5]), [])
    assert splits.test.tensors[1].tolist() == batches[5][b"labels"]
    # normalisation: a zero pixel becomes -mean/std per channel
    zero = splits.prepare(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    assert zero[0, :, 0, 0].tolist() == pytest.approx([-0.4914 / 0.2470, -0.4822 / 0.2435, -0.4465 / 0.2616])


def test_cifar_augmentation_is_seeded_crop_and_flip(host, tmp_path):
    fake_cifar10(tmp_path)
    splits = host.dataset("cifar10").load(str(tmp_path))
    x = splits.prepare(splits.train.tensors[0][:8])
    a = splits.augment(x, torch.Generator().manual_seed(1))
    b = splits.augment(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == x.shape
    black = splits.prepare(torch.zeros(1, 3, 1, 1, dtype=torch.uint8))[0]
    for i in range(8):  # every output is a shifted (maybe flipped) window of the padded input
        padded = torch.nn.functional.pad(x[i] - black, (4, 4, 4, 4)) + black
        windows = [padded[:, dy:dy + 32, dx:dx + 32] for dy in range(9) for dx in range(9)]
        assert any(torch.equal(a[i], w) or torch.equal(a[i], w.flip(-1)) for w in windows)
    assert not torch.equal(a, x)


def test_cifar100_binary_release(host, tmp_path):
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, n in (("train.bin", 6), ("test.bin", 3)):
        coarse, fine = rng.integers(0, 20, n), rng.integers(0, 100, n)
        pixels = rng.integers(0, 256, (n, 3072))
        rows = np.concatenate([coarse[:, None], fine[:, None], pixels], axis=1).astype(np.uint8)
        rows.tofile(folder / name)
        if name == "test.bin":
            expected_fine, expected_pixels = fine, pixels
    splits = host.dataset("cifar100").load(str(tmp_path))
    assert splits.num_classes == 100 and len(splits.train) == 6
    assert splits.test.tensors[1].tolist() == expected_fine.tolist()
    assert torch.equal(splits.test.tensors[0][2].flatten(), torch.from_numpy(expected_pixels[2].astype(np.uint8)))


class Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_cifar_unpickler_refuses_code(host, tmp_path):
    fake_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(pickle.dumps({b"data": Exploit()}))
    with pytest.raises(UsageError, match=r"data_batch_3: not a CIFAR python batch: refusing to load global (posix|os)\.system"):
        host.dataset("cifar10").load(str(tmp_path))


def test_cifar_missing_file_through_the_cli(cli, tmp_path):
    fake_cifar10(tmp_path / "data")
    (tmp_path / "data" / "cifar-10-batches-py" / "data_batch_4").unlink()
    result = cli("run", "--protocol", "cifar10-spikformer-4-384", "--data-root", str(tmp_path / "data"),
                 "--device", "cpu", "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"))
    assert result.code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: dataset 'cifar10': incomplete folder, expected DIR/cifar-10-batches-py/{data_batch_1")
    assert lines[0].endswith("cifar-10-batches-py/data_batch_4")
    assert not (tmp_path / "out").exists()


def test_fashion_mnist_missing_folder_through_the_cli(cli, tmp_path):
    (tmp_path / "data").mkdir()
    result = cli("run", "--protocol", "fashion-mnist", "--data-root", str(tmp_path / "data"), "--device", "cpu",
                 "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"))
    assert result.code == 2
    assert result.stderr.strip().splitlines() == [
        f"error: dataset 'fashion-mnist': incomplete folder, expected {tmp_path / 'data'}/{{train-images-idx3-ubyte, "
        "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte}[.gz]; missing "
        f"{tmp_path / 'data'}/train-images-idx3-ubyte[.gz]"
    ]
    assert not (tmp_path / "out").exists()


def test_fashion_mnist_without_the_debian_package_says_how_to_get_it(host, tmp_path, monkeypatch):
    monkeypatch.setattr(host.dataset("fashion-mnist"), "default_root", str(tmp_path / "absent"))
    with pytest.raises(UsageError, match=r"absent does not exist; install the Debian package \(apt-get install "
                       r"dataset-fashion-mnist\) or pass --data-root DIR with"):
        host.dataset("fashion-mnist").load(None)
