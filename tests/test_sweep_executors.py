"""Sweep executors: ``local --jobs 2`` writes the records a serial sweep writes, dense models
first and once; a failure stops nothing else and a re-run does only what failed; submitit's
local executor runs the jobs a SLURM sweep submits; the sbatch scripts (fake SLURM) carry the
array, its cap, the dependency and the resources; ``sweep status`` tells done / running /
queued / failed / missing with reasons and logs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import fake_slurm
from helpers import TINY_PROTOCOL, sweep_args
from stxbench.executors.plan import make_plan
from stxbench.executors.status import record_sweep
from stxbench.executors.tasks import read_state, write_state
from stxbench.host.plugin_host import PluginHost
from stxbench.record.schema import load_record
from stxbench.run.resolve import resolve
from stxbench.run.config import RunOptions


def sweep(cli, protocol: Path, out: Path, cache: Path, *args: str):
    return cli(*sweep_args(protocol, out, cache, *args, threads="1"))


def comparable(path: Path) -> dict:
    """A record without what differs between two identical runs: timing and creation time (and
    dense_s, which is a number in the run that trained the dense model)."""
    data = json.loads(path.read_text())
    data.pop("timing")
    data["provenance"].pop("created")
    return data


@pytest.mark.e2e  # --executor local: each job in a fresh interpreter
def test_local_jobs_writes_the_records_of_a_serial_sweep(cli, tiny_protocol, tmp_path):
    grid = ("--neuron", "lif,plif", "--seeds", "0,1")
    serial = sweep(cli, tiny_protocol, tmp_path / "serial", tmp_path / "cache-serial", *grid)
    assert serial.code == 0, serial.stderr
    local = sweep(cli, tiny_protocol, tmp_path / "local", tmp_path / "cache-local", *grid, "--executor", "local",
                  "--jobs", "2")
    assert local.code == 0, local.stderr
    assert "4 runs and 2 dense model(s) to train, 2 at a time" in local.stderr
    # a line when each task starts (a dense model trains for minutes on a real board), then its end
    dense_said: dict[str, list[str]] = {}
    for line in local.stderr.splitlines():
        if line.startswith("dense "):
            label, said = line.removeprefix("dense ").split(": ", 1)
            dense_said.setdefault(label, []).append(said.split(" ")[0])
    assert list(dense_said.values()) == [["training", "trained"]] * 2, dense_said
    for label in ("lif-none-torch-s0", "plif-none-torch-s1"):
        said = [line for line in local.stderr.splitlines() if f"] {label}: " in line]
        assert len(said) == 2 and ": running (" in said[0] and ": accuracy " in said[1], said
        assert f"log: {(tmp_path / 'local' / 'tiny' / label / 'sweep.log').resolve()})" in said[0]
    labels = ["lif-none-torch-s0", "lif-none-torch-s1", "plif-none-torch-s0", "plif-none-torch-s1"]
    for label in labels:
        ours, theirs = (tmp_path / v / "tiny" / label / "result.json" for v in ("local", "serial"))
        assert comparable(ours) == comparable(theirs), label
        assert load_record(ours).timing.dense_s is None  # the dense task trained it, before
        state = read_state(ours.parent)
        assert (state.state, state.executor) == ("finished", "local")
        assert Path(state.log).is_file() and Path(state.log).is_absolute()
    # two dense models (seeds 0, 1), each trained once, by its own task
    assert len(list((tmp_path / "cache-local" / "dense").glob("*.pt"))) == 2
    dense_states = [read_state(p) for p in (tmp_path / "local" / "tiny" / "_dense").iterdir()]
    assert sorted((s.kind, s.state) for s in dense_states) == [("dense", "finished")] * 2
    assert "4 runs: 4 ran, 0 skipped" in local.stdout

    status = cli("sweep", "status", str(tmp_path / "local"))
    assert status.code == 0, status.stderr
    assert f"tiny ({tmp_path / 'local' / 'tiny'}): 4 runs: 4 done, 0 missing" in status.stdout
    assert "dense models: 2 done, 0 missing" in status.stdout
    assert (f"submit the 4 finished record(s): stxbench leaderboard submit {tmp_path / 'local' / 'tiny'}/*/result.json "
            f"--protocol-dir {tiny_protocol.parent}") in status.stdout.replace("\n  ", " ")  # long lines wrap


@pytest.mark.e2e  # --executor local: each job in a fresh interpreter
def test_a_failed_run_stops_nothing_else_and_a_rerun_does_only_it(cli, tiny_protocol, tmp_path):
    out, cache = tmp_path / "sweep", tmp_path / "cache"
    broken = out / "tiny" / "plif-none-torch-s0"
    broken.mkdir(parents=True)
    (broken / "checkpoint.pt").write_bytes(b"not a checkpoint")  # refused: not a torch archive
    first = sweep(cli, tiny_protocol, out, cache, "--neuron", "lif,plif", "--seeds", "0", "--executor", "local",
                  "--jobs", "2")
    assert first.code == 1
    assert first.stderr.strip().splitlines()[-1] == (
        f"error: 1 of 2 runs failed; see stxbench sweep status {out / 'tiny'}")
    assert (out / "tiny" / "lif-none-torch-s0" / "result.json").exists()
    assert not (broken / "result.json").exists()
    state = read_state(broken)
    assert state.state == "failed" and state.reason.endswith("is not a torch checkpoint (no zip archive); delete it to start the run over")

    status = cli("sweep", "status", str(out / "tiny"))
    assert "2 runs: 1 done, 1 failed, 0 missing" in status.stdout
    unwrapped = status.stdout.replace("\n  ", " ")  # a long line wraps, its rest indented
    line = next(line for line in unwrapped.splitlines() if line.startswith("failed "))
    assert line.startswith("failed plif-none-torch-s0: ") and line.endswith(
        f"delete it to start the run over (log: {broken.resolve()}/sweep.log)")

    (broken / "checkpoint.pt").unlink()
    again = sweep(cli, tiny_protocol, out, cache, "--neuron", "lif,plif", "--seeds", "0", "--executor", "local",
                  "--jobs", "2")
    assert again.code == 0, again.stderr
    assert "1 runs and 0 dense model(s) to train" in again.stderr  # the dense model is cached
    assert "2 runs: 1 ran, 1 skipped" in again.stdout


@pytest.mark.e2e  # submitit runs the jobs in fresh processes
def test_submitit_local_executor_runs_the_jobs_a_slurm_sweep_submits(cli, tiny_protocol, tmp_path):
    submitit = pytest.importorskip("submitit")
    from stxbench.executors.slurm_jobs import SweepJob

    folder, host = tmp_path / "sweep" / "tiny", PluginHost(())
    options = RunOptions(device="cpu", threads=1, cache_dir=tmp_path / "cache")
    configs = [resolve(host, protocol=str(tiny_protocol), neuron=n, pruner="none", backend="torch", seed=0,
                       settings=[], out_dir=folder / f"{n}-none-torch-s0", options=options) for n in ("lif", "plif")]
    plan = make_plan(configs, folder, options, train_cached=True)
    assert len(plan.dense) == 1 and plan.dense[0].label.startswith("_dense/tiny-")
    assert [t.needs for t in plan.runs] == [plan.dense[0].label] * 2
    record_sweep(folder, "tiny", [c.out_dir.name for c in configs], plan, "slurm", protocol_arg=str(tiny_protocol))
    executor = submitit.LocalExecutor(folder / "_slurm" / "%j")
    executor.update_parameters(timeout_min=15)
    for wave in (plan.dense, plan.runs):  # what afterok does on a cluster
        jobs = executor.map_array(SweepJob(), wave)
        for job, task in zip(jobs, wave):
            write_state(task.folder, "queued", task.kind, "local", job_id=job.job_id, log=str(job.paths.stderr))
        for job in jobs:
            assert job.result() is None, job.stderr()
    for task in plan.tasks:
        state = read_state(task.folder)
        assert (state.state, state.executor) == ("finished", "local")
        assert state.job_id.isdigit() and Path(state.log).is_file()
    records = [load_record(c.out_dir / "result.json") for c in configs]
    assert [r.config.neuron for r in records] == ["lif", "plif"]
    assert records[0].provenance.checkpoint_sha256 == records[1].provenance.checkpoint_sha256

    status = cli("sweep", "status", str(folder))
    assert "2 runs: 2 done, 0 missing" in status.stdout and "dense models: 1 done" in status.stdout


# -- SLURM submission, on a fake SLURM -------------------------------------------------------


def dense_label(folder: Path, seed: int) -> str:
    return next(f"_dense/{p.name}" for p in (folder / "_dense").iterdir()
                if submitted_task(folder, read_state(p).job_id).config.seed == seed)


def submitted_task(folder: Path, job: str):
    from submitit.core.utils import DelayedSubmission

    return DelayedSubmission.load(folder / "_slurm" / job / f"{job}_submitted.pkl").args[0]


def sbatch_lines(folder: Path, job: str) -> dict[str, str]:
    script = (folder / "_slurm" / job / f"{job}_submission.sh").read_text()
    return dict(re.findall(r"^#SBATCH --([\w-]+)(?:=(.*))?$", script, re.M))


def test_slurm_sweep_submits_dense_then_runs_with_their_resources(cli, tiny_protocol, tmp_path, monkeypatch):
    fake = fake_slurm.install(tmp_path, monkeypatch)
    profile = tmp_path / "cluster.toml"
    profile.write_text('partition = "debug"\ntime = "1:30:00"\ngpus_per_job = 1\ncpus_per_job = 4\n'
                       'max_running = 3\nsbatch = ["--account=abc"]\nsetup = ["source venv/bin/activate"]\n')
    out, cache = tmp_path / "sweep", tmp_path / "cache"
    args = ("--neuron", "lif,plif", "--seeds", "0,1", "--executor", "slurm", "--slurm-profile", str(profile),
            "--partition", "gpu", "--mem", "16G", "--sbatch=--qos=high")
    result = cli("sweep", "--protocol", str(tiny_protocol), "--out", str(out), "--cache-dir", str(cache), *args)
    assert result.code == 0, result.stderr
    folder = out / "tiny"
    assert "submitted 2 dense job(s) (array 1000), then 4 run(s) (array 1001)" in result.stdout
    dense, runs = sbatch_lines(folder, "1000"), sbatch_lines(folder, "1001")
    for lines in (dense, runs):  # the command line's partition wins over the profile's
        assert {k: lines[k] for k in ("partition", "time", "gpus-per-node", "cpus-per-task", "mem", "account",
                                      "qos", "job-name")} == {
            "partition": "gpu", "time": "90", "gpus-per-node": "1", "cpus-per-task": "4", "mem": "16G",
            "account": "abc", "qos": "high", "job-name": "stxbench"}
    assert dense["array"] == "0-1%2" and "dependency" not in dense
    assert runs["array"] == "0-3%3" and runs["dependency"] == "afterok:1000"
    assert runs["kill-on-invalid-dep"] == "yes"
    script = (folder / "_slurm" / "1001" / "1001_submission.sh").read_text()
    assert "source venv/bin/activate" in script and "-m submitit.core._submit" in script
    # every task is queued with its array task id and log; the jobs get the cpus as --threads
    states = {p.parent.name: read_state(p.parent) for p in folder.glob("*/state.json")}
    assert sorted((s.job_id, s.state) for s in states.values()) == [
        (f"1001_{i}", "queued") for i in range(4)]
    assert states["lif-none-torch-s0"].log.endswith("_slurm/1001_0/1001_0_0_log.err")
    task = submitted_task(folder, "1001_0")
    assert (task.kind, task.config.neuron, task.config.seed, task.needs) == ("run", "lif", 0, dense_label(folder, 0))
    assert (task.config.threads, task.device, task.precision) == (4, "auto", "auto")  # resolved on the node

    # squeue: one dense job running, the rest pending -> status says so; a re-submission sends nothing
    fake.write("queue", ["1000_0|RUNNING", "1000_1|PENDING"] + [f"1001_{i}|PENDING" for i in range(4)])
    status = cli("sweep", "status", str(out))
    assert "4 runs: 0 done, 4 queued, 0 missing" in status.stdout, status.stdout
    again = cli("sweep", "--protocol", str(tiny_protocol), "--out", str(out), "--cache-dir", str(cache), *args)
    assert again.code == 0, again.stderr
    assert "nothing to submit" in again.stdout and len(fake.calls("sbatch_calls")) == 2

    # the dense job of seed 1 failed (sacct), which cancelled its runs: status blames it, and a
    # re-submission sends that dense model and its two runs again (after the new dense array)
    fake.write("queue", ["1001_0|RUNNING", "1001_2|PENDING"])
    fake.write("sacct", ["1000_0|COMPLETED", "1000_1|OUT_OF_MEMORY", "1001_1|CANCELLED", "1001_3|CANCELLED"])
    seed0 = next(p for p in (folder / "_dense").iterdir() if read_state(p).job_id == "1000_0")
    oom = next(p for p in (folder / "_dense").iterdir() if read_state(p).job_id == "1000_1")
    write_state(seed0, "finished", "dense", "slurm")
    status = cli("sweep", "status", str(out))
    assert "4 runs: 0 done, 1 running, 1 queued, 2 failed, 0 missing" in status.stdout, status.stdout
    assert "dense models: 1 done, 1 failed, 0 missing" in status.stdout
    unwrapped = status.stdout.replace("\n  ", " ")  # a long line wraps, its rest indented
    failed = [line for line in unwrapped.splitlines() if line.startswith("failed ")]
    assert failed[0] == (f"failed {oom.parent.name}/{oom.name}: SLURM job 1000_1 ended (OUT_OF_MEMORY) without a result "
                         f"(log: {folder.resolve()}/_slurm/1000_1/1000_1_0_log.err)")
    assert [line.split(":")[0] for line in failed[1:]] == ["failed lif-none-torch-s1", "failed plif-none-torch-s1"]
    assert all(f"its dense model (_dense/{oom.name}) failed: SLURM job 1000_1 ended" in line for line in failed[1:])
    third = cli("sweep", "--protocol", str(tiny_protocol), "--out", str(out), "--cache-dir", str(cache), *args)
    assert third.code == 0, third.stderr
    assert "submitted 1 dense job(s) (array 1002), then 2 run(s) (array 1003)" in third.stdout
    assert sbatch_lines(folder, "1003")["dependency"] == "afterok:1002"
    assert sbatch_lines(folder, "1003")["array"] == "0-1%2"


@pytest.mark.e2e  # the sbatch scripts run as on a node (fresh processes), one requeued by a signal
def test_the_submitted_scripts_run_on_a_node_and_a_requeued_job_resumes(cli, tmp_path, monkeypatch):
    """The sbatch scripts themselves, run as a node runs an array task: the dense job, stopped by
    SLURM's time-limit signal after an epoch, is requeued and resumes there; then the run."""
    import signal
    import time

    fake = fake_slurm.install(tmp_path, monkeypatch)
    protocol = tmp_path / "tiny.toml"
    # a tiny epoch takes about 0.1 s on a quiet machine: with 4 epochs the job could finish before
    # the signal below reached it (seen once in the suite); 40 leave it time to land mid-stage
    protocol.write_text(TINY_PROTOCOL.format(dense_epochs=40))
    out = tmp_path / "sweep"
    result = cli("sweep", "--protocol", str(protocol), "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
                 "--executor", "slurm", "--seeds", "0", "--device", "cpu", "--threads", "1", "-q")
    assert result.code == 0, result.stderr
    folder = out / "tiny"
    dense_dir = next((folder / "_dense").iterdir())
    script = folder / "_slurm" / "1000" / "1000_submission.sh"
    job = fake_slurm.run_job(script, "1000", wait=False)
    deadline = time.time() + 300
    while not (dense_dir / "checkpoint.pt").exists() and time.time() < deadline and job.poll() is None:
        time.sleep(0.2)
    assert (dense_dir / "checkpoint.pt").exists(), "the dense job wrote no checkpoint"
    os.kill(read_state(dense_dir).pid, signal.SIGUSR2)  # what --signal=USR2@90 sends
    assert job.wait(timeout=300) != 0
    state = read_state(dense_dir)
    assert (state.state, state.reason, state.job_id) == ("queued", "requeued by SLURM (time limit or preemption)",
                                                         "1000")
    assert fake.calls("scontrol") == ["requeue 1000"]

    fake_slurm.run_job(script, "1000")  # SLURM starts the requeued job again
    assert "resuming from" in Path(read_state(dense_dir).log).read_text()
    assert read_state(dense_dir).state == "finished" and not (dense_dir / "checkpoint.pt").exists()
    fake_slurm.run_job(folder / "_slurm" / "1001" / "1001_submission.sh", "1001")
    state = read_state(folder / "lif-none-torch-s0")
    assert (state.state, state.executor, state.job_id) == ("finished", "slurm", "1001")
    record = load_record(folder / "lif-none-torch-s0" / "result.json")
    assert record.timing.dense_s is None  # the dense job trained it
    status = cli("sweep", "status", str(out))
    assert "1 runs: 1 done, 0 missing" in status.stdout and "dense models: 1 done, 0 missing" in status.stdout


