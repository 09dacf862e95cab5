"""Interrupted runs resume exactly; corrupted or foreign checkpoints are refused; Ctrl-C and
CUDA out-of-memory keep the last checkpoint and say how to resume.

The interruptions are real: a `stxbench run` subprocess loads an observer plugin that, at the
end of a chosen epoch (after that epoch's checkpoint is written), sends its own process SIGKILL
or SIGINT."""

import os
import shlex
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from helpers import TINY_PROTOCOL, run_args, run_cli

from stxbench.record.schema import load_record

KILLER = """
import os, signal
from stxbench.api import hookimpl

@hookimpl
def stxbench_epoch_end(stage, epoch, metrics):
    target = os.environ.get("STX_TEST_STOP")  # "dense:2:KILL" -> SIGKILL after dense epoch 2
    if target:
        where, when, how = target.split(":")
        if stage == where and epoch == int(when):
            os.kill(os.getpid(), getattr(signal, "SIG" + how))
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    protocol = root / "tiny.toml"
    protocol.write_text(TINY_PROTOCOL.format(dense_epochs=3).replace("epochs = 1\n", "epochs = 2\n"))
    (root / "stx_killer.py").write_text(textwrap.dedent(KILLER))
    reference = run_cli("run", "--protocol", str(protocol), "--out", str(root / "reference"),
                        "--cache-dir", str(root / "cache-ref"), "--threads", "1", "-q")
    assert reference.code == 0, reference.stderr
    return root, protocol, load_record(root / "reference" / "result.json")


def run_process(root, args, stop=None):
    env = {**os.environ, "PYTHONPATH": str(root)}
    env.pop("STX_TEST_STOP", None)
    if stop:
        env["STX_TEST_STOP"] = stop
    return subprocess.run([sys.executable, "-m", "stxbench", "-p", "stx_killer", *args], cwd=root,
                          env=env, capture_output=True, text=True, timeout=300)


def same_results(a, b):
    assert a.metrics == b.metrics
    assert a.counts == b.counts and a.energy == b.energy
    assert a.provenance.checkpoint_sha256 == b.provenance.checkpoint_sha256


@pytest.mark.e2e  # runs killed and resumed in fresh processes
@pytest.mark.parametrize("stop", ["dense:2:KILL", "finetune:1:KILL"])
def test_a_killed_run_resumes_to_the_same_result(setup, tmp_path, stop):
    root, protocol, reference = setup
    out, cache = tmp_path / "out", tmp_path / "cache"
    killed = run_process(root, run_args(protocol, out, cache), stop)
    assert killed.returncode == -signal.SIGKILL
    assert (out / "checkpoint.pt").exists() and not (out / "result.json").exists()
    stage, epoch, _ = stop.split(":")
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert (state["stage"], state["progress"]["epoch"]) == (stage, int(epoch))

    resumed = run_process(root, run_args(protocol, out, cache))
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from {out / 'checkpoint.pt'}: {stage} epoch {epoch}" in resumed.stderr
    assert not (out / "checkpoint.pt").exists()  # the record replaces it
    same_results(load_record(out / "result.json"), reference)


@pytest.mark.e2e  # a run interrupted and resumed in fresh processes
def test_ctrl_c_keeps_the_checkpoint_and_prints_the_resume_command(setup, tmp_path):
    root, protocol, reference = setup
    out, cache = tmp_path / "out", tmp_path / "cache"
    stopped = run_process(root, run_args(protocol, out, cache), "dense:2:INT")
    assert stopped.returncode == 130
    assert stopped.stderr.count("\n") == 1, stopped.stderr
    message, _, command = stopped.stderr.strip().partition("; resume with: ")
    assert message == f"error: interrupted; the last checkpoint (dense epoch 2) is in {out}"
    args = shlex.split(command)
    assert args[:3] == ["stxbench", "-p", "stx_killer"]
    resumed = run_process(root, args[3:] + ["--resume"])
    assert resumed.returncode == 0, resumed.stderr
    same_results(load_record(out / "result.json"), reference)


@pytest.fixture
def killed_run(setup, tmp_path):
    root, protocol, _ = setup
    out, cache = tmp_path / "out", tmp_path / "cache"
    assert run_process(root, run_args(protocol, out, cache), "dense:1:KILL").returncode == -signal.SIGKILL
    return protocol, out, cache


@pytest.mark.e2e  # killed_run: a run killed in a fresh process
def test_a_corrupted_checkpoint_is_refused(killed_run, cli):
    protocol, out, cache = killed_run
    data = (out / "checkpoint.pt").read_bytes()
    (out / "checkpoint.pt").write_bytes(data[: len(data) // 2])  # truncated
    result = cli(*run_args(protocol, out, cache))
    assert result.code == 2
    assert result.stderr == (f"error: {out / 'checkpoint.pt'} does not match its sha256 (truncated or "
                             "corrupted); delete it to start the run over\n")
    assert not (out / "result.json").exists()


@pytest.mark.e2e  # killed_run: a run killed in a fresh process
def test_the_checkpoint_of_another_run_is_refused(killed_run, cli):
    protocol, out, cache = killed_run
    result = cli(*run_args(protocol, out, cache, "--neuron", "plif"))
    assert result.code == 2
    assert result.stderr.startswith(f"error: {out / 'checkpoint.pt'} is the checkpoint of another run "
                                    "(tiny lif/none/torch seed 0)")


def test_out_folder_rules(setup, tmp_path, cli):
    _, protocol, _ = setup
    result = cli(*run_args(protocol, tmp_path / "empty", tmp_path / "c", "--resume"))
    assert result.code == 2 and "--resume: " in result.stderr and "holds no checkpoint" in result.stderr
    done = tmp_path / "done"
    done.mkdir()
    (done / "result.json").write_text("{}")
    result = cli(*run_args(protocol, done, tmp_path / "c"))
    assert result.code == 2 and "already holds a finished run (result.json)" in result.stderr


def test_a_corrupted_dense_cache_entry_is_rebuilt(setup, tmp_path, cli):
    _, protocol, reference = setup
    cache = tmp_path / "cache"
    assert cli(*run_args(protocol, tmp_path / "a", cache)).code == 0
    (entry,) = (cache / "dense").glob("*.pt")
    entry.write_bytes(entry.read_bytes()[:-10])
    rebuilt = cli(*run_args(protocol, tmp_path / "b", cache))
    assert rebuilt.code == 0
    assert "warning: cached dense checkpoint: " in rebuilt.stderr and "retraining it" in rebuilt.stderr
    record = load_record(tmp_path / "b" / "result.json")
    assert record.timing.dense_s is not None
    same_results(record, reference)


def test_cuda_out_of_memory_stops_cleanly(setup, tmp_path, cli, monkeypatch):
    from stxbench_model_spikformer.spikformer import Spikformer

    _, protocol, _ = setup
    real_forward, calls = Spikformer.forward, []

    def forward(self, x):
        calls.append(1)
        if len(calls) > 50:  # dense epoch 1 is 44 steps: fail in epoch 2
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_forward(self, x)

    monkeypatch.setattr(Spikformer, "forward", forward)
    out = tmp_path / "out"
    result = cli(*run_args(protocol, out, tmp_path / "cache"))
    assert result.code == 1
    assert result.stderr.startswith("error: CUDA out of memory (train batch 32, fine-tune batch 32): ")
    assert f"the last checkpoint (dense epoch 1) is in {out}; resume with: stxbench run " in result.stderr
    assert result.stderr.count("\n") == 1
    assert (out / "checkpoint.pt").exists() and not (out / "result.json").exists()


BROKEN_PRUNER = """
from stxbench.api import hookimpl
from stxbench.api import Pruner, PrunerParams

