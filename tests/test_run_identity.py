"""One typed run identity (`stxbench.record.run_identity.RunIdentity`): built once per run, frozen, and
the one thing the dense cache key, the run checkpoints, a sweep's plan and the record's
provenance read."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from helpers import run_args

from stxbench.run.checkpoints import dense_checkpoint_path, load_run_checkpoint, save_run_checkpoint
from stxbench.run.errors import UsageError
from stxbench.run.processes import Execution
from stxbench.executors.plan import dense_path
from stxbench.host.plugin_host import PluginHost
from stxbench.record.provenance import cpu_kind, this_cpu
from stxbench.record.schema import load_record
from stxbench.record.run_identity import CodeIdentity, CpuNumericsState, RunIdentity
from stxbench.run.resolve import resolve
from stxbench.run.config import RunOptions


def _config(protocol, tmp_path, neuron="lif", pruner="none", **options):
    host = PluginHost(())
    config = resolve(host, protocol=str(protocol), neuron=neuron, pruner=pruner, backend="torch", seed=None,
                     settings=[], out_dir=tmp_path / "out",
                     options=RunOptions(device="cpu", cache_dir=tmp_path / "cache", **options))
    return config, host


def _identity(config, host, threads=None):
    if threads is not None:
        torch.set_num_threads(threads)
    return RunIdentity.of_process(config, host, torch.device("cpu"), Execution(precision=config.precision),
                                  host.backend(config.backend))


def _with_code(identity, **digests):
    """``identity`` with the digests of some packages replaced."""
    packages = tuple(sorted({**dict(identity.code.packages), **digests}.items()))
    return dataclasses.replace(identity, code=dataclasses.replace(identity.code, packages=packages))


def test_the_identity_is_frozen_through_and_through(tiny_protocol, tmp_path):
    identity = _identity(*_config(tiny_protocol, tmp_path))
    for obj, field in ((identity, "numerics"), (identity.numerics, "threads"), (identity.code, "packages"),
                       (identity.protocol, "sha256"), (identity.cpu_kind, "flags"), (identity.versions, "torch"),
                       (identity.numerics.cpu, "mkldnn"), (identity.execution, "world_size")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, field, None)
    assert isinstance(identity.code.packages, tuple) and isinstance(identity.code.stage_one, frozenset)
    hash(identity)  # immutable all the way down: hashable
    assert str(identity.cpu_kind) == cpu_kind() and identity.cpu_kind is this_cpu()


def test_a_run_builds_its_identity_once_and_its_record_is_written_from_it(tiny_protocol, tmp_path, cli,
                                                                         monkeypatch):
    built = []
    real = RunIdentity._build.__func__

    def counting(cls, *args, **kwargs):
        built.append(real(cls, *args, **kwargs))
        return built[-1]

    monkeypatch.setattr(RunIdentity, "_build", classmethod(counting))
    result = cli(*run_args(tiny_protocol, tmp_path / "out", tmp_path / "cache"))
    assert result.code == 0, result.stderr
    (identity,) = built  # once, though the cache key, the checkpoints and the record all read it
    p = load_record(tmp_path / "out" / "result.json").provenance
    assert p.code == identity.code.as_dict() and p.plugin_sha256 == dict(identity.code.files)
    assert p.threads == identity.numerics.threads == 1
    assert (p.stxbench, p.torch, p.python) == (identity.versions.stxbench, identity.versions.torch,
                                               identity.versions.python)
    cpu = identity.numerics.cpu
    assert p.cpu_numerics.cpu_kind == str(identity.cpu_kind)
    assert (p.cpu_numerics.aten_capability, p.cpu_numerics.mkldnn, p.cpu_numerics.ieee_sqrt) == (
        cpu.aten_capability, cpu.mkldnn, cpu.ieee_sqrt)
    assert p.execution.precision == identity.execution.precision
    # the dense model the run cached is where its identity's key says
    (cached,) = (tmp_path / "cache" / "dense").glob("*.pt")
    assert cached.name == f"tiny-{identity.dense_key()[:24]}.pt"


def test_the_dense_key_follows_threads_and_stage_one_code_and_nothing_else(tiny_protocol, tmp_path):
    config, host = _config(tiny_protocol, tmp_path)
    identity = _identity(config, host)
    key = identity.dense_key()
    n = identity.numerics
    assert dataclasses.replace(identity, numerics=dataclasses.replace(n, threads=n.threads + 1)).dense_key() != key
    assert _with_code(identity, stxbench="0" * 64).dense_key() != key  # the core's numbers path
    assert _with_code(identity, stxbench_neuron_lif="0" * 64).dense_key() != key  # the base neuron: stage 1
    assert _with_code(identity, stxbench_pruner_none="0" * 64).dense_key() == key  # the pruner: stage 3 only
    # neither the CPU numerics' record, the file hashes nor the execution's data loading decide it
    same = dataclasses.replace(
        identity, numerics=dataclasses.replace(n, cpu=dataclasses.replace(n.cpu, mkl_branch="elsewhere")),
        code=dataclasses.replace(identity.code, files=()), execution=dataclasses.replace(identity.execution, workers=3))
    assert same.dense_key() == key
    # another pruner and fine-tuning neuron run on the same dense model
    other, _ = _config(tiny_protocol, tmp_path, neuron="plif", pruner="l1p")
    assert _identity(other, host).dense_key() == key
    assert dense_checkpoint_path(config, identity).name == f"tiny-{key[:24]}.pt"


def test_a_sweep_plans_the_dense_model_its_run_will_cache(tiny_protocol, tmp_path):
    config, host = _config(tiny_protocol, tmp_path, threads=1)
    planned = RunIdentity.planned(config, host)
    assert planned.numerics.cpu is None  # the run's process, where the pin is set, is not started yet
    assert dense_path(config) == dense_checkpoint_path(config, _identity(config, host, threads=1))
    two, _ = _config(tiny_protocol, tmp_path, threads=2)
    assert dense_path(two) != dense_path(config)


def test_a_resume_reads_the_identity_the_checkpoint_was_written_with(tiny_protocol, tmp_path):
    config, host = _config(tiny_protocol, tmp_path)
    identity = _identity(config, host, threads=1)
    model = torch.nn.Linear(2, 2)
    save_run_checkpoint(config, identity, "dense", model, {"epoch": 1}, {})
    assert load_run_checkpoint(config, identity)["stage"] == "dense"
    # the file hashes and the CPU numerics' record are provenance, not a reason to refuse
    cpu = CpuNumericsState(None, "AVX2", "COMPATIBLE", False, True)
    assert load_run_checkpoint(config, dataclasses.replace(
        identity, numerics=dataclasses.replace(identity.numerics, cpu=cpu))) is not None
    with pytest.raises(UsageError, match="was written by a run with 1 thread"):
        load_run_checkpoint(config, dataclasses.replace(
            identity, numerics=dataclasses.replace(identity.numerics, threads=2)))
    with pytest.raises(UsageError, match="was written by other code"):
        load_run_checkpoint(config, _with_code(identity, stxbench_pruner_none="0" * 64))


def test_the_code_identity_digest_is_the_package_digests():
    code = CodeIdentity((("a", "1"), ("b", "2")), frozenset({"a"}), ())
    assert code.as_dict() == {"a": "1", "b": "2"}
    assert code.sha256() != code.sha256(code.stage_one)
    assert code.sha256(frozenset({"a"})) == CodeIdentity((("a", "1"),), frozenset(), ()).sha256()
