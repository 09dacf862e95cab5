"""Every kind of bad input a user can give, through the CLI, and whether each is refused cleanly.

Clean means: the expected exit code (2 for input refused before any work, 1 for a run that
fails during work, such as a plugin breaking the neuron contract), exactly one line on stderr
starting with ``error:`` or ``refused``, no traceback, and nothing written (no run folder, no
result, no checkpoint, no cache, no leaderboard file).

    python benchmarks/bad_input.py          # prints a table and "N tried, N refused cleanly"
    python benchmarks/bad_input.py -k paths # the cases of one class (or whose name holds the text)

The cases are grouped by class (`CLASSES`; docs/reliability.md lists them). tests/test_bad_input.py
runs the same list, so the figure in the README cannot go stale. The plugins the containment
cases load with ``-p`` are in bad_plugins.py.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import shutil
import sys
import tempfile
import traceback
from collections.abc import Callable
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bad_plugins  # noqa: E402

TINY = """
name = "tiny"
seeds = [0]
[data]
dataset = "digits"
[model]
name = "spikformer-1-16"
T = 2
[model.options]
pools = 2
[train]
epochs = 1
batch_size = 128
lr = 1e-2
[finetune]
epochs = 0
batch_size = 128
lr = 1e-3
"""


@dataclass
class Case:
    name: str
    args: list[str]
    #: writes the files the case needs into the scratch folder (they do not count as "written")
    setup: Callable[[Path], None] | None = None
    expect_code: int = 2
    #: environment variables set for the case (None: unset)
    env: dict[str, str | None] = field(default_factory=dict)
    #: which class of bad input the case belongs to (see `CLASSES`)
    group: str = "names and values"
    #: a branch that must be merged before the case is refused cleanly (None: refused now)
    pending: str | None = None


def _tiny(root: Path, text: str = TINY, name: str = "tiny.toml") -> None:
    (root / name).write_text(text)


def _tiny_with(old: str, new: str) -> Callable[[Path], None]:
    assert old in TINY, old
    return lambda root: _tiny(root, TINY.replace(old, new))


def _record(root: Path, edit: Callable[[dict], None]) -> None:
    """A real record of a tiny run, edited. Produced once per scratch folder."""
    source = root / "_base" / "result.json"
    if not source.exists():
        _tiny(root)
        code, _, err = invoke(["run", "--protocol", str(root / "tiny.toml"), "--out", str(root / "_base"),
                               "--cache-dir", str(root / "_cache"), "-q", "--threads", "1"])
        assert code == 0, err
    data = json.loads(source.read_text())
    edit(data)
    (root / "edited.json").write_text(json.dumps(data))


def _set(path: str, value):
    def edit(data: dict) -> None:
        node = data
        *parents, leaf = path.split(".")
        for key in parents:
            node = node[key]
        node[leaf] = value
    return edit


def _raw_file(name: str, data: bytes) -> Callable[[Path], None]:
    return lambda root: (root / name).write_bytes(data)


def _deep_json(root: Path) -> None:
    (root / "deep.json").write_text("[" * 200_000 + "]" * 200_000)


def _file(root: Path, name: str = "afile") -> None:
    (root / name).write_text("not a folder\n")


def _tiny_and_file(root: Path) -> None:
    _tiny(root)
    _file(root)


def _read_only_out() -> str:
    """A folder nobody can create, whoever runs this: inside /proc/sys (read-only even for
    root); elsewhere a folder without write permission (which root ignores)."""
    if os.path.isdir("/proc/sys") and not os.access("/proc/sys", os.W_OK):
        return "/proc/sys/stxbench-out"
    return "ro/out"


def _read_only_setup(root: Path) -> None:
    _tiny(root)
    if _read_only_out() == "ro/out":
        (root / "ro").mkdir(exist_ok=True)
        (root / "ro").chmod(0o555)


_held: list[int] = []


def _locked(folder: str) -> Callable[[Path], None]:
    """``folder`` locked as a run in progress holds it (another open file description's flock)."""

    def setup(root: Path) -> None:
        _tiny(root)
        (root / folder).mkdir(parents=True, exist_ok=True)
        fd = os.open(root / folder / "run.lock", os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, b"12345\n")
        _held.append(fd)

    return setup


def _release_held() -> None:
    while _held:
        os.close(_held.pop())


TWO_EPOCHS = TINY.replace("epochs = 1\n", "epochs = 2\n")


def _checkpoint(edit: Callable[[dict], None] | None = None) -> Callable[[Path], None]:
    """``ckpt``: the run checkpoint of a tiny run stopped after dense epoch 1 (made once per
    scratch folder, by an observer that interrupts the run), optionally edited."""

    def setup(root: Path) -> None:
        _tiny(root, TWO_EPOCHS, "tiny2.toml")
        source = root / "_ckpt"
        if not source.exists():
            bad_plugins.write(root, "bi_stopper")
            code, _, err = invoke(["-p", "bi_stopper", "run", "--protocol", "tiny2.toml", "--out", str(source),
                                   "--cache-dir", str(root / "_cache2"), "-q", "--threads", "1"])
            assert code == 130 and (source / "checkpoint.pt").exists(), err
        shutil.copytree(source, root / "ckpt", dirs_exist_ok=True)
        if edit is not None:
            import torch

            from stxbench.run.checkpoints import save_state

            state = torch.load(root / "ckpt" / "checkpoint.pt", weights_only=True)
            edit(state)
            save_state(root / "ckpt" / "checkpoint.pt", state)

    return setup


def _plugin(name: str) -> Callable[[Path], None]:
    return lambda root: (_tiny(root), bad_plugins.write(root, name))


def run_args(out: str = "out", cache: str | None = "cache", protocol: str = "tiny.toml") -> list[str]:
    return ["run", "--out", out, *(["--cache-dir", cache] if cache is not None else []), "--protocol", protocol]


RUN = run_args()
CKPT = ["run", "--out", "ckpt", "--cache-dir", "cache", "--protocol", "tiny2.toml", "-q"]
NO_CACHE_ENV = {"STXBENCH_CACHE": None, "XDG_CACHE_HOME": None}

CASES: list[Case] = [
    # -- names and values (the first battery) --------------------------------------------------
    Case("unknown neuron", RUN + ["--neuron", "lfi"], _tiny),
    Case("unknown pruner", RUN + ["--pruner", "l2p"], _tiny),
    Case("unknown backend", RUN + ["--backend", "jax"], _tiny),
    Case("unknown protocol", ["run", "--protocol", "digit", "--out", "out"]),
    Case("protocol file that does not exist", ["run", "--protocol", "nowhere.toml", "--out", "out"]),
    Case("unknown dataset in a protocol", RUN, _tiny_with('"digits"', '"digitz"')),
    Case("unknown model in a protocol", RUN, _tiny_with("spikformer-1-16", "vit-1-16")),
    Case("malformed protocol TOML", RUN, _tiny_with("T = 2", "T = = 2")),
    Case("unknown key in a protocol", RUN, _tiny_with("T = 2", "T = 2\nsteps = 4")),
    Case("T <= 0", RUN + ["--set", "model.T=0"], _tiny),
    Case("epochs < 0", RUN + ["--set", "train.epochs=-1"], _tiny),
    Case("a non-number where a number is needed", RUN + ["--set", "train.lr=fast"], _tiny),
    Case("unknown protocol key", RUN + ["--set", "train.epoch=3"], _tiny),
    Case("a --set key the pruner does not have", RUN + ["--set", "sparsity=0.5"], _tiny),
    Case("a --set without '='", RUN + ["--set", "sparsity"], _tiny),
    Case("L1P sparsity outside [0, 1)", RUN + ["--pruner", "l1p", "--set", "sparsity=1.0"], _tiny),
    Case("DSP keep outside (0, 1]", RUN + ["--pruner", "dsp", "--set", "keep=0"], _tiny),
    Case("DSP unknown method", RUN + ["--pruner", "dsp", "--set", "method=qr"], _tiny),
    Case("L1P unknown scope", RUN + ["--pruner", "l1p", "--set", "scope=row"], _tiny),
    Case("negative seed", RUN + ["--seed", "-1"], _tiny),
    Case("zero threads", RUN + ["--threads", "0"], _tiny),
    Case("unknown device", RUN + ["--device", "tpu"], _tiny),
    Case("unknown option", RUN + ["--nueron", "lif"], _tiny),
    Case("a surrogate the backend lacks", RUN + ["--backend", "norse", "--set", 'model.surrogate="atan"'], _tiny),
    Case("CIFAR-10 folder without its files", ["run", "--protocol", "cifar10-spikformer-4-384",
                                               "--data-root", "data", "--out", "out"],
         lambda r: (r / "data").mkdir(exist_ok=True)),
    Case("Fashion-MNIST folder with a missing file", ["run", "--protocol", "fashion-mnist",
                                                      "--data-root", "data", "--out", "out"],
         lambda r: ((r / "data").mkdir(exist_ok=True), (r / "data" / "train-images-idx3-ubyte").write_bytes(b""))),
    Case("DVS folder that does not exist", ["run", "--protocol", "cifar10dvs-spikformer-2-256",
                                            "--data-root", "nowhere", "--out", "out"]),
    Case("--nproc below 2", RUN + ["--nproc", "0"], _tiny),
    Case("--resume without a checkpoint", RUN + ["--resume"], _tiny),
    Case("sweep: unknown neuron", ["sweep", "--neuron", "lif,lfi", "--out", "out"]),
    Case("sweep: seeds that are not integers", ["sweep", "--seeds", "0,x", "--out", "out"]),
    Case("sweep: --jobs 0", ["sweep", "--executor", "local", "--jobs", "0", "--out", "out"]),
    Case("sweep: --jobs without --executor local", ["sweep", "--jobs", "2", "--out", "out"]),
    Case("sweep: a SLURM option without --executor slurm", ["sweep", "--partition", "gpu", "--out", "out"]),
    Case("sweep: SLURM profile with unknown keys and bad values",
         ["sweep", "--executor", "slurm", "--slurm-profile", "slurm.toml", "--out", "out"],
         lambda r: (r / "slurm.toml").write_text('partion = "gpu"\ntime = "4h"\nmax_running = 0\n')),
    Case("sweep: SLURM time limit that is not one", ["sweep", "--executor", "slurm", "--time", "soon", "--out", "out"]),
    Case("sweep status: folder without a sweep", ["sweep", "status", "nowhere"]),
    Case("-p module that does not exist", ["-p", "no_such_plugin", "list"]),
    Case("list of an unknown kind", ["list", "widgets"]),
    Case("energy: file that does not exist", ["energy", "missing.json"]),
    Case("energy: file that is not JSON", ["energy", "bad.json"], lambda r: (r / "bad.json").write_text("{oops")),
    Case("energy: JSON that fails the schema", ["energy", "edited.json"],
         lambda r: _record(r, _set("metrics.accuracy", 1.5))),
    Case("energy: unknown cost model", ["energy", "edited.json", "--model", "fp8"],
         lambda r: _record(r, lambda d: None)),
    Case("compare: file that is not JSON", ["compare", "bad.json", "bad.json"],
         lambda r: (r / "bad.json").write_text("[1, 2")),
    Case("parity: unknown backend", ["parity", "--backend", "jax"]),
    Case("leaderboard submit: unofficial run", ["leaderboard", "submit", "edited.json", "--root", "lb",
                                                "--protocol-dir", "."],
         lambda r: _record(r, _set("protocol.official", False))),
    Case("leaderboard submit: wrong protocol hash", ["leaderboard", "submit", "edited.json", "--root", "lb",
                                                     "--protocol-dir", "."],
         lambda r: _record(r, _set("protocol.sha256", "0" * 64))),
    Case("leaderboard submit: not JSON", ["leaderboard", "submit", "bad.json", "--root", "lb"],
         lambda r: (r / "bad.json").write_text("nope")),
]

NUMBERS = [
    Case("--seed 2**63-1 (beyond the generators)", RUN + ["--seed", str(2**63 - 1)], _tiny),
    Case("--seed 2**70", RUN + ["--seed", str(2**70)], _tiny),
    Case("sweep --seeds with 2**70", ["sweep", "--protocol", "tiny.toml", "--seeds", f"0,{2**70}",
                                      "--out", "out", "--cache-dir", "cache"], _tiny),
    Case("sweep --seeds 0,00 (the same seed twice)", ["sweep", "--protocol", "tiny.toml", "--seeds", "0,00",
                                                      "--out", "out", "--cache-dir", "cache"], _tiny),
    Case("protocol seeds beyond the generators", RUN, _tiny_with("seeds = [0]", f"seeds = [{2**63 - 1}]")),
    Case("protocol seeds repeated", RUN, _tiny_with("seeds = [0]", "seeds = [0, 0]")),
    Case("protocol warmup_epochs = inf", RUN, _tiny_with("epochs = 1\n", "epochs = 1\nwarmup_epochs = inf\n")),
    Case("protocol lr = nan", RUN, _tiny_with("lr = 1e-2", "lr = nan")),
    Case("protocol T = 10**12", RUN + ["--set", "model.T=1000000000000"], _tiny),
    Case("protocol T = true (not read as 1)", RUN, _tiny_with("T = 2", "T = true")),
    Case("protocol epochs = 2.5 (not read as 2)", RUN + ["--set", "train.epochs=2.5"], _tiny),
    Case("protocol batch size beyond any memory", RUN + ["--set", "train.batch_size=100000000"], _tiny),
    Case("protocol count_samples absurd", RUN + ["--set", "eval.count_samples=10000000000"], _tiny),
    Case("protocol min_lr above lr", RUN + ["--set", "train.min_lr=1.0"], _tiny),
    Case("protocol cpu_cheap = 1 (not read as true)", RUN, _tiny_with('name = "tiny"', 'name = "tiny"\ncpu_cheap = 1')),
    Case("model option inf", RUN + ["--set", "model.options.mlp_ratio=inf"], _tiny),
    Case("model option that is a table", RUN, _tiny_with("pools = 2", "pools = 2\nheads = {n = 1}")),
    Case("model size beyond bounds", RUN + ["--set", 'model.name="spikformer-100000-16"'], _tiny),
    Case("model option true where a number goes", RUN + ["--set", "model.options.pools=true"], _tiny),
    Case("a dataset option digits does not take", RUN + ["--set", "data.options.train_samples=100"], _tiny),
    Case("a dataset option of the wrong type (CIFAR crop_padding = true)",
         ["run", "--protocol", "cifar10-spikformer-4-384", "--set", "data.options.crop_padding=true",
          "--data-root", "data", "--out", "out"], lambda r: (r / "data").mkdir(exist_ok=True)),
    Case("pruner parameter nan", RUN + ["--pruner", "l1p", "--set", "sparsity=nan"], _tiny),
    Case("pruner parameter true (not read as 1.0)", RUN + ["--pruner", "dsp", "--set", "keep=true"], _tiny),
    Case("--threads 10000", RUN + ["--threads", "10000"], _tiny),
    Case("--workers 10000", RUN + ["--workers", "10000"], _tiny),
    Case("--nproc beyond the CPUs", RUN + ["--nproc", "128", "--device", "cpu"], _tiny),  # 128 divides the batch
    Case("--device cuda:99", RUN + ["--device", "cuda:99"], _tiny),
    Case("sweep --jobs beyond the CPUs", ["sweep", "--protocol", "tiny.toml", "--executor", "local", "--jobs", "100000",
                                          "--out", "out", "--cache-dir", "cache"], _tiny),
    Case("leaderboard check --jobs beyond the CPUs", ["leaderboard", "check", "--root", "_lb", "--jobs", "100000"],
         lambda r: (r / "_lb").mkdir(exist_ok=True)),
    Case("leaderboard check --threads beyond the CPUs", ["leaderboard", "check", "--root", "_lb", "--threads",
                                                         "100000"], lambda r: (r / "_lb").mkdir(exist_ok=True)),
]

MNIST_TINY = TINY.replace('dataset = "digits"', 'dataset = "mnist"')
MNIST_RUN = run_args(protocol="mnist.toml") + ["--data-root", "_data"]


def _idx(dims: tuple[int, ...], data: bytes) -> bytes:
    import struct

    return struct.pack(">HBB", 0, 8, len(dims)) + struct.pack(f">{len(dims)}I", *dims) + data


def _mnist(images: tuple[int, int] = (28, 28), labels: int = 10,
           replace: dict[str, bytes] | None = None) -> Callable[[Path], None]:
    """``_data``: a tiny MNIST folder (20 training, 10 test images), its files replaced by
    ``replace`` (name -> bytes; a name ending .gz replaces the plain file)."""

    def setup(root: Path) -> None:
        _tiny(root, MNIST_TINY, "mnist.toml")
        data = root / "_data"
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir()
        for split, n in (("train", 20), ("t10k", 10)):
            (data / f"{split}-images-idx3-ubyte").write_bytes(_idx((n, *images), bytes(n * images[0] * images[1])))
            (data / f"{split}-labels-idx1-ubyte").write_bytes(_idx((n,), bytes(i % labels for i in range(n))))
        for name, raw in (replace or {}).items():
            (data / name.removesuffix(".gz")).unlink()
            (data / name).write_bytes(raw)

    return setup


def _inflating_gzip() -> bytes:
    """A gzip whose header promises 20 images of 28x28 (15,680 bytes), inflating to 64 MB."""
    import gzip
    import io

    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb") as fh:
        fh.write(_idx((20, 28, 28), b""))
        for _ in range(64):
            fh.write(bytes(1 << 20))
    return buffer.getvalue()


def _dvs_with_a_corrupt_file(root: Path) -> None:
    import numpy as np

    events = root / "_dvs" / "events_np"
    for name in ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"):
        (events / name).mkdir(parents=True, exist_ok=True)
        for i in range(2):
            np.savez(events / name / f"{i}.npz", t=np.arange(5), x=np.arange(5), y=np.arange(5), p=np.arange(5) % 2)
    (events / "cat" / "1.npz").write_bytes(b"PK\x03\x04 not really a zip archive")


def _dense_entry_is_a_folder(root: Path) -> None:
    """``_cache_dir_entry``: a cache whose dense model of the tiny run is a folder."""
    _tiny(root)
    cache = root / "_cache_dir_entry"
    if not cache.exists():
        code, _, err = invoke(["run", "--protocol", "tiny.toml", "--out", str(root / "_dirrun"), "--cache-dir",
                               str(cache), "-q", "--threads", "1"])
        assert code == 0, err
        (entry,) = (cache / "dense").glob("*.pt")
        entry.unlink()
        entry.mkdir()


DATA_FILES = [
    Case("IDX gzip inflating beyond its header", MNIST_RUN,
         _mnist(replace={"train-images-idx3-ubyte.gz": _inflating_gzip()})),
    Case("IDX file shorter than its header", MNIST_RUN,
         _mnist(replace={"t10k-labels-idx1-ubyte": _idx((10,), bytes(3))})),
    Case("IDX file that is not IDX", MNIST_RUN, _mnist(replace={"t10k-images-idx3-ubyte": b"GIF89a..."})),
    Case("32x32 images given as MNIST", MNIST_RUN, _mnist(images=(32, 32))),
    Case("MNIST labels outside 0..9", MNIST_RUN, _mnist(labels=12)),
    Case("IDX header promising more than the dataset has", MNIST_RUN,
         _mnist(replace={"train-images-idx3-ubyte": _idx((4_000_000_000, 28, 28), b"")})),
    Case("DVS folder with a corrupt .npz", ["run", "--protocol", "cifar10dvs-spikformer-2-256", "--data-root", "_dvs",
                                            "--out", "out", "--device", "cpu"], _dvs_with_a_corrupt_file),
    Case("run checkpoint that is not a torch archive", CKPT + ["--threads", "1"],
         lambda r: (_checkpoint()(r), (r / "ckpt" / "checkpoint.pt").write_bytes(b"garbage" * 100))),
    Case("dense-cache entry that is a folder", run_args(cache="_cache_dir_entry") + ["-q", "--threads", "1"],
         _dense_entry_is_a_folder),
]

PATHS = [
    Case("--out that is a file", run_args(out="afile"), _tiny_and_file),
    Case("--out /dev/null", run_args(out="/dev/null"), _tiny),
    Case("--out under a file", run_args(out="afile/run"), _tiny_and_file),
    Case("--out in a read-only place", run_args(out=_read_only_out()), _read_only_setup),
    Case("--out ''", run_args(out=""), _tiny),
    Case("--out with a newline", run_args(out="a\nb"), _tiny),
    Case("--out that is a broken symbolic link", run_args(out="dangling"),
         lambda r: (_tiny(r), (r / "dangling").symlink_to(r / "nowhere"))),
    Case("sweep --out that is a file", ["sweep", "--protocol", "tiny.toml", "--out", "afile",
                                        "--cache-dir", "cache"], _tiny_and_file),
    Case("--cache-dir that is a file", run_args(cache="afile"), _tiny_and_file),
    Case("--cache-dir ''", run_args(cache=""), _tiny),
    Case("STXBENCH_CACHE pointing at a file", run_args(cache=None), _tiny_and_file,
         env={"STXBENCH_CACHE": "afile"}),
    Case("HOME='' (no default cache folder)", run_args(cache=None), _tiny, env={"HOME": "", **NO_CACHE_ENV}),
    Case("STXBENCH_CACHE with a newline", run_args(cache=None), _tiny, env={"STXBENCH_CACHE": "a\nb"}),
    Case("--data-root that is a file", RUN + ["--data-root", "afile"], _tiny_and_file),
    Case("--data-root ''", RUN + ["--data-root", ""], _tiny),
    Case("protocol name with ../", RUN, _tiny_with('name = "tiny"', 'name = "../escape"')),
    Case("protocol name with a path separator", RUN, _tiny_with('name = "tiny"', 'name = "a/b"')),
    Case("protocol file that is not UTF-8", RUN,
         _raw_file("tiny.toml", TINY.replace('"tiny"', '"tiny\xe9"').encode("latin-1"))),
    Case("protocol file that is a folder", ["run", "--protocol", "p.toml", "--out", "out"],
         lambda r: (r / "p.toml").mkdir(exist_ok=True)),
    Case("leaderboard submit --root that is a file", ["leaderboard", "submit", "edited.json", "--root", "afile"],
         lambda r: (_record(r, lambda d: None), _file(r))),
    Case("leaderboard render --root that is a file", ["leaderboard", "render", "--root", "afile"], _file),
    Case("leaderboard check --root that is a file", ["leaderboard", "check", "--root", "afile"], _file),
    Case("energy: a record that is not UTF-8", ["energy", "bad.json"], _raw_file("bad.json", b'{"a": "\xff"}'),
         pending="lbtrust"),
    Case("compare: a record that is not UTF-8", ["compare", "bad.json", "bad.json"],
         _raw_file("bad.json", b'{"a": "\xff"}'), pending="lbtrust"),
    Case("leaderboard submit: a record that is not UTF-8", ["leaderboard", "submit", "bad.json", "--root", "lb"],
         _raw_file("bad.json", b'{"a": "\xff"}'), pending="lbtrust"),
    Case("energy: a record nested 200,000 deep", ["energy", "deep.json"], _deep_json, pending="lbtrust"),
    Case("compare: a record nested 200,000 deep", ["compare", "deep.json", "deep.json"], _deep_json,
         pending="lbtrust"),
    Case("leaderboard submit: a record nested 200,000 deep", ["leaderboard", "submit", "deep.json", "--root", "lb"],
         _deep_json, pending="lbtrust"),
]

CONCURRENCY = [
    Case("a second run into an --out in use", RUN, _locked("out")),
    Case("a sweep into runs in use", ["sweep", "--protocol", "tiny.toml", "--out", "out", "--cache-dir", "cache",
                                      "-q"], _locked("out/tiny/lif-none-torch-s0")),
    Case("--resume with other --threads than the checkpoint", CKPT + ["--threads", "2", "--resume"],
         _checkpoint()),
    Case("--resume on another device than the checkpoint", CKPT + ["--threads", "1"],
         _checkpoint(lambda s: s["execution"].update(device="cuda: NVIDIA H100 (CUDA 12.4)"))),
    Case("--resume with other code than the checkpoint", CKPT + ["--threads", "1"],
         _checkpoint(lambda s: s["execution"].update(code="0" * 64))),
    Case("--resume with the other --compile setting", CKPT + ["--threads", "1", "--compile"], _checkpoint()),
    Case("a checkpoint whose weights do not fit the model", CKPT + ["--threads", "1"],
         _checkpoint(lambda s: s["model"].popitem())),
]


def _broken_neurons(what: str, plugin: str) -> Case:
    """A run on the backend of ``plugin`` (``bi_nan`` registers ``bi-nan``), whose neurons break
    the neuron contract: it fails with one line naming the backend."""
    return Case(what, ["-p", plugin, *RUN, "--backend", plugin.replace("_", "-"), "-q"], _plugin(plugin), expect_code=1)


CONTAINMENT = [
    Case("-p module calling sys.exit() at import", ["-p", "bi_exit_import", "list"], _plugin("bi_exit_import")),
    Case("-p module raising KeyboardInterrupt at import", ["-p", "bi_kbd_import", "list"], _plugin("bi_kbd_import")),
    Case("-p module whose registration hook calls sys.exit()",
         ["-p", "bi_exit_hook", *RUN, "--backend", "bi-exit-hook"], _plugin("bi_exit_hook")),
    Case("-p module with a hook of the wrong signature", ["-p", "bi_bad_signature", "list"],
         _plugin("bi_bad_signature")),
    Case("backend whose check calls sys.exit() (before the run)",
         ["-p", "bi_exit_check", *RUN, "--backend", "bi-exit-check"], _plugin("bi_exit_check"), expect_code=1),
    _broken_neurons("backend whose neurons return NaN", "bi_nan"),
    _broken_neurons("backend whose neurons return inf", "bi_inf"),
    _broken_neurons("backend whose neurons return a wrong shape", "bi_shape"),
    _broken_neurons("backend whose neurons return a wrong dtype", "bi_dtype"),
    _broken_neurons("backend whose neurons return 0.5", "bi_half"),
    _broken_neurons("backend whose neurons return a tuple", "bi_tuple"),
    _broken_neurons("backend turning NaN only after some steps", "bi_late_nan"),
    # no dense epoch, so no checkpoint to keep; the dense model is cached (a valid cache entry,
    # kept where nothing looks)
    Case("pruner calling sys.exit() during a run",
         ["-p", "bi_exit_pruner", *run_args(cache="_cache_pruner"), "--pruner", "bi-exit", "-q",
          "--set", "train.epochs=0"],
         _plugin("bi_exit_pruner"), expect_code=1),
    Case("pruner raising a BaseException that is not an Exception",
         ["-p", "bi_base_pruner", *run_args(cache="_cache_pruner"), "--pruner", "bi-base", "-q",
          "--set", "train.epochs=0"], _plugin("bi_base_pruner"), expect_code=1),
]

#: class -> cases, in the order docs/reliability.md lists them
CLASSES: dict[str, list[Case]] = {
    "names and values": CASES,
    "numbers": NUMBERS,
    "paths": PATHS,
    "concurrency and reproducibility": CONCURRENCY,
    "containment": CONTAINMENT,
    "data files": DATA_FILES,
}
for _group, _cases in CLASSES.items():
    for _case in _cases:
        _case.group = _group
ALL: list[Case] = [case for cases in CLASSES.values() for case in cases]


def invoke(args: list[str]) -> tuple[int, str, str]:
    from stxbench.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main(args)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except Exception:  # a crash: what a user would see, as the Python interpreter shows it
            traceback.print_exc()
            code = 1
    return code, out.getvalue(), err.getvalue()


@contextmanager
def _cwd(path: Path):
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


@contextmanager
def _environment(env: dict[str, str | None]):
    old = {key: os.environ.get(key) for key in env}
    try:
        for key, value in env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if not any(part.startswith("_") for part in p.relative_to(root).parts)}


