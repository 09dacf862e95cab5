"""Event-camera datasets on small fabricated recordings in spikingjelly's exact ``events_np``
layout: frame integration, the pinned CIFAR10-DVS split, lazy loading, errors as one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stxbench.run.errors import UsageError
from stxbench.host.plugin_host import PluginHost
from stxbench_dataset_dvs import CIFAR10_CLASSES, EventClips, integrate


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost()


def write_events(path: Path, t, x, y, p) -> None:
    """One sample as spikingjelly saves it (np.savez with arrays t, x, y, p)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, t=np.asarray(t, np.int64), x=np.asarray(x, np.uint16),
             y=np.asarray(y, np.uint16), p=np.asarray(p, np.uint8))


def random_events(path: Path, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    write_events(path, np.sort(rng.integers(0, 10_000, n)), rng.integers(0, 128, n),
                 rng.integers(0, 128, n), rng.integers(0, 2, n))


def test_integration_by_number_and_time_golden():
    # 7 events, T=3. By number: 7 // 3 = 2 per frame, the last frame takes the remaining 3.
    events = {"t": np.array([0, 1, 2, 10, 11, 12, 30]), "x": np.array([0, 1, 1, 2, 2, 2, 127]),
              "y": np.array([0, 0, 0, 5, 5, 5, 127]), "p": np.array([1, 0, 0, 1, 1, 0, 1])}
    frames = integrate(events, 3, "number")
    assert frames.shape == (3, 2, 128, 128) and frames.dtype == np.float32
    assert frames.sum(axis=(1, 2, 3)).tolist() == [2, 2, 3]
    assert frames[0, 1, 0, 0] == 1 and frames[0, 0, 0, 1] == 1
    assert frames[1, 0, 0, 1] == 1 and frames[1, 1, 5, 2] == 1  # (p, y, x)
    assert frames[2, 1, 5, 2] == 1 and frames[2, 0, 5, 2] == 1 and frames[2, 1, 127, 127] == 1
    # By time: dt = (30 - 0) // 3 = 10: [0, 10) [10, 20) [20, 30], the last takes t = 30.
    frames = integrate(events, 3, "time")
    assert frames.sum(axis=(1, 2, 3)).tolist() == [3, 3, 1]
    assert frames[2, 1, 127, 127] == 1


def fake_gesture(root: Path, per_class: int = 2) -> None:
    for part, count in (("train", per_class), ("test", 1)):
        for c in range(11):
            for i in range(count):
                random_events(root / "events_np" / part / str(c) / f"user01_led_{i}.npz", 50 + c, c * 10 + i)


def test_dvs128_gesture_layout_and_lazy_frames(host, tmp_path):
    fake_gesture(tmp_path)
    splits = host.dataset("dvs128-gesture").load(str(tmp_path), frames=4)
    assert isinstance(splits.train, EventClips)  # read file by file, not into memory
    assert len(splits.train) == 22 and len(splits.test) == 11
    assert splits.temporal and splits.input_shape == (2, 128, 128) and splits.num_classes == 11
    x, label = splits.train[5]
    assert label == 2 and x.shape == (4, 2, 128, 128) and x.sum().item() == 52
    flipped = splits.augment(torch.stack([x, x]), torch.Generator().manual_seed(0))
    for clip in flipped:
        assert torch.equal(clip, x) or torch.equal(clip, x.flip(-1))


def test_cifar10_dvs_pinned_nine_to_one_split(host, tmp_path):
    for c, name in enumerate(CIFAR10_CLASSES):
        for i in range(12):  # names sort as strings: 0, 1, 10, 11, 2, ...
            random_events(tmp_path / "events_np" / name / f"cifar10_{name}_{i}.npz", 20, c * 100 + i)
    splits = host.dataset("cifar10-dvs").load(str(tmp_path), frames=2, split_by="time")
    assert len(splits.train) == 110 and len(splits.test) == 10  # ceil(0.9 * 12) = 11 per class
    assert [f.name for f in splits.test.files[:2]] == ["cifar10_airplane_9.npz", "cifar10_automobile_9.npz"]
    assert splits.train.labels[:12] == [0] * 11 + [1]
    assert splits.train.files[2].name == "cifar10_airplane_10.npz"


def test_event_folder_errors(host, tmp_path):
    fake_gesture(tmp_path)
    for f in (tmp_path / "events_np" / "test" / "7").iterdir():
        f.unlink()
    with pytest.raises(UsageError, match=r"no \.npz files in .*events_np/test/7$"):
        host.dataset("dvs128-gesture").load(str(tmp_path), frames=4)
    (tmp_path / "events_np" / "test" / "7").rmdir()
    with pytest.raises(UsageError, match=r"expected DIR/events_np/\{train,test\}/\{0\.\.10\}/\*\.npz \(spikingjelly\); missing .*test/7$"):
        host.dataset("dvs128-gesture").load(str(tmp_path), frames=4)
    (tmp_path / "events_np.building").touch()
    with pytest.raises(UsageError, match="did not finish"):
        host.dataset("dvs128-gesture").load(str(tmp_path), frames=4)
    with pytest.raises(UsageError, match="split_by must be one of number, time"):
        host.dataset("cifar10-dvs").load(str(tmp_path), frames=4, split_by="events")


def test_missing_dvs_folder_through_the_cli(cli, tmp_path):
    (tmp_path / "data" / "events_np").mkdir(parents=True)
    result = cli("run", "--protocol", "cifar10dvs-spikformer-2-256", "--data-root", str(tmp_path / "data"),
                 "--device", "cpu", "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"))
    assert result.code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith("events_np/airplane"), lines
    assert "expected DIR/events_np/{airplane,automobile," in lines[0]
    assert not (tmp_path / "out").exists()


DVS_PROTOCOL = """
name = "tiny-dvs"
cpu_cheap = true
seeds = [0]
[data]
dataset = "dvs128-gesture"
encoding = "frames"
[model]
name = "spikformer-1-16"
T = 2
[model.options]
pools = 4
[train]
epochs = 1
batch_size = 11
lr = 1e-2
mixup = 0.5
[finetune]
epochs = 1
batch_size = 11
lr = 1e-3
[eval]
batch_size = 11
"""


def test_event_frames_train_end_to_end(cli, tmp_path):
    """T frames from files through a DataLoader (the non-tensor path), with flips and mixup."""
    fake_gesture(tmp_path / "data")
    (tmp_path / "dvs.toml").write_text(DVS_PROTOCOL)
    result = cli("run", "--protocol", str(tmp_path / "dvs.toml"), "--data-root", str(tmp_path / "data"),
                 "--device", "cpu", "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "-q")
    assert result.code == 0, result.stderr
    from stxbench.record.schema import load_record

    record = load_record(tmp_path / "out" / "result.json")
    assert record.metrics.test_samples == 11 and record.config.T == 2
    assert record.provenance.execution.data_workers == 0