def test_a_run_whose_job_vanished_is_failed_and_one_whose_process_died_too(cli, tiny_protocol, tmp_path):
    folder = tmp_path / "sweep" / "tiny"
    record_sweep(folder, "tiny", ["lif-none-torch-s0", "plif-none-torch-s0"], make_plan([], folder, RunOptions()),
                 "local")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    write_state(folder / "lif-none-torch-s0", "started", "run", "local")
    path = folder / "lif-none-torch-s0" / "state.json"
    data = json.loads(path.read_text())
    data["pid"] = int(dead.stdout)
    path.write_text(json.dumps(data))
    write_state(folder / "plif-none-torch-s0", "started", "run", "local")  # this process: alive
    status = cli("sweep", "status", str(folder))
    assert "2 runs: 0 done, 1 running, 1 failed, 0 missing" in status.stdout, status.stdout
    assert f"its process {int(dead.stdout)} ended (killed?) without a result" in status.stdout


def env_after_all_started(folder: str, workers: int) -> str:
    """In a pool worker: wait until ``workers`` workers are in here (so each takes one call),
    then say which GPUs this worker sees."""
    import time

    Path(folder, str(os.getpid())).touch()
    deadline = time.time() + 120
    while len(list(Path(folder).iterdir())) < workers and time.time() < deadline:
        time.sleep(0.05)
    return os.environ.get("CUDA_VISIBLE_DEVICES", "unset")