def _clear(scratch: Path) -> None:
    """Remove what the previous case left (files and folders not starting with ``_``)."""
    for path in scratch.iterdir():
        if path.name.startswith("_"):
            continue
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)
            shutil.rmtree(path)
        else:
            path.unlink()


def try_case(case: Case, scratch: Path) -> str | None:
    """None when the case was refused cleanly, else what went wrong."""
    with _cwd(scratch):
        _clear(scratch)
        try:
            if case.setup:
                case.setup(scratch)
            before = _files(scratch)
            with _environment(case.env):
                code, _, err = invoke(case.args)
            written = sorted(str(p.relative_to(scratch)) for p in _files(scratch) - before)
        finally:
            _release_held()
    # a run that fails during work (exit 1) may have said before it started that it would be
    # unofficial: a note, not part of the failure
    lines = [line for line in err.splitlines() if not (case.expect_code == 1 and line.startswith("note: "))]
    if code != case.expect_code:
        return f"exit code {code}: {err.strip()[:200]}"
    if "Traceback" in err:
        return "traceback"
    if written:
        return f"wrote {', '.join(written)}"
    if len(lines) != 1 or not lines[0].startswith(("error:", "refused")):
        return f"{len(lines)} stderr lines: {err.strip()[:200]}"
    return None


def run_all(scratch: Path, cases: list[Case] | None = None) -> list[tuple[Case, str | None]]:
    return [(case, try_case(case, scratch)) for case in (ALL if cases is None else cases)]


def main(argv: list[str] | None = None) -> int:
    import argparse

    from tabulate import tabulate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", metavar="TEXT", help="only the cases whose name or class contains TEXT")
    args = parser.parse_args(argv)
    cases = [c for c in ALL if not args.k or args.k in c.name or args.k in c.group]
    with tempfile.TemporaryDirectory() as tmp:
        results = run_all(Path(tmp), cases)
    rows = []
    for case, problem in results:
        outcome = "refused cleanly" if problem is None else f"NOT CLEAN: {problem}"
        if problem is not None and case.pending:
            outcome += f" (refused once {case.pending} is merged)"
        rows.append([case.group, case.name, outcome])
    print(tabulate(rows, headers=["class", "bad input", "outcome"]))
    clean = sum(problem is None for _, problem in results)
    pending = sum(problem is not None and case.pending is not None for case, problem in results)
    later = f" ({pending} more once their pending branch is merged)" if pending else ""
    print(f"\n{len(results)} tried, {clean} refused cleanly{later}")
    return 0 if clean + pending == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