class Boom(Pruner):
    name = "boom"
    summary = "raises while pruning"
    Params = PrunerParams

    def prune(self, model, params):
        raise ValueError("no matrices to my taste")

class WrongParams(Pruner):
    name = "wrongparams"
    summary = "Params is not a pydantic model"
    Params = dict

    def prune(self, model, params):
        pass

@hookimpl
def stxbench_add_pruners():
    return [Boom(), WrongParams()]
"""


def test_a_plugin_failing_at_run_time_fails_only_its_run(tmp_path, monkeypatch, tiny_protocol, cli, shared_cache):
    (tmp_path / "boom_plugin.py").write_text(textwrap.dedent(BROKEN_PRUNER))
    monkeypatch.chdir(tmp_path)
    listed = cli("-p", "boom_plugin", "list", "pruners")
    assert listed.code == 0 and "boom" in listed.stdout
    assert "pruner 'wrongparams': Params must subclass stxbench.api.PrunerParams" in listed.stdout
    result = cli("-p", "boom_plugin", "run", "--pruner", "boom", "--protocol", str(tiny_protocol),
                 "--out", str(tmp_path / "out"), "--cache-dir", str(shared_cache), "-q")
    assert result.code == 1
    assert result.stderr.startswith("error: pruner 'boom' (plugin 'boom_plugin') failed: "
                                    "ValueError: no matrices to my taste (boom_plugin.py:")
    assert result.stderr.count("\n") == 1 and not (tmp_path / "out" / "result.json").exists()
    fine = cli("-p", "boom_plugin", "run", "--pruner", "l1p", "--protocol", str(tiny_protocol),
               "--out", str(tmp_path / "ok"), "--cache-dir", str(shared_cache), "-q")
    assert fine.code == 0, fine.stderr


@pytest.mark.e2e  # runs killed and resumed in fresh processes
def test_a_run_killed_while_fine_tuning_keeps_its_recovery_curve(setup, tmp_path):
    """The points measured before the kill travel in the checkpoint; the resumed run measures
    the rest and ends with the record of an uninterrupted run."""
    root, _, _ = setup
    protocol = root / "validated.toml"
    protocol.write_text(TINY_PROTOCOL.format(dense_epochs=2)
                        .replace("[model]", "[data.validation]\nsamples = 200\ndiagnostic_samples = 20\n\n[model]")
                        .replace("epochs = 1\n", "epochs = 3\n"))
    cache = tmp_path / "cache"
    reference = run_process(root, run_args(protocol, tmp_path / "ref", cache))
    assert reference.returncode == 0, reference.stderr
    out = tmp_path / "out"
    killed = run_process(root, run_args(protocol, out, cache), "finetune:2:KILL")
    assert killed.returncode == -signal.SIGKILL
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert [p["epoch"] for p in state["done"]["recovery"]["curve"]] == [0, 1, 2]
    assert run_process(root, run_args(protocol, out, cache)).returncode == 0
    resumed, whole = load_record(out / "result.json"), load_record(tmp_path / "ref" / "result.json")
    same_results(resumed, whole)
    assert resumed.recovery == whole.recovery
