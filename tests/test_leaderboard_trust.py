"""A leaderboard you cannot fool: one test per way of tampering with an entry that got past
`leaderboard check` before (issue 13), each caught by `check` or `check --rerun` naming the
field; strict record files for every command that reads one; re-runs of what changed since a
git revision; and a protocol that pins CPU numerics, run and re-run exactly."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import lb

from stxbench.measure.energy import cost_model
from stxbench.leaderboard.rerun import SHOWN_FIELDS
from stxbench.record.provenance import cpu_kind
from stxbench.record.schema import CpuNumerics, load_record

LIF, PLIF = "tiny__lif__none__torch__s0.json", "tiny__plif__none__torch__s0.json"


@pytest.fixture(scope="module")
def clean_board(tiny_runs, tmp_path_factory):
    from conftest import run_cli

    root = tmp_path_factory.mktemp("trust") / "leaderboards"
    paths = [str(tiny_runs.records[k]) for k in ("lif-s0", "plif-s0")]
    result = run_cli("leaderboard", "submit", *paths, "--root", str(root), "--protocol-dir", str(tiny_runs.protocol_dir))
    assert result.code == 0, result.stderr
    return root


@pytest.fixture
def board(clean_board, tmp_path):
    root = tmp_path / "leaderboards"
    shutil.copytree(clean_board, root)
    return root


def path_of(root: Path, name: str = LIF) -> Path:
    return root / "tiny" / "entries" / name


def edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2) + "\n")


def where(name: str = LIF) -> str:
    return f"leaderboards/tiny/entries/{name}"


def tampered_past_the_static_checks(cli, board, protocol_dir, name, change) -> None:
    """Apply a change that keeps the entry consistent with itself, re-render, and confirm that
    plain `check` (no re-run) cannot tell: only a re-run can."""
    edit(path_of(board, name), change)
    assert cli("leaderboard", "render", "--root", str(board)).code == 0
    static = lb(cli, "check", board, protocol_dir)
    assert static.code == 0, static.stdout


def rerun_lines(cli, board, protocol_dir, name) -> list[str]:
    result = lb(cli, "check", board, protocol_dir, "--rerun-only", name)
    assert result.code == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    assert all(line.startswith(f"{where(name)}: ") for line in lines), lines
    return [line.removeprefix(f"{where(name)}: ") for line in lines]


# -- holes only a re-run can see --------------------------------------------------------------


def test_five_more_correct_images_fail_the_rerun_by_count(board, tiny_runs, cli):
    def five_more(data):
        m = data["metrics"]
        m["correct"] += 5
        m["accuracy"] = m["correct"] / m["test_samples"]

    tampered_past_the_static_checks(cli, board, tiny_runs.protocol_dir, LIF, five_more)
    claimed = load_record(path_of(board)).metrics.correct
    lines = rerun_lines(cli, board, tiny_runs.protocol_dir, LIF)
    assert lines[0] == (f"metrics.correct: the re-run gets {claimed - 5} of 360 test images right, the entry "
                        f"claims {claimed}; must reproduce exactly on this CPU kind (the protocol pins no CPU "
                        "numerics: an entry made on another CPU kind cannot be checked here)")
    assert [line.split(": ")[0] for line in lines] == ["metrics.correct", "metrics.accuracy"]


def test_halved_firing_rates_fail_the_rerun(board, tiny_runs, cli):
    def halved(data):
        m = data["metrics"]
        m["firing_rate"] /= 2
        m["firing_rates"] = {name: rate / 2 for name, rate in m["firing_rates"].items()}

    tampered_past_the_static_checks(cli, board, tiny_runs.protocol_dir, PLIF, halved)
    lines = rerun_lines(cli, board, tiny_runs.protocol_dir, PLIF)
    fields = [line.split(": ")[0] for line in lines]
    layers = list(load_record(path_of(board, PLIF)).metrics.firing_rates)
    assert fields[:SHOWN_FIELDS] == ["metrics.firing_rate"] + [f"metrics.firing_rates.{n}" for n in layers][:SHOWN_FIELDS - 1]
    assert lines[SHOWN_FIELDS:] == [f"rerun: {1 + len(layers) - SHOWN_FIELDS} more field(s) differ"]


def test_a_dense_accuracy_of_one_fails_the_rerun(board, tiny_runs, cli):
    tampered_past_the_static_checks(cli, board, tiny_runs.protocol_dir, LIF, lambda d: d["metrics"].update(accuracy_dense=1.0))
    lines = rerun_lines(cli, board, tiny_runs.protocol_dir, LIF)
    assert len(lines) == 1 and lines[0].startswith("metrics.accuracy_dense: the re-run gives ")
    assert ", the entry claims 1.0; must reproduce exactly" in lines[0]


def cut_acs(data, factor: float, checkpoint: str | None = None) -> None:
    """ACs (layers, total, energy) scaled by ``factor``, consistently; the dense model's hash
    replaced, which used to switch the re-run to the loose "other CPU" comparison."""
    c = data["counts"]
    for layer in c["layers"]:
        if layer["kind"] == "ac":
            layer["effective_ops"] *= factor
    c["ac"] = sum(layer["effective_ops"] for layer in c["layers"] if layer["kind"] == "ac")
    data["energy"]["mj_per_sample"] = cost_model(data["energy"]["model_id"]).mj(c["mac"], c["ac"], c["ac_int"])
    if checkpoint:
        data["provenance"]["checkpoint_sha256"] = checkpoint


def test_an_edited_checkpoint_hash_does_not_loosen_the_rerun(board, tiny_runs, cli):
    tampered_past_the_static_checks(cli, board, tiny_runs.protocol_dir, LIF, lambda d: cut_acs(d, 0.91, "0" * 64))
    fields = [line.split(": ")[0] for line in rerun_lines(cli, board, tiny_runs.protocol_dir, LIF)]
    assert fields[:3] == ["counts.ac", "energy.mj_per_sample", "provenance.checkpoint_sha256"]
    # then the AC layers, up to the lines shown, and a last line counting the rest
    shown = fields[3:-1] if fields[-1] == "rerun" else fields[3:]
    assert shown and all(f.startswith("counts.layers[") and f.endswith(".effective_ops") for f in shown), fields


# -- strict files: refused by name, never a crash, never a pass -----------------------------------


def test_a_duplicate_metrics_key_is_refused(board, tiny_runs, cli):
    path = path_of(board)
    text = path.read_text()
    path.write_text(text.replace('"metrics": {', '"metrics": {"accuracy": 1.0},\n  "metrics": {', 1))
    result = lb(cli, "check", board, tiny_runs.protocol_dir)
    assert result.code == 1
    assert (f"{where()}: not a valid result record: metrics: duplicate key (a JSON object may hold a key once)"
            in result.stdout.splitlines())


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_a_non_finite_sparsity_is_refused(board, tiny_runs, cli, value):
    path = path_of(board)
    data = json.loads(path.read_text())
    old = f'"sparsity": {json.dumps(data["metrics"]["sparsity"])}'
    path.write_text(path.read_text().replace(old, f'"sparsity": {value}', 1))
    result = lb(cli, "check", board, tiny_runs.protocol_dir)
    assert result.code == 1
    assert (f"{where()}: not a valid result record: metrics.sparsity: {value} is not a finite number"
            in result.stdout.splitlines())


def test_a_40_mb_entry_of_bogus_firing_rate_keys_is_refused_at_once(board, tiny_runs, cli):
    path = path_of(board)
    text = path.read_text()
    bogus = ",".join(f'"bogus.layer.{i:07d}": 0.1' for i in range(1_500_000))
    path.write_text(text.replace('"firing_rates": {', '"firing_rates": {' + bogus + ",", 1))
    size = path.stat().st_size
    assert size > 40e6
    result = lb(cli, "check", board, tiny_runs.protocol_dir)
    assert result.code == 1
    assert f"{where()}: {size / 1e6:.1f} MB; a result record is at most 1 MiB" in result.stdout.splitlines()
    rendered = cli("leaderboard", "render", "--root", str(board))
    assert rendered.code == 0 and "warning: not rendered: " in rendered.stderr


def _rename_first_matrix(data):
    data["metrics"]["matrices"][0]["name"] = "blocks.0.attn.evil.linear"


def _bogus_rates(data):
    data["metrics"]["firing_rates"].update({f"bogus.{i}": 0.1 for i in range(4)})


def _bogus_module(data):
    data["counts"]["layers"][0]["module"] = "blocks.7.mlp.fc1.linear"


def _bogus_op(data):
    data["counts"]["layers"][0]["op"] = "magic"


@pytest.mark.parametrize("change, line", [
    (_bogus_rates, "metrics.firing_rates: 4 name(s) that are not neuron layers of spikformer-1-32: "
                   "bogus.0, bogus.1, bogus.2 (+1 more)"),
    (_rename_first_matrix, "metrics.matrices: 1 name(s) that are not ST-block matrices of spikformer-1-32: "
                           "blocks.0.attn.evil.linear"),
    (_bogus_module, "counts.layers: 1 name(s) that are not modules of spikformer-1-32: blocks.7.mlp.fc1.linear"),
    (_bogus_op, "counts.layers: 1 name(s) that are not ops that op counting counts: magic"),
    (lambda d: d["metrics"]["firing_rates"].pop("stem.neurons.0"),
     "metrics.firing_rates: no rate for the neuron layer(s) stem.neurons.0"),
    (lambda d: d["metrics"]["matrices"][0].update(shape=[64, 32]),
     "metrics.matrices[blocks.0.attn.q.linear].dense: 1024 but its shape [64, 32] holds 2048"),
    (lambda d: d["metrics"].update(accuracy_pruned=0.5001), "metrics.accuracy_pruned: 0.5001 is not a whole number"),
    (lambda d: d["metrics"].update(sparsity=0.9), "metrics.sparsity: 0.9 but its matrices give"),
    (lambda d: d["metrics"]["firing_rates"].update({"stem.neurons.0": 1.5}),
     "metrics.firing_rates[stem.neurons.0]: 1.5 is not a fraction in [0, 1]"),
    (lambda d: d["metrics"].update(test_samples=400, accuracy=d["metrics"]["correct"] / 400),
     "metrics.test_samples: 400, but the protocol's test split holds 360"),
    (lambda d: d["counts"].update(samples=100),
     "counts.samples: 100 (test[:360]), but the protocol counts the first 360 test samples"),
])
def test_per_layer_names_and_figures_must_be_the_models(board, tiny_runs, cli, change, line):
    edit(path_of(board), change)
    result = lb(cli, "check", board, tiny_runs.protocol_dir)
    assert result.code == 1
    assert any(out.startswith(f"{where()}: {line}") for out in result.stdout.splitlines()), result.stdout


def test_a_non_utf8_entry_is_one_line_for_check_and_render(board, tiny_runs, cli):
    path = path_of(board)
    raw = path.read_bytes()
    offset = raw.index(b'"lif"') + 2
    path.write_bytes(raw[:offset] + b"\xff" + raw[offset + 1:])
    result = lb(cli, "check", board, tiny_runs.protocol_dir)
    assert result.code == 1 and "Traceback" not in result.stderr
    assert f"{where()}: not UTF-8: byte 0xff at offset {offset}" in result.stdout.splitlines()
    rendered = cli("leaderboard", "render", "--root", str(board))
    assert rendered.code == 0, rendered.stderr
    assert rendered.stderr == f"warning: not rendered: {where()}: not UTF-8: byte 0xff at offset {offset}\n"


BAD_FILES = {
    "deep": (lambda raw: b"[" * 200_000 + b"]" * 200_000, "not a result record: nested deeper than 16 levels"),
    "latin1": (lambda raw: raw.replace(b'"lif"', b'"l\xeff"', 1), "not UTF-8: byte 0xef at offset "),
}


@pytest.mark.parametrize("kind", BAD_FILES)
@pytest.mark.parametrize("command", ["energy", "compare", "submit"])
def test_every_command_that_reads_a_record_refuses_a_bad_file_in_one_line(tmp_path, tiny_runs, cli, command, kind):
    make, message = BAD_FILES[kind]
    bad = tmp_path / "bad.json"
    bad.write_bytes(make(tiny_runs.records["lif-s0"].read_bytes()))
    args = {"energy": ["energy", str(bad)], "compare": ["compare", str(tiny_runs.records["lif-s0"]), str(bad)],
            "submit": ["leaderboard", "submit", str(bad), "--root", str(tmp_path / "lb")]}[command]
    result = cli(*args)
    assert result.code == 2 and result.stderr.count("\n") == 1, result.stderr
    prefix = "refused " if command == "submit" else "error: "
    assert result.stderr.startswith(f"{prefix}{bad}: {message}")
    assert not (tmp_path / "lb").exists()


# -- CI: re-run what changed --------------------------------------------------------------------

MANY = """
name = "many"
cpu_cheap = true
seeds = [{seeds}]
[data]
dataset = "digits"
[model]
name = "spikformer-1-16"
T = 1
[model.options]
pools = 2
[train]
epochs = 0
batch_size = 360
lr = 1e-3
[finetune]
epochs = 0
batch_size = 360
lr = 1e-3
[eval]
batch_size = 360
count_samples = 16
"""


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_rerun_changed_reruns_all_20_added_entries_and_names_the_tampered_one(tmp_path, cli):
    """An untrained model (0 epochs) keeps each re-run to an evaluation: 21 runs, 20 re-runs."""
    repo, protocols = tmp_path / "repo", tmp_path / "protocols"
    protocols.mkdir()
    (protocols / "many.toml").write_text(MANY.format(seeds=", ".join(map(str, range(21)))))
    root = repo / "leaderboards"
    records = []
    for seed in range(21):
        out = tmp_path / "runs" / f"s{seed}"
        result = cli("run", "--protocol", str(protocols / "many.toml"), "--seed", str(seed), "--threads", "1",
                     "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "-q")
        assert result.code == 0, result.stderr
        records.append(str(out / "result.json"))
    git(tmp_path, "init", "-q", str(repo))
    assert lb(cli, "submit", root, protocols, records[0]).code == 0
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "one entry")
    base = git(repo, "rev-parse", "HEAD")
    assert lb(cli, "submit", root, protocols, *records[1:]).code == 0
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "20 entries")
    tampered = "many__lif__none__torch__s13.json"
    edit(root / "many" / "entries" / tampered, lambda d: d["metrics"].update(accuracy_dense=1.0))
    assert cli("leaderboard", "render", "--root", str(root)).code == 0
    git(repo, "commit", "-q", "-am", "better")
    assert lb(cli, "check", root, protocols).code == 0  # consistent with itself

    result = lb(cli, "check", root, protocols, "--rerun-changed", base)
    assert result.code == 1, result.stderr
    assert result.stderr.startswith(f"20 entries added or modified since {base}\n")
    assert result.stderr.count("re-running ") == 20 and "s0.json" not in result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"leaderboards/many/entries/{tampered}: metrics.accuracy_dense: the re-run gives 0.")
    # with the audit: one entry that did not change is re-run too. The commit chooses it, and
    # could choose the tampered one (1 in 21): the audit runs on the board as it was before.
    git(repo, "revert", "--no-edit", "HEAD")
    audit = lb(cli, "check", root, protocols, "--rerun-changed", "HEAD", "--rerun-one")
    assert audit.code == 0, audit.stdout + audit.stderr
    assert "audit: also re-running many__lif__none__torch__s" in audit.stderr
    assert audit.stdout.startswith("ok: 21 entries in 1 protocol(s), 1 re-run")


@pytest.mark.parametrize("base, message", [
    ("nope", "--rerun-changed nope: not a commit of this repository (give a commit, branch or tag, e.g. HEAD~3 or origin/main)"),
    ("--output=x", "--rerun-changed '--output=x': not a git revision (give a commit, branch or tag, e.g. HEAD~3)"),
])
def test_rerun_changed_refuses_a_bad_base_in_one_line(clean_board, tiny_runs, cli, tmp_path, base, message):
    repo = tmp_path / "repo"
    shutil.copytree(clean_board, repo / "leaderboards")
    git(tmp_path, "init", "-q", str(repo))
    result = lb(cli, "check", repo / "leaderboards", tiny_runs.protocol_dir, "--rerun-changed", base)
    assert result.code == 2 and result.stderr == f"error: {message}\n"
    outside = lb(cli, "check", clean_board, tiny_runs.protocol_dir, "--rerun-changed", "HEAD")
    assert outside.code == 2 and outside.stderr.startswith("error: --rerun-changed: ")
    assert outside.stderr.endswith("is not in a git checkout\n")


def test_a_rerun_budget_lists_what_it_leaves_out(clean_board, tiny_runs, cli):
    result = lb(cli, "check", clean_board, tiny_runs.protocol_dir, "--rerun", "--rerun-budget", "0")
    assert result.code == 0, result.stdout
    assert result.stdout.startswith("ok: 2 entries in 1 protocol(s), 0 re-run")
    for name in (LIF, PLIF):
        assert f"not re-run: {name}: over the re-run budget of 0 min\n" in result.stderr
    assert "re-ran 0 entries in " in result.stderr and ", 2 left out by the budget" in result.stderr


def test_an_entry_that_fails_the_static_checks_is_not_rerun(board, tiny_runs, cli):
    edit(path_of(board), lambda d: d["metrics"]["firing_rates"].update({f"bogus.{i}": 0.1 for i in range(20_000)}))
    result = lb(cli, "check", board, tiny_runs.protocol_dir, "--rerun-only", LIF)
    assert result.code == 1
    assert result.stdout.splitlines()[0].startswith(f"{where()}: metrics.firing_rates: 20000 name(s) that are not ")
    assert f"not re-run: {LIF}: it fails the checks above\n" in result.stderr
    assert "re-running" not in result.stderr and "(2 entries in 1 protocol(s), 0 re-run)" in result.stderr


def test_reruns_train_each_dense_model_first_then_cover_every_row(tiny_runs):
    from stxbench.leaderboard.rerun import schedule
    from stxbench.leaderboard.store import Entry

    base = load_record(tiny_runs.records["lif-s0"])

    def entry(neuron: str, seed: int) -> Entry:
        config = base.config.model_copy(update={"neuron": neuron, "seed": seed})
        return Entry(Path(f"{neuron}-s{seed}.json"), base.model_copy(update={"config": config}))

    entries = [entry(n, s) for n in ("lif", "plif", "slif") for s in (0, 1)]
    orders = set()
    for commit in ("a", "b", "c", "d"):
        first, rest = schedule(entries, commit)
        assert sorted(e.record.config.seed for e in first) == [0, 1]  # one dense model each
        rows = [e.record.config.neuron for e in first + rest]
        uncovered = 3 - len(set(rows[:2]))  # rows the dense-model wave did not reach come next
        assert set(rows[:2 + uncovered]) == {"lif", "plif", "slif"}
        assert len(first + rest) == 6
        orders.add(tuple(e.path.name for e in first + rest))
    assert len(orders) > 1  # the commit draws the order


# -- a protocol that pins CPU numerics --------------------------------------------------------


PINNED = """
name = "pinned"
cpu_cheap = true
cpu_pin = "portable-v2"
seeds = [0, 1]
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
epochs = 1
batch_size = 128
lr = 1e-3
[eval]
batch_size = 360
"""


def test_a_pinned_protocol_runs_under_its_pin_and_reruns_exactly(tmp_path, cli):
    """`stxbench sweep` starts itself again with the pin's environment; the records say so; a
    re-run (a fresh pinned process each, two at a time) reproduces the clean entry bit for bit
    and names what an edited dense-model hash with 9 % fewer ACs claims."""
    protocols = tmp_path / "protocols"
    protocols.mkdir()
    (protocols / "pinned.toml").write_text(PINNED)
    result = cli("sweep", "--protocol", str(protocols / "pinned.toml"), "--neuron", "lif", "--pruner", "none",
                 "--seeds", "0,1", "--threads", "1", "--out", str(tmp_path / "runs"), "--cache-dir",
                 str(tmp_path / "cache"), "-q")
    assert result.code == 0, result.stderr
    assert "[2/2] lif-none-torch-s1: running" in result.stderr  # the pinned process's output, relayed
    records = sorted((tmp_path / "runs").glob("pinned/*/result.json"))
    assert len(records) == 2
    for path in records:
        assert load_record(path).provenance.cpu_numerics == CpuNumerics(
            pin="portable-v2", aten_capability="AVX2", mkl_branch="COMPATIBLE", mkldnn=False, ieee_sqrt=True,
            cpu_kind=cpu_kind())
    root = tmp_path / "leaderboards"
    assert lb(cli, "submit", root, protocols, *map(str, records)).code == 0
    clean, tampered = "pinned__lif__none__torch__s0.json", "pinned__lif__none__torch__s1.json"
    edit(root / "pinned" / "entries" / tampered, lambda d: cut_acs(d, 0.91, "0" * 64))
    assert cli("leaderboard", "render", "--root", str(root)).code == 0
    assert lb(cli, "check", root, protocols).code == 0  # consistent with itself
    result = lb(cli, "check", root, protocols, "--rerun", "--jobs", "2")
    assert result.code == 1, result.stderr
    at = f"leaderboards/pinned/entries/{tampered}: "
    lines = result.stdout.splitlines()
    assert all(line.startswith(at) for line in lines), lines  # the clean entry reproduces
    fields = [line.removeprefix(at).split(": ")[0] for line in lines]
    assert fields[:3] == ["counts.ac", "energy.mj_per_sample", "provenance.checkpoint_sha256"]
    assert lines[0].endswith("must reproduce exactly (the protocol pins CPU numerics)")
    # an entry that does not say it ran under the pin is refused without a re-run
    edit(root / "pinned" / "entries" / clean, lambda d: d["provenance"].update(cpu_numerics=None))
    static = lb(cli, "check", root, protocols)
    assert (f"leaderboards/pinned/entries/{clean}: provenance.cpu_numerics: missing: protocol pinned pins CPU "
            "numerics (portable-v2)") in static.stdout


def test_a_pinned_cpu_run_is_refused_in_a_process_without_the_pin(tmp_path):
    from stxbench.run.errors import RunFailed
    from stxbench.host.plugin_host import PluginHost
    from stxbench.run.resolve import resolve
    from stxbench.run.config import RunOptions
    from stxbench.run.stages import execute

    protocol = tmp_path / "pinned.toml"
    protocol.write_text(PINNED)
    host = PluginHost(())
    config = resolve(host, protocol=str(protocol), neuron="lif", pruner="none", backend="torch", seed=0, settings=[],
                     out_dir=tmp_path / "out", options=RunOptions(device="cpu", cache_dir=tmp_path / "cache"))
    import torch

    mkldnn = torch.backends.mkldnn.enabled
    with pytest.raises(RunFailed, match=r"^the protocol pins CPU numerics \(portable-v2\) but this process does "
                                        r"not run them: "):
        execute(config, host)
    assert torch.backends.mkldnn.enabled == mkldnn  # a refused process is left as it was
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_every_pin_a_protocol_can_name_is_defined():
    import typing

    from stxbench.run.cpu_pin import PINS
    from stxbench.run.protocol import Protocol

    names = {a for a in typing.get_args(Protocol.model_fields["cpu_pin"].annotation) if a is not type(None)}
    assert {arg for name in names for arg in typing.get_args(name)} == set(PINS)
