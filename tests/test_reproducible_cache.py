"""The dense cache holds only the model a run would have trained itself: keyed by what changes the
bits; the record's checkpoint_sha256 is the hash of what the run loaded, when it loaded it; a
cached file that does not fit the model is retrained; a resume on other threads, another device
or other code is refused with one line naming which."""

import dataclasses
import hashlib
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers import TINY_PROTOCOL, run_args

from stxbench.run.checkpoints import load_state, save_state
from stxbench.record.code_identity import code_identity
from stxbench.run.processes import Execution
from stxbench.host.plugin_host import PluginHost
from stxbench.record.schema import load_record
from stxbench.run.resolve import resolve
from stxbench.record.run_identity import CodeIdentity, RunIdentity
from stxbench.run.context import Run, dense_cache_path
from stxbench.run.config import RunOptions
from stxbench.run.training import NullReporter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import bad_plugins  # noqa: E402


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def dense_files(cache):
    return sorted((cache / "dense").glob("*.pt"))


# two threads beside the other test process oversubscribe 2 cores (3 min in a loaded full run);
# the key itself is held by test_the_dense_key_holds_threads_device_precision_compile_and_stage_one_code
@pytest.mark.e2e
def test_a_run_on_other_threads_trains_its_own_dense_model(tiny_protocol, tmp_path, cli):
    cache = tmp_path / "cache"
    one = cli(*run_args(tiny_protocol, tmp_path / "one", cache))
    two = cli(*run_args(tiny_protocol, tmp_path / "two", cache, threads="2"))
    assert one.code == 0 and two.code == 0, one.stderr + two.stderr
    a, b = load_record(tmp_path / "one" / "result.json"), load_record(tmp_path / "two" / "result.json")
    assert b.timing.dense_s is not None  # trained, not taken from the --threads 1 run's cache
    assert len(dense_files(cache)) == 2
    assert {a.provenance.checkpoint_sha256, b.provenance.checkpoint_sha256} == {sha256(f) for f in dense_files(cache)}
    assert cli(*run_args(tiny_protocol, tmp_path / "again", cache)).code == 0  # --threads 1 again: a cache hit
    c = load_record(tmp_path / "again" / "result.json")
    assert c.timing.dense_s is None and c.provenance.checkpoint_sha256 == a.provenance.checkpoint_sha256
    assert c.metrics == a.metrics


def _run(protocol, tmp_path, **changes):
    host = PluginHost(())
    options = {"device": "cpu", "cache_dir": tmp_path / "cache", **changes.pop("options", {})}
    config = resolve(host, protocol=str(protocol), neuron=changes.pop("neuron", "lif"),
                     pruner=changes.pop("pruner", "none"), backend="torch", seed=None, settings=[],
                     out_dir=tmp_path / "out", options=RunOptions(**options))
    device, backend = torch.device("cpu"), host.backend("torch")
    identity = RunIdentity.of_process(config, host, device, Execution(precision=config.precision), backend)
    numerics = changes.pop("numerics", {})
    if numerics:
        identity = dataclasses.replace(identity, numerics=dataclasses.replace(identity.numerics, **numerics))
    return Run(config, host, device, None, backend, config.surrogate, NullReporter(),
               warn=print, identity=identity, **changes)


def test_the_dense_key_holds_threads_device_precision_compile_and_stage_one_code(tiny_protocol, tmp_path):
    base = _run(tiny_protocol, tmp_path)
    numerics = {"device": "cpu: X", "threads": 1, "world_size": 1}
    key = dense_cache_path(_run(tiny_protocol, tmp_path, numerics=numerics))
    for change in ({"threads": 2}, {"device": "cpu: Y"}, {"world_size": 2}):
        assert dense_cache_path(_run(tiny_protocol, tmp_path, numerics={**numerics, **change})) != key
    bf16 = _run(tiny_protocol, tmp_path, options={"precision": "bf16"}, numerics=numerics)
    assert dense_cache_path(bf16) != key
    # compiled neurons may train other bits than eager ones (spikingjelly's sLIF/LIF through
    # inductor): an eager run never loads a compiled run's dense model, nor the reverse
    eager, compiled = (_run(tiny_protocol, tmp_path, options={"compile": c}) for c in (False, True))
    assert dense_cache_path(eager) != dense_cache_path(compiled)
    # the fine-tuning neuron and the pruner are not stage 1: their runs share the dense model
    assert dense_cache_path(_run(tiny_protocol, tmp_path, neuron="plif", pruner="l1p")) == dense_cache_path(base)


def test_the_code_hash_follows_the_code_of_a_plugin_not_its_comments(tmp_path, monkeypatch):
    folder = tmp_path / "plugins"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    bad_plugins.write(folder, "bi_half")
    sys.modules.pop("bi_half", None)
    host = PluginHost(("bi_half",))
    module = host.get("backend", "bi-half").module

    def digest(modules):
        return CodeIdentity(tuple(sorted(code_identity(modules).items())), frozenset(), ()).sha256()

    before = digest([module])
    source = (folder / "bi_half.py").read_text()
    (folder / "bi_half.py").write_text(source + "\n# edited\n")
    assert digest([module]) == before  # a comment computes nothing
    (folder / "bi_half.py").write_text(source + "\nEDITED = 1\n")
    assert digest([module]) != before
    assert digest([]) != digest([module])


