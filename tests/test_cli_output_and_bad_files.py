"""Issue 25's command-line and bad-file items: every output of the CLI fits 100 columns, the
run summary names what it leaves out, messages say how to fix what they refuse, and data files,
checkpoints and a full disk end in one line, not a traceback (nor gigabytes of memory)."""

from __future__ import annotations

import errno
import gzip
import os
import pickle
import struct
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_PROTOCOL

from stxbench.run.errors import UsageError

ROOT = Path(__file__).resolve().parent.parent
WIDTH = 100


def too_wide(text: str) -> list[str]:
    return [line for line in text.splitlines() if len(line) > WIDTH]


@pytest.fixture
def narrow(monkeypatch):
    monkeypatch.setenv("COLUMNS", str(WIDTH))


@pytest.fixture(scope="module")
def unofficial_dsp_run(tmp_path_factory):
    """A DSP run of the tiny protocol at seed 7 (not among its seeds 0, 1): its summary, its notes."""
    from conftest import run_cli

    root = tmp_path_factory.mktemp("dsp-run")
    (root / "tiny.toml").write_text(TINY_PROTOCOL.format(dense_epochs=1))
    os.environ["COLUMNS"] = str(WIDTH)
    try:
        result = run_cli("run", "--protocol", str(root / "tiny.toml"), "--pruner", "dsp", "--seed", "7",
                         "--out", str(root / "out"), "--cache-dir", str(root / "cache"), "-q")
    finally:
        del os.environ["COLUMNS"]
    assert result.code == 0, result.stderr
    return result, root / "out" / "result.json"


def test_the_run_summary_fits_and_names_what_it_leaves_out(unofficial_dsp_run):
    result, record = unofficial_dsp_run
    assert too_wide(result.stdout) == []
    head = result.stdout.splitlines()[0]
    assert head == "tiny (unofficial) | neuron lif | pruner dsp keep=0.5 method=svd | backend torch | seed 7"
    assert "{" not in result.stdout
    text = " ".join(result.stdout.split())  # wrapped lines joined
    assert "ops / sample (mean)" in text
    assert "ops and energy: mean per sample over the 360 test samples test[:360]" in text
    assert "other estimates in result.json" in text and "merge-if-cheaper" in text
    assert f"list them: stxbench energy {record} --variants" in text


def test_run_says_up_front_once_that_the_record_will_be_unofficial(unofficial_dsp_run):
    result, _ = unofficial_dsp_run
    notes = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert notes == ["note: this run will be unofficial (seed(s) 7 not among the protocol's (0, 1)): its "
                     "record cannot go to the leaderboard"]
    assert result.stderr.splitlines()[0] == notes[0]  # before anything else (the work)


def test_every_command_fits_100_columns(unofficial_dsp_run, tiny_runs, cli, narrow):
    _, record = unofficial_dsp_run
    lif = tiny_runs.records["lif-s0"]
    boards = ROOT / "leaderboards"
    commands = [
        ["compare", str(lif), str(record)],
        ["compare", str(lif), str(record), "--only-diff"],
        ["list"],
        ["energy", str(record)],
        ["energy", str(record), "--merge-if-cheaper", "--cost-model", "horowitz45-fp32-dram-v1"],
        ["energy", str(record), "--variants"],
        ["leaderboard", "paired", "digits", "--a", "plif", "--a", "slif", "--b", "lif", "--root", str(boards)],
    ]
    legacy = boards / "legacy"
    if (legacy / "fashion-mnist-curves").is_dir():  # a board with recovery curves: two measures per row
        commands.append(["leaderboard", "paired", "fashion-mnist-curves", "--a", "slif", "--b", "lif",
                         "--root", str(legacy)])
    for args in commands:
        result = cli(*args)
        assert result.code == 0, (args, result.stderr)
        assert too_wide(result.stdout) == [] and too_wide(result.stderr) == [], args


def test_energy_lists_the_stored_variants_lowest_first(unofficial_dsp_run, cli, narrow):
    _, record = unofficial_dsp_run
    from stxbench.record.schema import load_record

    stored = load_record(record).energies
    result = cli("energy", str(record), "--variants")
    rows = [line.split() for line in result.stdout.splitlines() if line[:1].isdigit()]
    assert len(rows) == len(stored) and [float(r[0]) for r in rows] == sorted(float(r[0]) for r in rows)
    assert sum(r[-1] == "reported" for r in rows) == 1


