"""The lock on a run's --out: a second run fails at once with one line, two runs started together
give one record, the lock goes on every exit path, and a killed holder never blocks a folder."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest
from helpers import TINY_PROTOCOL, run_args

from stxbench.run.errors import UsageError
from stxbench.run.paths import LOCK_FILE, run_lock
from stxbench.record.schema import load_record

HOLDER = """
import sys, time
from pathlib import Path
from stxbench.run.paths import run_lock
with run_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_a_run_into_a_folder_in_use_fails_at_once_with_one_line(tiny_protocol, tmp_path, cli):
    out = tmp_path / "out"
    with run_lock(out):
        result = cli(*run_args(tiny_protocol, out, tmp_path / "cache"))
    assert result.code == 2
    assert result.stderr == (f"error: --out {out} is in use by another run (process {os.getpid()}); "
                             "wait for it to finish or choose another --out\n")
    assert not out.exists() and not (tmp_path / "cache").exists()  # the holder made out, and removed it


@pytest.mark.e2e  # two fresh stxbench processes race for one folder
def test_two_runs_started_at_once_give_exactly_one_record(tmp_path):
    protocol = tmp_path / "tiny.toml"
    protocol.write_text(TINY_PROTOCOL.format(dense_epochs=4))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "stxbench", *run_args(protocol, out, tmp_path / "cache")]
    runs = [subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    outcomes = sorted((run.wait(timeout=300), run.stderr.read()) for run in runs)
    (won, _), (lost, message) = outcomes
    assert (won, lost) == (0, 2), outcomes
    # the loser either met the lock, or came after the winner had finished
    assert message.count("\n") == 1 and message.startswith("error: --out "), message
    assert "is in use by another run (process " in message or "already holds a finished run" in message
    load_record(out / "result.json")
    assert sorted(p.name for p in out.iterdir()) == ["result.json"]


def test_a_killed_holder_does_not_block_the_folder(tiny_protocol, tmp_path, cli):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(HOLDER), str(out)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        blocked = cli(*run_args(tiny_protocol, out, tmp_path / "cache"))
        assert blocked.code == 2 and f"(process {holder.pid})" in blocked.stderr
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (out / LOCK_FILE).read_text().strip() == str(holder.pid)  # left behind by the killed holder
    result = cli(*run_args(tiny_protocol, out, tmp_path / "cache"))
    assert result.code == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["result.json"]


def test_a_leftover_lock_file_naming_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_FILE).write_text(dead.stdout)
    with run_lock(out):
        assert (out / LOCK_FILE).read_text() == f"{os.getpid()}\n"
    assert not (out / LOCK_FILE).exists() and out.is_dir()  # a folder that was there stays


@pytest.mark.parametrize("failure", [UsageError("bad"), RuntimeError("bug"), KeyboardInterrupt(), SystemExit(3)])
def test_the_lock_goes_on_every_exit_path_with_the_folders_it_made(tmp_path, failure):
    out = tmp_path / "a" / "b" / "out"
    with pytest.raises(type(failure)):
        with run_lock(out):
            assert (out / LOCK_FILE).exists()
            raise failure
    assert not (tmp_path / "a").exists()  # created for the run, left empty: removed
    with pytest.raises(RuntimeError):
        with run_lock(out):
            (out / "checkpoint.pt").write_bytes(b"kept")
            raise RuntimeError("after an epoch")
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt"]  # what the run left stays
    with run_lock(out):  # and the folder is free again
        pass


def test_a_lock_held_in_the_same_process_blocks_too(tmp_path):
    with run_lock(tmp_path / "out"):
        with pytest.raises(UsageError, match="is in use by another run"):
            with run_lock(tmp_path / "out"):
                pass
        assert (tmp_path / "out" / LOCK_FILE).exists()  # the refused one removed nothing


def test_a_sweep_refuses_a_folder_in_use_before_its_first_run(tiny_protocol, tmp_path, cli):
    cell = tmp_path / "sweep" / "tiny" / "lif-none-torch-s1"
    with run_lock(cell):
        result = cli("sweep", "--protocol", str(tiny_protocol), "--out", str(tmp_path / "sweep"),
                     "--cache-dir", str(tmp_path / "cache"), "-q")
    assert result.code == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: --out {cell} is in use by another run (process {os.getpid()})")
    assert not (tmp_path / "cache").exists()  # seed 0 did not run either
