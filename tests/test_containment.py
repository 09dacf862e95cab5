"""Plugin code that stops the process, breaks the neuron contract, or is named twice is contained
and named; SIGTERM stops a run as Ctrl-C does; the resume command survives any path; result
files and checkpoints get the permissions of any new file."""

import os
import shlex
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import TINY_PROTOCOL, run_args, run_cli
from test_host import install_entry_point, write_module

from stxbench.host.plugin_host import PluginHost
from stxbench.record.schema import load_record

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import bad_plugins  # noqa: E402


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    """Writes a plugin of bad_plugins into a folder on sys.path (importable by -p)."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))

    def write(name):
        sys.modules.pop(name, None)
        return bad_plugins.write(folder, name)

    return write


# -- sys.exit() and KeyboardInterrupt from plugin code ----------------------------------------


@pytest.mark.parametrize("source, reason", [
    ("import sys\nsys.exit(0)\n", "import failed: SystemExit: called sys.exit(0) (stxbench_quits.py:2)"),
    ("raise KeyboardInterrupt\n", "import failed: KeyboardInterrupt: (no message) (stxbench_quits.py:1)"),
    ("""
     import sys
     from stxbench.api import hookimpl

     @hookimpl
     def stxbench_add_neurons():
         sys.exit(4)
     """, "stxbench_add_neurons raised SystemExit: called sys.exit(4) (stxbench_quits.py:7)"),
])
def test_an_installed_plugin_that_stops_the_process_is_listed_as_failed(tmp_path, monkeypatch, cli, source, reason):
    write_module(tmp_path, "stxbench_quits", source)
    install_entry_point(tmp_path, "stxbench_quits", "quits", "stxbench_quits")
    monkeypatch.syspath_prepend(str(tmp_path))
    host = PluginHost()
    assert [(f.plugin, f.reason) for f in host.failures] == [("quits", reason)]
    result = cli("list", "neurons")
    assert result.code == 0 and "quits" in result.stdout and "lif" in result.stdout


def test_an_observer_calling_sys_exit_is_left_out_and_the_run_finishes(tiny_protocol, tmp_path, plugins, cli):
    plugins("bi_exit_observer")
    result = cli("-p", "bi_exit_observer", *run_args(tiny_protocol, tmp_path / "out", tmp_path / "cache"))
    assert result.code == 0, result.stderr
    line = line_of("bi_exit_observer", "sys.exit(0)")
    assert result.stderr == ("warning: observer bi_exit_observer.stxbench_epoch_end raised SystemExit: called "
                             f"sys.exit(0) (bi_exit_observer.py:{line}); it is left out for the rest of the run\n")
    load_record(tmp_path / "out" / "result.json")


def test_a_keyboard_interrupt_in_an_observer_interrupts_the_run(tmp_path, plugins, cli):
    protocol = tmp_path / "tiny.toml"
    protocol.write_text(TINY_PROTOCOL.format(dense_epochs=2))
    plugins("bi_stopper")
    out = tmp_path / "out"
    result = cli("-p", "bi_stopper", *run_args(protocol, out, tmp_path / "cache"))
    assert result.code == 130
    assert result.stderr.startswith(f"error: interrupted; the last checkpoint (dense epoch 1) is in {out}; "
                                    "resume with: stxbench -p bi_stopper run ")
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "checkpoint.pt.sha256"]


def test_sys_exit_in_plugin_code_before_or_during_a_run_fails_it_with_one_line(tiny_protocol, tmp_path, plugins, cli,
                                                                              shared_cache):
    plugins("bi_exit_check")
    before = cli("-p", "bi_exit_check", *run_args(tiny_protocol, tmp_path / "a", shared_cache),
                 "--backend", "bi-exit-check")
    assert before.code == 1
    line = line_of("bi_exit_check", "sys.exit(0)")
    assert before.stderr == (f"error: stopped by sys.exit(0) at bi_exit_check.py:{line}, in code stxbench "
                             "called (a plugin?)\n")
    plugins("bi_exit_pruner")
    during = cli("-p", "bi_exit_pruner", *run_args(tiny_protocol, tmp_path / "b", shared_cache),
                 "--pruner", "bi-exit")
    assert during.code == 1
    line = line_of("bi_exit_pruner", "sys.exit(0)")
    assert during.stderr == ("error: pruner 'bi-exit' (plugin 'bi_exit_pruner') failed: SystemExit: called "
                             f"sys.exit(0) (bi_exit_pruner.py:{line})\n")


def test_a_base_exception_from_plugin_code_fails_the_run_with_one_line(tiny_protocol, tmp_path, plugins, cli,
                                                                       shared_cache):
    plugins("bi_base_pruner")
    result = cli("-p", "bi_base_pruner", *run_args(tiny_protocol, tmp_path / "out", shared_cache),
                 "--pruner", "bi-base")
    line = line_of("bi_base_pruner", 'raise Stop("pruning abandoned")')
    assert result.code == 1
    assert result.stderr == ("error: pruner 'bi-base' (plugin 'bi_base_pruner') failed: Stop: pruning abandoned "
                             f"(bi_base_pruner.py:{line})\n")


def test_p_naming_an_installed_plugin_module_is_accepted(tiny_protocol, tmp_path, cli, shared_cache):
    listed = cli("-p", "stxbench_neuron_lif", "list", "neurons")
    assert listed.code == 0 and listed.stderr == ""
    assert [line.split()[0] for line in listed.stdout.splitlines()[2:]].count("lif") == 1
    ran = cli("-p", "stxbench_neuron_lif", *run_args(tiny_protocol, tmp_path / "out", shared_cache))
    assert ran.code == 0, ran.stderr


def test_p_module_with_a_hook_of_the_wrong_signature_is_one_line(plugins, cli):
    plugins("bi_bad_signature")
    result = cli("-p", "bi_bad_signature", "list")
    assert result.code == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: -p bi_bad_signature: Plugin 'bi_bad_signature' for hook "
                                    "'stxbench_add_backends'")


# -- the neuron contract, checked at the slot -----------------------------------------------


def line_of(name, text):
    """The line of ``text`` in the file `bad_plugins.write` makes of plugin ``name``."""
    lines = textwrap.dedent(bad_plugins.SOURCES[name]).splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.strip() == text)


def forward_line(name):
    return line_of(name, "def forward(self, x):")


@pytest.mark.parametrize("name, problem", [
    ("bi_nan", "returned nan, not a spike"),
    ("bi_inf", "returned inf, not a spike"),
    ("bi_half", "returned 0.5, not a spike"),
    ("bi_shape", "returned (32, 4, 8, 8) torch.float32 for input (2, 32, 4, 8, 8) torch.float32"),
    ("bi_dtype", "returned (2, 32, 4, 8, 8) torch.float64 for input (2, 32, 4, 8, 8) torch.float32"),
    ("bi_tuple", "returned a tuple, not a tensor"),
    ("bi_late_nan", "returned nan, not a spike"),
])
def test_a_backend_breaking_the_neuron_contract_is_blamed_with_its_file_and_line(
        tiny_protocol, tmp_path, plugins, cli, name, problem):
    plugins(name)
    backend = name.replace("_", "-")
    out = tmp_path / "out"
    result = cli("-p", name, *run_args(tiny_protocol, out, tmp_path / "cache"), "--backend", backend)
    assert result.code == 1
    assert result.stderr.count("\n") == 1, result.stderr
    line = result.stderr
    assert line.startswith(f"error: backend '{backend}' (plugin '{name}'): its neuron module Neuron "
                           f"({name}.py:{forward_line(name)}) {problem} at neuron layer '"), line
    assert "learning rate" not in line and "lr" not in line.split()
    assert not out.exists()


# -- SIGTERM, the resume command, permissions -------------------------------------------------

STOPPER = """
import os, signal
from stxbench.api import hookimpl