def test_a_protocol_key_typo_names_the_closest_few(cli, tiny_protocol, tmp_path):
    result = cli("run", "--protocol", str(tiny_protocol), "--set", "train.epoch=3", "--out", str(tmp_path / "o"))
    assert result.code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: unknown protocol key 'train.epoch'; did you mean 'train.epochs'? closest "
                           "valid: train.epochs, ")
    assert len(line.split("closest valid: ")[1].split("(")[0].split(", ")) <= 5 and len(line) < 250


def test_the_dense_lock_names_its_holder_and_the_cache(tmp_path):
    from stxbench.run.checkpoints import dense_lock

    path = tmp_path / "cache" / "dense" / "tiny-0123.pt"
    said: list[str] = []
    with dense_lock(path, said.append):
        waiter = threading.Thread(target=lambda: dense_lock(path, said.append).__enter__())
        waiter.start()
        for _ in range(200):
            if said:
                break
            time.sleep(0.01)
    waiter.join(5)
    (line,) = said
    assert line.startswith(f"waiting for process {os.getpid()} on this machine to finish training the dense "
                           f"model tiny-0123.pt in the cache {tmp_path / 'cache'} ")
    assert "--cache-dir DIR" in line


# -- data files: the header first, never more than it promises ------------------------------


MNIST_PROTOCOL = TINY_PROTOCOL.replace('dataset = "digits"', 'dataset = "mnist"')


def idx(array: np.ndarray, dims: tuple[int, ...] | None = None) -> bytes:
    dims = dims or array.shape
    return struct.pack(">HBB", 0, 8, len(dims)) + struct.pack(f">{len(dims)}I", *dims) + array.astype(np.uint8).tobytes()


def mnist_folder(folder: Path, images: tuple[int, int] = (28, 28), labels: int = 10, n: int = 20) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", n), ("t10k", n // 2)):
        (folder / f"{split}-images-idx3-ubyte").write_bytes(idx(np.zeros((count, *images))))
        (folder / f"{split}-labels-idx1-ubyte").write_bytes(idx(np.arange(count) % labels))
    return folder


def refused(cli, tmp_path: Path, data: Path) -> str:
    (tmp_path / "mnist.toml").write_text(MNIST_PROTOCOL.format(dense_epochs=1))
    out = tmp_path / "out"
    result = cli("run", "--protocol", str(tmp_path / "mnist.toml"), "--data-root", str(data), "--out", str(out),
                 "--cache-dir", str(tmp_path / "cache"), "-q")
    assert result.code == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr
    assert not out.exists() and not (tmp_path / "cache").exists()
    return lines[0]


def test_a_gzip_inflating_beyond_its_header_is_refused_without_inflating_it(cli, tmp_path):
    data = mnist_folder(tmp_path / "data")
    bomb = data / "train-images-idx3-ubyte.gz"
    (data / "train-images-idx3-ubyte").unlink()
    with gzip.open(bomb, "wb") as fh:  # the header promises 20 images, 64 MB follow
        fh.write(idx(np.zeros(0), dims=(20, 28, 28)))
        chunk = bytes(1 << 20)
        for _ in range(64):
            fh.write(chunk)
    assert bomb.stat().st_size < 200_000
    tracemalloc.start()
    try:
        line = refused(cli, tmp_path, data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert line == (f"error: {bomb}: truncated or padded IDX file: header says (20, 28, 28), more data follow "
                    "once inflated")
    assert peak < 8 << 20  # a few chunks, not the 64 MB the file inflates to


def test_a_file_shorter_than_its_header_is_refused(cli, tmp_path):
    data = mnist_folder(tmp_path / "data")
    (data / "t10k-labels-idx1-ubyte").write_bytes(idx(np.zeros(3), dims=(10,)))
    assert refused(cli, tmp_path, data).endswith("header says (10,), 3 bytes of data follow")


def test_a_folder_of_another_dataset_is_refused_before_any_work(cli, tmp_path):
    data = mnist_folder(tmp_path / "data", images=(32, 32))
    assert refused(cli, tmp_path, data) == (
        f"error: {data / 'train-images-idx3-ubyte'}: holds 20 samples of 32x32, but this file of dataset "
        "'mnist' holds at most 60,000 samples of 28x28; the folder holds another dataset")
    labels = mnist_folder(tmp_path / "labels", labels=12)
    assert refused(cli, tmp_path, labels) == (
        f"error: {labels / 'train-labels-idx1-ubyte'}: label 11; dataset 'mnist' has labels 0..9")


def test_a_header_promising_more_than_the_dataset_has_is_refused_unread(tmp_path):
    from stxbench.data.files import read_idx

    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(idx(np.zeros(0), dims=(4_000_000_000, 28, 28)))
    with pytest.raises(UsageError, match="holds 4,000,000,000 samples of 28x28, but this file of dataset"):
        read_idx(path, "fashion-mnist")
    with pytest.raises(UsageError, match="header promises 3,136,000,000,000 bytes of data, more than"):
        read_idx(path)


def test_a_corrupt_npz_in_a_dvs_folder_is_refused_when_the_dataset_loads(tmp_path):
    from test_datasets_dvs import fake_gesture

    from stxbench.host.plugin_host import PluginHost

    fake_gesture(tmp_path, per_class=1)
    bad = tmp_path / "events_np" / "test" / "7" / "user01_led_0.npz"
    bad.write_bytes(bad.read_bytes()[:-40])  # cut short: its zip directory is gone
    with pytest.raises(UsageError, match=rf"^{bad}: not a readable \.npz of events: "):
        PluginHost().dataset("dvs128-gesture").load(str(tmp_path), frames=2)
    np.savez(bad, t=np.arange(3), x=np.arange(3), y=np.arange(2), p=np.arange(3))
    with pytest.raises(UsageError, match=r"arrays t, x, y, p differ in length \(\[2, 3\]\)"):
        PluginHost().dataset("dvs128-gesture").load(str(tmp_path), frames=2)


def test_a_cifar_file_larger_than_any_of_the_release_is_refused_unread(tmp_path, monkeypatch):
    import stxbench_dataset_cifar as cifar

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batch = {b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 3]}
    for name in [*cifar.BATCHES, "test_batch", "batches.meta"]:
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    monkeypatch.setattr(cifar, "MAX_FILE_BYTES", 1000)
    with pytest.raises(UsageError, match=r"data_batch_1: 0 MB; no file of a CIFAR release is larger than 0 MB"):
        cifar.CIFAR10 and cifar.Cifar("cifar10", "", cifar.CIFAR10, 10, (0,) * 3, (1,) * 3).load(str(tmp_path))