@pytest.mark.e2e  # three fresh interpreters (the local executor's pool)
def test_local_workers_take_the_gpus_in_turn(tmp_path):
    from stxbench.executors.local import worker_pool

    with worker_pool(3, ["3", "5"]) as pool:
        seen = [f.result(timeout=300) for f in [pool.submit(env_after_all_started, str(tmp_path), 3) for _ in range(3)]]
    assert sorted(seen) == ["3", "3", "5"]


ORPHAN_SCRIPT = """
import os, sys, time
from pathlib import Path
from stxbench.executors.local import worker_pool

def sit(folder):
    Path(folder, "worker").write_text(str(os.getpid()))
    time.sleep(600)

if __name__ == "__main__":
    with worker_pool(1, []) as pool:
        pool.submit(sit, sys.argv[1])
        time.sleep(600)
"""


def gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie nobody has reaped yet counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.e2e  # a fresh interpreter with a worker pool, killed outright
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_sweep_killed_outright_leaves_no_worker_behind(tmp_path):
    import signal
    import time

    script = tmp_path / "sweep_like.py"
    script.write_text(ORPHAN_SCRIPT)
    parent = subprocess.Popen([sys.executable, str(script), str(tmp_path)])
    try:
        deadline = time.time() + 120
        while not (tmp_path / "worker").exists() and time.time() < deadline:
            time.sleep(0.1)
        worker = int((tmp_path / "worker").read_text())
        assert not gone(worker)
        parent.send_signal(signal.SIGKILL)  # no handler runs, no pool shutdown: only the kernel acts
        parent.wait()
        deadline = time.time() + 30
        while not gone(worker) and time.time() < deadline:
            time.sleep(0.1)
        assert gone(worker), f"worker {worker} outlived its sweep"
    finally:
        parent.kill()
        if (tmp_path / "worker").exists() and not gone(worker := int((tmp_path / "worker").read_text())):
            os.kill(worker, signal.SIGKILL)

