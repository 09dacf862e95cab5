"""``stxbench sweep``: the grid runs once, a second invocation skips it, bad names stop it before
the first run, and the summary aggregates over seeds."""

from __future__ import annotations

from pathlib import Path

from helpers import sweep_args

from stxbench.record.schema import load_record


def sweep(cli, tiny_protocol: Path, out: Path, cache: Path, *args: str):
    return cli(*sweep_args(tiny_protocol, out, cache, *args))


def test_sweep_runs_the_grid_then_resumes(cli, tiny_protocol, tmp_path, cache_dir):
    out = tmp_path / "sweep"
    result = sweep(cli, tiny_protocol, out, cache_dir, "--neuron", "lif,plif", "--pruner", "none", "--seeds", "0,1")
    assert result.code == 0, result.stderr
    folders = sorted(p.name for p in (out / "tiny").iterdir() if p.is_dir())
    assert folders == ["lif-none-torch-s0", "lif-none-torch-s1", "plif-none-torch-s0", "plif-none-torch-s1"]
    progress = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert [line.split(":")[0] for line in progress[::2]] == [
        "[1/4] lif-none-torch-s0", "[2/4] lif-none-torch-s1", "[3/4] plif-none-torch-s0", "[4/4] plif-none-torch-s1"]
    records = {f: load_record(out / "tiny" / f / "result.json") for f in folders}
    assert records["plif-none-torch-s1"].config.neuron == "plif" and records["plif-none-torch-s1"].config.seed == 1
    # the dense model is trained once per seed and shared by both neurons
    assert len(list((cache_dir / "dense").glob("*.pt"))) == 2

    rows = [line.split() for line in result.stdout.splitlines() if line.startswith(("lif ", "plif "))]
    assert [r[:4] for r in rows] == [["lif", "none", "torch", "2"], ["plif", "none", "torch", "2"]]
    lif = [records[f"lif-none-torch-s{s}"].metrics.accuracy for s in (0, 1)]
    assert rows[0][4] == f"{(lif[0] + lif[1]) / 2:.4f}"
    assert "4 runs: 4 ran, 0 skipped" in result.stdout
    assert "unofficial" not in result.stderr  # the protocol's seeds, no --set

    mtime = (out / "tiny" / "lif-none-torch-s0" / "result.json").stat().st_mtime_ns
    again = sweep(cli, tiny_protocol, out, cache_dir, "--neuron", "lif,plif", "--seeds", "0,1")
    assert again.code == 0, again.stderr
    assert "4 runs: 0 ran, 4 skipped" in again.stdout
    assert again.stderr.count("done already") == 4
    assert (out / "tiny" / "lif-none-torch-s0" / "result.json").stat().st_mtime_ns == mtime
    assert [line.split() for line in again.stdout.splitlines() if line.startswith(("lif ", "plif "))] == rows


def test_sweep_rejects_bad_names_before_running(cli, tiny_protocol, tmp_path, cache_dir):
    out = tmp_path / "sweep"
    for args, message in [
        (["--neuron", "lif,lfi"], "error: unknown neuron 'lfi'; did you mean 'lif'? valid: "),
        (["--pruner", "none,l2p"], "error: unknown pruner 'l2p'"),
        (["--seeds", "0,x"], "error: --seeds 0,x: seeds are comma-separated integers, e.g. 0,1,2"),
        (["--neuron", "lif,lif"], "error: --neuron lif,lif: a name is repeated"),
        (["--set", "sparsity=0.5"], "error: --set sparsity: none of the pruners none has a parameter 'sparsity'"),
    ]:
        result = sweep(cli, tiny_protocol, out, cache_dir, *args)
        assert result.code == 2, args
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(message), lines
    assert not out.exists() and not cache_dir.exists()


def test_sweep_refuses_a_folder_holding_another_configuration(cli, tiny_protocol, tmp_path, cache_dir):
    out = tmp_path / "sweep"
    assert sweep(cli, tiny_protocol, out, cache_dir, "--seeds", "0").code == 0
    moved = out / "tiny" / "lif-none-torch-s0" / "result.json"
    (out / "tiny" / "plif-none-torch-s0").mkdir()
    moved.rename(out / "tiny" / "plif-none-torch-s0" / "result.json")
    result = sweep(cli, tiny_protocol, out, cache_dir, "--neuron", "plif", "--seeds", "0")
    assert result.code == 2
    assert result.stderr.strip().endswith("plif-none-torch-s0/result.json holds a record of another configuration; use another --out")


def test_settings_give_the_sweep_folder_a_stable_suffix():
    from stxbench.cli.sweep_cells import settings_tag

    assert settings_tag([]) == ""
    tag = settings_tag(["train.epochs=3", "sparsity=0.9"])
    assert tag == settings_tag(["sparsity=0.9", "train.epochs=3"]) and tag.startswith("-set") and len(tag) == 12
    assert tag != settings_tag(["train.epochs=4", "sparsity=0.9"])


def test_sweep_says_before_any_run_which_runs_will_be_unofficial(cli, tiny_protocol, tmp_path, cache_dir):
    # tiny's seeds are 0 and 1: seed 2 and a protocol --set make unofficial records, said first
    result = sweep(cli, tiny_protocol, tmp_path / "s", cache_dir, "--neuron", "lif", "--pruner", "none",
                   "--seeds", "1,2", "--set", "finetune.epochs=0")
    assert result.code == 0, result.stderr
    first = result.stderr.splitlines()[0]
    assert first == ("note: 2 of 2 runs will be unofficial (--set finetune.epochs changes the protocol; seed(s) 2 "
                     "not among the protocol's (0, 1)): their records cannot go to the leaderboard")
    assert "the 2 finished record(s) are unofficial" in result.stdout