OVERWRITER = """
import os
from pathlib import Path
import torch
from stxbench.api import hookimpl

@hookimpl
def stxbench_epoch_end(stage, epoch, metrics):
    # while the run fine-tunes, another process puts another dense model in the cache
    if stage == "finetune":
        for path in Path(os.environ["STX_TEST_CACHE"]).glob("dense/*.pt"):
            from stxbench.run.checkpoints import save_state
            save_state(path, {"other": torch.zeros(1)})
"""


def test_checkpoint_sha256_is_the_model_the_run_loaded_taken_when_it_loaded_it(
        tiny_protocol, tmp_path, cli, monkeypatch):
    cache = tmp_path / "cache"
    first = cli(*run_args(tiny_protocol, tmp_path / "first", cache))
    assert first.code == 0
    (entry,) = dense_files(cache)
    loaded = sha256(entry)
    (tmp_path / "stx_overwriter.py").write_text(textwrap.dedent(OVERWRITER))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("STX_TEST_CACHE", str(cache))
    second = cli("-p", "stx_overwriter", *run_args(tiny_protocol, tmp_path / "second", cache))
    assert second.code == 0, second.stderr
    assert sha256(entry) != loaded  # the file changed under the run
    record = load_record(tmp_path / "second" / "result.json")
    assert record.timing.dense_s is None and record.provenance.checkpoint_sha256 == loaded


@pytest.mark.parametrize("edit, problem", [
    (lambda state: state.pop("head.bias"), "it lacks the model's head.bias"),
    (lambda state: state.update(extra=torch.zeros(1)), "it holds extra, which the model does not have"),
    (lambda state: state.update({"head.bias": torch.zeros(3)}), "its head.bias is (3,) torch.float32, the "
                                                                "model's is (10,) torch.float32"),
])
def test_a_cached_dense_model_that_does_not_fit_is_retrained_with_a_warning(
        tiny_protocol, tmp_path, cli, edit, problem):
    cache = tmp_path / "cache"
    assert cli(*run_args(tiny_protocol, tmp_path / "first", cache)).code == 0
    reference = load_record(tmp_path / "first" / "result.json")
    (entry,) = dense_files(cache)
    state, _ = load_state(entry)
    edit(state)
    save_state(entry, state)  # hashes right, does not fit
    result = cli(*run_args(tiny_protocol, tmp_path / "second", cache))
    assert result.code == 0, result.stderr
    assert result.stderr == (f"warning: cached dense checkpoint {entry} does not fit the model ({problem}); "
                             "retraining it\n")
    record = load_record(tmp_path / "second" / "result.json")
    assert record.timing.dense_s is not None
    # nothing of the misfit was loaded: the retrained model is the one the first run trained
    assert record.metrics == reference.metrics
    assert record.provenance.checkpoint_sha256 == reference.provenance.checkpoint_sha256 == sha256(entry)


@pytest.fixture
def interrupted(tmp_path, monkeypatch, cli):
    """A tiny run on one thread, stopped after dense epoch 1 with its checkpoint kept."""
    protocol = tmp_path / "tiny.toml"
    protocol.write_text(TINY_PROTOCOL.format(dense_epochs=2))
    folder = tmp_path / "plugins"
    folder.mkdir()
    bad_plugins.write(folder, "bi_stopper")
    monkeypatch.syspath_prepend(str(folder))
    out, cache = tmp_path / "out", tmp_path / "cache"
    assert cli("-p", "bi_stopper", *run_args(protocol, out, cache)).code == 130
    return protocol, out, cache


def test_a_resume_on_other_threads_is_refused_naming_them(interrupted, cli):
    protocol, out, cache = interrupted
    result = cli(*run_args(protocol, out, cache, threads="2"))
    assert result.code == 2
    assert result.stderr == (f"error: {out / 'checkpoint.pt'} was written by a run with 1 thread(s), this run "
                             "has 2: resume with --threads 1 (other threads give other numbers), or choose "
                             "another --out\n")
    assert cli(*run_args(protocol, out, cache)).code == 0  # the same threads resume it


@pytest.mark.parametrize("key, value, says", [
    ("device", "cuda: NVIDIA H100 (CUDA 12.4)", "was written on cuda: NVIDIA H100 (CUDA 12.4), this run is on cpu: "),
    ("code", "0" * 64, "was written by other code (stxbench or plugin files changed since)"),
    ("world_size", 2, "was written by 2 process(es), this run has 1: resume with the same --nproc"),
    ("compile", True, "was written by a run with compiled neurons, this run's are eager: resume with --compile"),
])
def test_a_resume_on_another_device_or_code_is_refused_naming_it(interrupted, cli, key, value, says):
    protocol, out, cache = interrupted
    path = out / "checkpoint.pt"
    state, _ = load_state(path)
    state["execution"][key] = value
    save_state(path, state)
    result = cli(*run_args(protocol, out, cache))
    assert result.code == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: {path} {says}"), result.stderr