# -- bad input: one line, exit 2, nothing written or submitted -------------------------------


@pytest.mark.parametrize("case, fake, args, message", [
    ("--jobs 0", None, ["--executor", "local", "--jobs", "0"], "error: --jobs must be in 1.."),
    ("--jobs beyond the CPUs", None, ["--executor", "local", "--jobs", "100000"], "error: --jobs must be in 1.."),
    ("--jobs with serial", None, ["--jobs", "2"], "error: --jobs applies to --executor local only (got --executor serial"),
    ("--jobs with slurm", "all", ["--executor", "slurm", "--jobs", "2"], "error: --jobs applies to --executor local only"),
    ("slurm option without slurm", None, ["--partition", "gpu"], "error: --partition applies to --executor slurm only"),
    ("no sbatch", ("srun", "sinfo"), ["--executor", "slurm"], "error: --executor slurm: sbatch is not on PATH"),
    ("unknown partition", "all", ["--executor", "slurm", "--partition", "gpuu"],
     "error: unknown partition 'gpuu'; did you mean 'gpu'? valid: debug, gpu"),
    ("bad time", "all", ["--executor", "slurm", "--time", "4h"],
     "error: SLURM options: --time: '4h' is not a SLURM time (minutes, MM:SS, HH:MM:SS"),
    ("bad memory", "all", ["--executor", "slurm", "--mem", "16GB"],
     "error: SLURM options: --mem: '16GB' is not an amount of memory (a whole number with an optional K, M, G"),
    ("an sbatch option the sweep sets", "all", ["--executor", "slurm", "--sbatch=--array=0-3"],
     "error: SLURM options: --sbatch: '--array=0-3': the sweep sets --array itself"),
    ("an sbatch option with a field of its own", "all", ["--executor", "slurm", "--sbatch", "--partition=gpu"],
     "error: SLURM options: --sbatch: '--partition=gpu': set partition instead"),
    ("--max-running 0", "all", ["--executor", "slurm", "--max-running", "0"],
     "error: SLURM options: --max-running: Input should be greater than or equal to 1"),
    ("profile that does not exist", "all", ["--executor", "slurm", "--slurm-profile", "nowhere.toml"],
     "error: --slurm-profile nowhere.toml: no such file"),
    ("profile with several errors", "all", ["--executor", "slurm", "--slurm-profile", "{bad}"],
     "error: SLURM options: {bad}: gpus_per_job: Input should be greater than or equal to 0; {bad}: max_running: "
     "Input should be greater than or equal to 1; {bad}: partion: unknown key (valid: partition, time,"),
    ("profile that is not TOML", "all", ["--executor", "slurm", "--slurm-profile", "{nottoml}"],
     "error: --slurm-profile {nottoml}: not TOML"),
    ("--device cuda on CPU-only jobs", "all", ["--executor", "slurm", "--device", "cuda"],
     "error: --device cuda with --executor slurm needs --gpus-per-job >= 1"),
    ("--device cuda:1 on SLURM", "all", ["--executor", "slurm", "--device", "cuda:1", "--gpus-per-job", "2"],
     "error: --device cuda:1 with --executor slurm: each job sees its own GPUs; use --device cuda or auto"),
])
def test_bad_executor_input_is_one_line_and_writes_nothing(cli, tiny_protocol, tmp_path, monkeypatch, case, fake,
                                                           args, message):
    if fake is not None:
        slurm = fake_slurm.install(tmp_path, monkeypatch, **({} if fake == "all" else {"commands": fake}))
    bad = tmp_path / "bad.toml"
    bad.write_text('gpus_per_job = -1\nmax_running = 0\npartion = "gpu"\n')
    nottoml = tmp_path / "nottoml.toml"
    nottoml.write_text("partition = = 1\n")
    args = [a.format(bad=bad, nottoml=nottoml) for a in args]
    out, cache = tmp_path / "out", tmp_path / "cache"
    result = sweep(cli, tiny_protocol, out, cache, *args)
    lines = result.stderr.strip().splitlines()
    assert result.code == 2, (case, result.stderr)
    assert len(lines) == 1 and lines[0].startswith(message.format(bad=bad, nottoml=nottoml)), (case, lines)
    assert not out.exists() and not cache.exists()
    if fake is not None:
        assert slurm.calls("sbatch_calls") == []