@hookimpl
def stxbench_epoch_end(stage, epoch, metrics):
    if stage == "dense" and epoch == 1 and os.environ.get("STX_TEST_TERM"):
        os.kill(os.getpid(), signal.SIGTERM)
"""


@pytest.mark.e2e  # a run stopped by SIGTERM and resumed in fresh processes
def test_sigterm_keeps_the_checkpoint_and_prints_the_resume_command(tmp_path):
    protocol = tmp_path / "tiny.toml"
    protocol.write_text(TINY_PROTOCOL.format(dense_epochs=2))
    (tmp_path / "stx_term.py").write_text(textwrap.dedent(STOPPER))
    out, cache = tmp_path / "out", tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "STX_TEST_TERM": "1"}
    command = [sys.executable, "-m", "stxbench", "-p", "stx_term", *run_args(protocol, out, cache)]
    stopped = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert stopped.returncode == 143
    message, _, resume = stopped.stderr.strip().partition("; resume with: ")
    assert message == f"error: terminated (SIGTERM); the last checkpoint (dense epoch 1) is in {out}"
    assert stopped.stderr.count("\n") == 1
    assert (out / "checkpoint.pt").exists()
    del env["STX_TEST_TERM"]
    resumed = subprocess.run([sys.executable, "-m", *shlex.split(resume)], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr


def test_the_resume_command_round_trips_paths_with_spaces_and_shell_characters(tmp_path, plugins):
    protocol = tmp_path / "tiny.toml"
    protocol.write_text(TINY_PROTOCOL.format(dense_epochs=2))
    plugins("bi_stopper")
    out = tmp_path / "runs   with  spaces" / "it's a \"run\" $HOME; `x` & * ? ~ \\ !"
    args = ["-p", "bi_stopper", *run_args(protocol, out, tmp_path / "cache   dir")]
    stopped = run_cli(*args)
    assert stopped.code == 130 and stopped.stderr.count("\n") == 1
    command = stopped.stderr.rstrip("\n").partition("; resume with: ")[2]
    assert shlex.split(command) == ["stxbench", *args]
    resumed = run_cli(*shlex.split(command)[1:])
    assert resumed.code == 0, resumed.stderr
    assert resumed.stderr == f"warning: resuming from {out / 'checkpoint.pt'}: dense epoch 1\n"


def test_result_files_and_checkpoints_get_the_permissions_of_any_new_file(tmp_path, plugins):
    protocol = tmp_path / "tiny.toml"
    protocol.write_text(TINY_PROTOCOL.format(dense_epochs=2))
    plugins("bi_stopper")
    old = os.umask(0o022)
    try:
        stopped = run_cli("-p", "bi_stopper", *run_args(protocol, tmp_path / "a", tmp_path / "cache"))
        assert stopped.code == 130
        checkpoints = list((tmp_path / "a").iterdir())
        done = run_cli(*run_args(protocol, tmp_path / "b", tmp_path / "cache"))
        assert done.code == 0, done.stderr
        files = [*checkpoints, tmp_path / "b" / "result.json", *(tmp_path / "cache" / "dense").iterdir()]
        assert len(files) == 5
        assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files} == {f.name: 0o644 for f in files}
        os.umask(0o077)
        assert run_cli(*run_args(protocol, tmp_path / "c", tmp_path / "cache")).code == 0
        assert stat.S_IMODE((tmp_path / "c" / "result.json").stat().st_mode) == 0o600
    finally:
        os.umask(old)