def test_a_checkpoint_that_is_not_a_torch_archive_or_too_large_is_not_read(tmp_path):
    from stxbench.run.checkpoints import CorruptCheckpoint, load_state, save_state

    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"\0" * 4096)
    with pytest.raises(CorruptCheckpoint, match="is not a torch checkpoint"):
        load_state(path)
    save_state(path, {"a": 1})
    assert load_state(path)[0] == {"a": 1}
    with pytest.raises(CorruptCheckpoint, match="more than a checkpoint of this run can be"):
        load_state(path, limit=100)


# -- a full disk, a cache entry that is a folder --------------------------------------------


def test_a_full_disk_is_one_line_and_the_run_resumes(cli, tiny_protocol, tmp_path, monkeypatch):
    import stxbench.run.checkpoints as checkpoints

    real, saves = checkpoints.save_state, []

    def save_state(path, payload):
        saves.append(path)
        if len(saves) == 2:  # the second checkpoint: dense epoch 2
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path.with_name(".tmp")))
        return real(path, payload)

    monkeypatch.setattr(checkpoints, "save_state", save_state)
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = ["run", "--protocol", str(tiny_protocol), "--out", str(out), "--cache-dir", str(cache), "-q"]
    result = cli(*args)
    assert result.code == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: no space left on the device writing {out / '.tmp'}: free some space")
    assert f"the last checkpoint (dense epoch 1) is in {out}; resume with: stxbench run " in line
    assert (out / "checkpoint.pt").exists() and not (out / "result.json").exists()
    monkeypatch.setattr(checkpoints, "save_state", real)
    resumed = cli(*args)
    assert resumed.code == 0, resumed.stderr
    assert (out / "result.json").exists()


def test_a_dense_cache_entry_that_is_a_folder_is_one_line(cli, tiny_protocol, tmp_path):
    cache = tmp_path / "cache"
    args = ["run", "--protocol", str(tiny_protocol), "--cache-dir", str(cache), "-q", "--set", "finetune.epochs=0"]
    assert cli(*args, "--out", str(tmp_path / "a")).code == 0
    (entry,) = (cache / "dense").glob("*.pt")
    entry.unlink()
    entry.mkdir()
    result = cli(*args, "--out", str(tmp_path / "b"))
    assert result.code == 2
    lines = [line for line in result.stderr.splitlines() if not line.startswith("note:")]
    assert lines == [f"error: the dense-model cache entry {entry} is a folder, not a cached model: remove it, "
                     "or use another cache (--cache-dir DIR)"]
    assert not (tmp_path / "b").exists()