def test_status_of_what_is_not_a_sweep_is_one_line(cli, tmp_path):
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    for target, message in [
        ("file.txt", "{} is not a folder (give a sweep's folder, or the --out root of sweeps)"),
        ("nowhere", "{}: no such folder"),
        ("empty", "{} holds no sweep (no sweep.json in it or in its subfolders)"),
    ]:
        result = cli("sweep", "status", str(tmp_path / target))
        assert (result.code, result.stderr) == (2, f"error: {message.format(tmp_path / target)}\n")


def test_without_sinfo_the_partition_is_not_checked_and_said_so(cli, tiny_protocol, tmp_path, monkeypatch):
    fake_slurm.install(tmp_path, monkeypatch, commands=("sbatch", "srun", "squeue", "sacct", "scancel"))
    result = cli("sweep", "--protocol", str(tiny_protocol), "--out", str(tmp_path / "out"), "--executor", "slurm",
                 "--partition", "anything", "--seeds", "0")
    assert result.code == 0, result.stderr
    assert "warning: partition 'anything' not checked: sinfo is not on PATH" in result.stderr


def test_sbatch_refusing_the_submission_leaves_nothing(cli, tiny_protocol, tmp_path, monkeypatch):
    fake = fake_slurm.install(tmp_path, monkeypatch)
    fake.write("sbatch_error", ["sbatch: error: Batch job submission failed: Invalid account"])
    out = tmp_path / "out"
    result = cli("sweep", "--protocol", str(tiny_protocol), "--out", str(out), "--executor", "slurm", "--seeds", "0",
                 "--cache-dir", str(tmp_path / "cache"))
    assert result.code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: sbatch refused the sweep: ") and "Invalid account" in lines[0]
    assert not out.exists()


