"""MNIST-1D is generated offline and equals the published data; no dataset touches the network."""

from __future__ import annotations

import hashlib
import random
import socket

import numpy as np
import pytest
import torch

from stxbench.run.errors import UsageError
from stxbench.host.plugin_host import PluginHost

pytest.importorskip("mnist1d", reason="pip install 'stxbench[mnist1d]'")


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a socket fails loudly."""

    class NoSocket(socket.socket):
        def __init__(self, *args, **kwargs):
            raise AssertionError("a dataset tried to open a network socket")

    monkeypatch.setattr(socket, "socket", NoSocket)
    monkeypatch.setattr(socket, "create_connection", NoSocket)


def test_mnist1d_matches_published_fingerprints_without_network(no_network):
    random.seed(123)
    np.random.seed(123)
    before = (random.random(), np.random.rand())
    random.seed(123)
    np.random.seed(123)
    splits = PluginHost().dataset("mnist1d").load(None)
    # the generator reseeds the global generators; the plugin puts them back
    assert (random.random(), np.random.rand()) == before
    x, y = splits.train.tensors
    x_test, y_test = splits.test.tensors
    assert x.shape == (4000, 1, 40) and x_test.shape == (1000, 1, 40) and splits.input_shape == (1, 40)
    assert hashlib.sha256(y.numpy().astype(np.int64).tobytes()).hexdigest()[:16] == "d97dc7aecec8ad6b"
    assert hashlib.sha256(y_test.numpy().astype(np.int64).tobytes()).hexdigest()[:16] == "8de99be3ff9dab15"
    # sums of the float32 values, in float64: the published float64 sums to 4 decimals
    assert x.double().abs().sum().item() == pytest.approx(118338.2951, abs=0.05)
    assert x_test.double().abs().sum().item() == pytest.approx(29977.8775, abs=0.05)


def test_mnist1d_larger_draw_splits_by_count_and_balances_classes(no_network):
    """``samples``/``test_samples`` draw more signals from the same generator; the split is
    exact (the last ``test_samples`` are the test set) and every class has samples // 10."""
    splits = PluginHost().dataset("mnist1d").load(None, samples=300, test_samples=120)
    x, y = splits.train.tensors
    x_test, y_test = splits.test.tensors
    assert x.shape == (180, 1, 40) and x_test.shape == (120, 1, 40)
    assert torch.bincount(torch.cat([y, y_test]), minlength=10).tolist() == [30] * 10
    again = PluginHost().dataset("mnist1d").load(None, samples=300, test_samples=120)
    assert torch.equal(again.test.tensors[0], x_test) and torch.equal(again.train.tensors[1], y)
    assert "num_samples=300, the last 120 as test" in splits.info["source"]
    # the defaults, named, are the published split
    named = PluginHost().dataset("mnist1d").load(None, samples=5000, test_samples=1000)
    assert hashlib.sha256(named.test.tensors[1].numpy().astype(np.int64).tobytes()).hexdigest()[:16] == "8de99be3ff9dab15"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"samples": 305}, r"^dataset 'mnist1d': samples must be a multiple of 10 \(one tenth per class\), got 305$"),
        ({"samples": 0}, r"^dataset 'mnist1d': samples must be a whole number >= 1, got 0$"),
        ({"test_samples": 2.5}, r"^dataset 'mnist1d': test_samples must be a whole number >= 1, got 2.5$"),
        ({"samples": True}, r"^dataset 'mnist1d': samples must be a whole number >= 1, got True$"),
        ({"samples": 1000, "test_samples": 1000}, r"^dataset 'mnist1d': test_samples must be below samples \(1000\)"),
        ({"samples": 10**9}, r"^dataset 'mnist1d': samples must be at most 200000, got 1000000000$"),
        ({"train_samples": 10}, r"^dataset 'mnist1d' has no option\(s\) train_samples; valid: samples, test_samples$"),
    ],
)
def test_mnist1d_bad_sizes_are_one_line(options, message):
    with pytest.raises(UsageError, match=message):
        PluginHost().dataset("mnist1d").load(None, **options)


def test_file_datasets_never_open_a_socket(no_network, tmp_path):
    """A missing folder is reported as such; nothing tries to fetch it."""
    host = PluginHost()
    for name in ("mnist", "kmnist", "cifar10", "cifar100", "dvs128-gesture", "cifar10-dvs"):
        options = {"frames": 4} if "dvs" in name else {}
        with pytest.raises(UsageError, match="incomplete folder|missing"):
            host.dataset(name).load(str(tmp_path), **options)


def test_mnist1d_missing_package_is_one_line(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def without_mnist1d(name, *args, **kwargs):
        if name.startswith("mnist1d"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_mnist1d)
    with pytest.raises(UsageError, match=r"^dataset 'mnist1d' needs the mnist1d package: pip install 'stxbench\[mnist1d\]'$"):
        PluginHost().dataset("mnist1d").load(None)


def test_sequences_feed_the_1d_stem():
    """(1, 40) sequences go through Spikformer's 1-D stem."""
    from stxbench_model_spikformer.spikformer import Spikformer

    model = Spikformer(depth=1, dim=16, input_shape=(1, 40), num_classes=10, T=2, pools=1,
                       make_neuron=lambda site: torch.nn.Identity())
    assert model(torch.zeros(3, 1, 40)).shape == (3, 10)
    assert isinstance(model.stem.convs[0], torch.nn.Conv1d)


def test_a_bad_mnist1d_size_stops_the_cli_with_one_line(cli, tmp_path):
    result = cli("run", "--protocol", "mnist1d", "--set", "data.options.samples=305",
                 "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "--no-counts")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.code == 2, result.stderr
    assert len(lines) == 1 and "samples must be a multiple of 10 (one tenth per class), got 305" in lines[0], lines
    assert not (tmp_path / "out" / "result.json").exists()
