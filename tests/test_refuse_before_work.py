"""Refuse before work: numbers bounded and of their type, folders writable, dataset options
checked by the dataset, each refusal one line saying what is valid (the battery in
benchmarks/bad_input.py tries each class through the CLI; these pin the messages and rules)."""

import os

import helpers
import pytest

from stxbench.api import DataSplits, Dataset
from stxbench.run.errors import UsageError
from stxbench.run.paths import check_writable_dir, path_text
from stxbench.run.protocol import MAX_SEED, builtin_protocols, load_protocol
from stxbench.run.config import default_cache_dir, usable_cpus


def run_args(protocol, tmp_path, *extra):
    """A run into ``tmp_path/out`` with its cache in ``tmp_path/cache``, on torch's threads (the
    refusals of --threads are tested here)."""
    return helpers.run_args(protocol, tmp_path / "out", tmp_path / "cache", *extra, threads=None)


@pytest.mark.parametrize("args, message", [
    (["--seed", str(2**70)], f"error: --seed must be in 0..{MAX_SEED} (2**32 - 1, what every random generator of "
                              f"a run takes), got {2**70}"),
    (["--threads", "10000"], f"error: --threads must be in 1..{usable_cpus()} (the CPUs this process may use), "
                             "got 10000"),
    (["--set", "model.T=1000000000000"], "model.T: Input should be less than or equal to 1024, got 1000000000000"),
    (["--set", "model.T=true"], "model.T: Input should be a valid integer, got true"),
    (["--set", "train.warmup_epochs=inf"], "train.warmup_epochs: Input should be a finite number, got inf"),
    (["--set", "train.min_lr=1.0"], "train: min_lr 1 is above lr 0.005; the schedule decays from lr down to "
                                    "min_lr, so min_lr must be <= lr"),
    (["--set", "data.options.train_samples=5"], "error: dataset 'digits' has no option(s) train_samples; valid: none"),
    (["--set", "model.options.mlp_ratio=nan"], "model.options: option mlp_ratio = nan is not a finite number"),
    (["--pruner", "dsp", "--set", "keep=true"], "error: pruner 'dsp': keep=true: a number or name belongs here, "
                                                "not true/false"),
    (["--pruner", "l1p", "--set", "sparsity=inf"], "error: pruner 'l1p': sparsity=inf: Input should be a finite "
                                                   "number"),
])
def test_numbers_are_refused_saying_what_is_valid(tiny_protocol, tmp_path, cli, args, message):
    result = cli(*run_args(tiny_protocol, tmp_path), *args)
    assert result.code == 2 and result.stderr.count("\n") == 1
    assert message in result.stderr, result.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_seeds_given_twice_are_refused(tiny_protocol, tmp_path, cli):
    result = cli("sweep", "--protocol", str(tiny_protocol), "--seeds", "1,01", "--out", str(tmp_path / "s"))
    assert result.code == 2
    assert result.stderr == "error: --seeds 1,01: seed 1 is given twice (each seed is one run)\n"
    twice = tmp_path / "twice.toml"
    twice.write_text(tiny_protocol.read_text().replace("seeds = [0, 1]", "seeds = [1, 0, 1]"))
    result = cli(*run_args(twice, tmp_path))
    assert result.code == 2 and "seeds: seed 1 is listed twice; each seed is one run" in result.stderr


def test_every_builtin_protocol_is_within_the_bounds():
    for name in builtin_protocols():
        load_protocol(name)


@pytest.mark.parametrize("name", ["../x", "a/b", ".hidden", "-dash", "a b", "", "x" * 101])
def test_a_protocol_name_names_files_safely(tiny_protocol, tmp_path, cli, name):
    bad = tmp_path / "bad.toml"
    bad.write_text(tiny_protocol.read_text().replace('name = "tiny"', f'name = "{name}"'))
    result = cli(*run_args(bad, tmp_path))
    assert result.code == 2
    assert f"protocol bad.toml (line 2): name: {name!r} is not a valid name: letters, digits, '.', '_' and " \
           "'-' only (it names files)" in result.stderr


def test_a_protocol_file_that_is_not_utf8_is_one_line(tiny_protocol, tmp_path, cli):
    bad = tmp_path / "bad.toml"
    text = tiny_protocol.read_bytes()
    bad.write_bytes(text.replace(b"for tests", b"f\xfcr tests"))
    result = cli(*run_args(bad, tmp_path))
    assert result.code == 2
    offset = text.index(b"for tests") + 1
    assert result.stderr == f"error: protocol {bad}: not UTF-8 (byte 0xfc at offset {offset}); TOML files are UTF-8\n"


def test_the_default_cache_folder_needs_an_absolute_home(monkeypatch, tmp_path):
    monkeypatch.delenv("STXBENCH_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # not absolute: ignored, as XDG says
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / ".cache" / "stxbench"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "stxbench"
    monkeypatch.delenv("XDG_CACHE_HOME")
    for home in ("", "home"):
        monkeypatch.setenv("HOME", home)
        with pytest.raises(UsageError, match=f"HOME is {home!r}, not an absolute path, so there is no default "
                                             "cache folder; set STXBENCH_CACHE or pass --cache-dir"):
            default_cache_dir()


def test_folder_checks_name_what_is_wrong(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    for path, says in [(tmp_path / "file", "is a file, not a folder"),
                       (tmp_path / "file" / "sub", f"cannot be created: {tmp_path / 'file'} is a file, not a folder"),
                       (tmp_path / "link", "is a broken symbolic link"),
                       (__import__("pathlib").Path("/dev/null"), "is a device, not a folder")]:
        with pytest.raises(UsageError, match=f"^--out {path} {says}"):
            check_writable_dir("--out", path)
    check_writable_dir("--out", tmp_path / "new" / "deeper")  # creatable: fine, and not created
    assert not (tmp_path / "new").exists()
    for text in ("", "  ", "a\nb", "a\tb"):
        with pytest.raises(UsageError):
            path_text("--out", text)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused(tiny_protocol, tmp_path, cli):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        result = cli("run", "--protocol", str(tiny_protocol), "--out", str(locked / "out"), "-q",
                     "--cache-dir", str(tmp_path / "cache"))
        assert result.code == 2 and "cannot be created: " in result.stderr and "not writable" in result.stderr
    finally:
        locked.chmod(0o755)


class Sized(Dataset):
    name = "sized"
    summary = "takes one keyword option"

    def load(self, root, size: int = 8) -> DataSplits:
        raise AssertionError("not loaded by a check")


class Open(Dataset):
    name = "open"
    summary = "takes any option and checks them in load"

    def load(self, root, **options) -> DataSplits:
        raise AssertionError("not loaded by a check")


def test_a_dataset_validates_its_options_from_its_declaration_or_its_load_signature():
    Sized().validate_options({"size": 4})
    with pytest.raises(UsageError, match="dataset 'sized' has no option.s. colour; valid: size"):
        Sized().validate_options({"colour": 1})
    Open().validate_options({"anything": 1})  # left to load