# -- the profile's parts ---------------------------------------------------------------------


@pytest.mark.parametrize("text, minutes", [
    ("30", 30), ("90:30", 91), ("1:30:00", 90), ("2-0", 2880), ("1-2:30", 1590), ("0-0:0:59", 1), ("4-00:00:00", 5760),
])
def test_slurm_times_in_minutes(text, minutes):
    from stxbench.executors.slurm import SlurmProfile, slurm_minutes

    assert slurm_minutes(text) == minutes
    assert SlurmProfile(time=text).executor_parameters(4)["time"] == minutes


def test_a_profile_time_may_be_a_number_of_minutes():
    from stxbench.executors.slurm import SlurmProfile

    params = SlurmProfile(time=90, sbatch=["--account=abc", "exclusive"], max_running=2).executor_parameters(5)
    assert params["time"] == 90 and params["array_parallelism"] == 2
    assert params["additional_parameters"] == {"kill-on-invalid-dep": "yes", "account": "abc", "exclusive": True}
    assert SlurmProfile().executor_parameters(7) == {
        "job_name": "stxbench", "array_parallelism": 7, "additional_parameters": {"kill-on-invalid-dep": "yes"}}


@pytest.mark.parametrize("text", ["4h", "", "1:2:3:4", "-1", "1-", "0", "1.5"])
def test_slurm_times_refused(text):
    from stxbench.executors.slurm import slurm_minutes

    with pytest.raises(ValueError):
        slurm_minutes(text)


@pytest.mark.e2e  # two fresh stxbench processes share one dense model
def test_dense_lock_lets_one_of_two_concurrent_runs_train(tiny_protocol, tmp_path):
    """Two runs started at once that need one dense model: one trains it, the other waits for
    it and loads it (without the lock both would train)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "stxbench", "run", "--protocol", str(tiny_protocol), "--neuron",
                               neuron, "--seed", "0", "--device", "cpu", "--threads", "1", "--cache-dir",
                               str(tmp_path / "cache"), "--out", str(tmp_path / neuron), "-q"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for neuron in ("lif", "plif")]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-500:] for o in outputs]
    records = [load_record(tmp_path / n / "result.json") for n in ("lif", "plif")]
    assert sorted(r.timing.dense_s is None for r in records) == [False, True]
    assert records[0].provenance.checkpoint_sha256 == records[1].provenance.checkpoint_sha256
    assert len(list((tmp_path / "cache" / "dense").glob("*.pt"))) == 1
