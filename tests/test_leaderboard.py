"""The leaderboard as a user and CI drive it: submit (and what it refuses), check (and every
tampering it catches, naming the field), re-runs that must reproduce an entry."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from stxbench.measure.energy import cost_model
from stxbench.run.errors import UsageError
from stxbench.leaderboard.rerun import Tolerances, compare_exact, compare_tolerant, pick_one
from stxbench.leaderboard.store import Entry, ProtocolLookup
from stxbench.record.schema import load_record, write_record

ENTRIES = ("tiny__lif__none__torch__s0.json", "tiny__lif__none__torch__s1.json",
           "tiny__plif__none__torch__s0.json")


def lb(cli, command: str, root: Path, runs, *args: str):
    return cli("leaderboard", command, "--root", str(root), "--protocol-dir", str(runs.protocol_dir), *args)


@pytest.fixture(scope="module")
def clean_board(tiny_runs, tmp_path_factory):
    from conftest import run_cli

    root = tmp_path_factory.mktemp("board") / "leaderboards"
    paths = [str(tiny_runs.records[k]) for k in ("lif-s0", "lif-s1", "plif-s0")]
    result = run_cli("leaderboard", "submit", *paths, "--root", str(root),
                     "--protocol-dir", str(tiny_runs.protocol_dir))
    assert result.code == 0, result.stderr
    return root, result


@pytest.fixture
def board(clean_board, tmp_path):
    """A private copy of the clean board, to tamper with."""
    root = tmp_path / "leaderboards"
    shutil.copytree(clean_board[0], root)
    return root


def entry(root: Path, name: str = ENTRIES[0]) -> Path:
    return root / "tiny" / "entries" / name


def edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2) + "\n")


# -- submit ---------------------------------------------------------------------------------


def test_submit_files_entries_under_stable_names_and_renders(clean_board):
    root, result = clean_board
    names = sorted(p.name for p in (root / "tiny" / "entries").iterdir())
    assert names == sorted(ENTRIES)
    assert result.stdout.count("submitted ") == 3 and "rendered " in result.stdout
    assert {p.name for p in (root / "tiny").iterdir()} == {"entries", "README.md", "accuracy_energy.png",
                                                          "energy_breakdown.png", "accuracy_params.png"}
    assert (root / "README.md").is_file()


def test_a_clean_board_passes_check(clean_board, tiny_runs, cli):
    result = lb(cli, "check", clean_board[0], tiny_runs)
    assert result.code == 0, result.stdout + result.stderr
    assert result.stdout == "ok: 3 entries in 1 protocol(s), 0 re-run; rendered files up to date\n"


def test_an_entry_keeps_the_record_exactly(clean_board, tiny_runs):
    submitted = load_record(entry(clean_board[0]))
    assert submitted == load_record(tiny_runs.records["lif-s0"])


def test_resubmitting_skips_and_a_different_record_of_the_same_run_is_a_duplicate(board, tiny_runs, cli, tmp_path):
    same = lb(cli, "submit", board, tiny_runs, str(tiny_runs.records["lif-s0"]))
    assert same.code == 0 and same.stdout.startswith("already submitted ")
    other = tmp_path / "other.json"
    record = load_record(tiny_runs.records["lif-s0"])
    write_record(record.model_copy(update={"timing": record.timing.model_copy(update={"eval_s": 99.0})}), other)
    before = entry(board).read_bytes()
    dup = lb(cli, "submit", board, tiny_runs, str(other))
    assert dup.code == 2 and dup.stderr.count("\n") == 1
    assert dup.stderr.startswith(f"refused {other}: duplicate: leaderboards/tiny/entries/{ENTRIES[0]} already holds "
                                 "tiny / lif / none / torch / seed 0")
    assert entry(board).read_bytes() == before
    replaced = lb(cli, "submit", board, tiny_runs, str(other), "--replace")
    assert replaced.code == 0 and load_record(entry(board)).timing.eval_s == 99.0


def test_the_same_run_twice_in_one_batch_is_refused_once(tmp_path, tiny_runs, cli):
    root = tmp_path / "lb"
    path = str(tiny_runs.records["plif-s0"])
    copy = tmp_path / "copy.json"
    shutil.copy(path, copy)
    result = lb(cli, "submit", root, tiny_runs, path, str(copy))
    assert result.code == 2
    assert result.stderr == f"refused {copy}: duplicate: {path} in this batch is the same run " \
                            "(tiny / plif / none / torch / seed 0)\n"
    assert [p.name for p in (root / "tiny" / "entries").iterdir()] == [ENTRIES[2]]


def _drop_metric(data):
    del data["metrics"]["accuracy"]


def _seed_7(data):
    data["config"]["seed"] = 7


def _other_protocol(data):
    data["protocol"]["name"] = "tinny"


@pytest.mark.parametrize("which, change, reason", [
    ("unofficial", None, "protocol.official: the run is unofficial; only official runs enter a leaderboard (+1 more)"),
    ("uncounted", None, "counts: missing: a leaderboard entry shows energy, so it needs op counts and energy"),
    ("lif-s0", _drop_metric, "not a valid result record: metrics.accuracy: Field required"),
    ("lif-s0", _seed_7, "config.seed: seed 7 is not one of protocol tiny's seeds [0, 1]"),
    ("lif-s0", _other_protocol, "protocol.name: unknown protocol 'tinny'; did you mean 'tiny'?"),
])
def test_submit_refuses_with_one_line(tmp_path, tiny_runs, cli, which, change, reason):
    source = tiny_runs.uncounted if which == "uncounted" else tiny_runs.records[which]
    path = tmp_path / "result.json"
    shutil.copy(source, path)
    if change:
        edit(path, change)
    root = tmp_path / "lb"
    result = lb(cli, "submit", root, tiny_runs, str(path))
    assert result.code == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"refused {path}: {reason}"), result.stderr
    assert result.stdout == "" and not root.exists()


@pytest.mark.parametrize("content, reason", [
    (None, "no such file"),
    ("{not json", "not JSON: Expecting property name enclosed in double quotes at line 1"),
    ('{"schema_version": 1}', "not a valid result record: protocol: Field required (+6 more)"),
])
def test_submit_refuses_unreadable_files(tmp_path, tiny_runs, cli, content, reason):
    path = tmp_path / "result.json"
    if content is not None:
        path.write_text(content)
    result = lb(cli, "submit", tmp_path / "lb", tiny_runs, str(path))
    assert result.code == 2
    assert result.stderr == f"refused {path}: {reason}\n"
    assert not (tmp_path / "lb").exists()


def test_submit_takes_the_good_records_of_a_mixed_batch(tmp_path, tiny_runs, cli):
    result = lb(cli, "submit", tmp_path / "lb", tiny_runs, str(tiny_runs.records["unofficial"]),
                str(tiny_runs.records["lif-s1"]))
    assert result.code == 2 and result.stderr.startswith(f"refused {tiny_runs.records['unofficial']}: ")
    assert [p.name for p in (tmp_path / "lb" / "tiny" / "entries").iterdir()] == [ENTRIES[1]]


# -- check: tampering -----------------------------------------------------------------------


def an_ac_layer(data) -> dict:
    return next(layer for layer in data["counts"]["layers"] if layer["kind"] == "ac")


def _one_layer(data):
    an_ac_layer(data)["effective_ops"] += 1


TAMPERING = [
    (lambda d: d["metrics"].update(accuracy=0.99), "metrics.accuracy: 0.99 is not correct/test_samples"),
    (lambda d: d["energy"].update(mj_per_sample=d["energy"]["mj_per_sample"] * 1.01),
     "energy.mj_per_sample: "),
    (lambda d: d["energy"].update(e_ac_pj=0.5), "energy.e_ac_pj: 0.5 but cost table horowitz45-fp32-v1 says 0.9"),
    (lambda d: d["counts"].update(mac=d["counts"]["mac"] + 1), "counts.mac: "),
    (_one_layer, "counts.ac: "),
    (lambda d: d["protocol"].update(sha256="0" * 64),
     "protocol.sha256: stale: run under protocol hash 000000000000, the current tiny protocol hashes to "),
    (lambda d: d["provenance"]["code"].update({"stxbench_backend_torch": "f" * 64}),
     "provenance.code[stxbench_backend_torch]: stale: the code of plugin stxbench_backend_torch changed since the run "
     "(ffffffffffff -> "),
    (lambda d: d["provenance"]["code"].update({"gone": "f" * 64}),
     "provenance.code[gone]: stale: no installed plugin package gone; install it (or vendor it under plugins/)"),
    (lambda d: d["provenance"].update({"code": None}),
     "provenance.code: stale: made before stxbench recorded its code identity"),
    (lambda d: d["config"].update(T=4), "config.T: 4 but protocol tiny pins 2"),
    (lambda d: d["config"].update(seed=1), "file name: its content names it tiny__lif__none__torch__s1.json"),
    (lambda d: d.update(counts=None), "counts: missing"),
    (lambda d: d["metrics"].pop("firing_rate"), "not a valid result record: metrics.firing_rate: Field required"),
]


@pytest.mark.parametrize("change, message", TAMPERING)
def test_check_names_the_tampered_field(board, tiny_runs, cli, change, message):
    edit(entry(board), change)
    result = lb(cli, "check", board, tiny_runs)
    assert result.code == 1
    assert f"leaderboards/tiny/entries/{ENTRIES[0]}: {message}" in result.stdout, result.stdout
    assert result.stderr.startswith("error: leaderboard check found ")


def test_check_finds_misfiled_renamed_and_duplicate_entries(board, tiny_runs, cli):
    entries = board / "tiny" / "entries"
    shutil.copy(entries / ENTRIES[0], entries / "copy.json")
    (board / "other" / "entries").mkdir(parents=True)
    shutil.copy(entries / ENTRIES[1], board / "other" / "entries" / ENTRIES[1])
    (entries / "notes.txt").write_text("hello")
    lines = lb(cli, "check", board, tiny_runs).stdout.splitlines()
    assert "leaderboards/tiny/entries/copy.json: file name: its content names it tiny__lif__none__torch__s0.json" in lines
    assert f"leaderboards/tiny/entries/copy.json: duplicate: the same run as leaderboards/tiny/entries/{ENTRIES[0]}" in lines
    assert not any(line.startswith(f"leaderboards/tiny/entries/{ENTRIES[0]}: ") for line in lines)
    assert f"leaderboards/other/entries/{ENTRIES[1]}: protocol.name: 'tiny', but the entry is filed under other/" in lines
    assert "leaderboards/tiny/entries/notes.txt: not an entry: only .json result records belong here" in lines


def test_check_wants_the_rendered_files_current(board, tiny_runs, cli):
    readme = board / "tiny" / "README.md"
    readme.write_text(readme.read_text().replace("| 1 ", "| 9 ", 1))
    (board / "tiny" / "accuracy_energy.png").write_bytes(b"not a png")
    result = lb(cli, "check", board, tiny_runs)
    assert result.code == 1
    assert result.stdout.splitlines() == [
        "leaderboards/tiny/README.md: out of date: run `stxbench leaderboard render`",
        "leaderboards/tiny/accuracy_energy.png: out of date: run `stxbench leaderboard render`",
    ]
    assert cli("leaderboard", "render", "--root", str(board)).code == 0
    assert lb(cli, "check", board, tiny_runs).code == 0


def test_check_of_an_empty_leaderboard_passes_and_a_missing_one_is_refused(tmp_path, cli):
    root = tmp_path / "lb"
    assert cli("leaderboard", "render", "--root", str(root)).code == 0
    result = cli("leaderboard", "check", "--root", str(root), "--rerun-one")
    assert result.code == 0 and result.stdout.startswith("ok: 0 entries")
    missing = cli("leaderboard", "check", "--root", str(tmp_path / "nope"))
    assert missing.code == 2 and missing.stderr == f"error: --root {tmp_path / 'nope'}: no leaderboard folder there\n"


def test_protocols_are_found_by_name_and_builtins_cannot_be_shadowed(tmp_path, clean_board, cli):
    without = cli("leaderboard", "check", "--root", str(clean_board[0]))
    assert without.code == 1
    assert f"leaderboards/tiny/entries/{ENTRIES[0]}: protocol.name: unknown protocol 'tiny'" in without.stdout
    (tmp_path / "digits.toml").write_text("name = 'digits'\n")
    with pytest.raises(UsageError, match=f"^{tmp_path / 'digits.toml'} would shadow the built-in protocol 'digits'"):
        ProtocolLookup([tmp_path]).get("digits")
    assert ProtocolLookup().get("digits").name == "digits"


# -- check --rerun --------------------------------------------------------------------------


def test_rerun_reproduces_a_clean_entry(clean_board, tiny_runs, cli):
    result = lb(cli, "check", clean_board[0], tiny_runs, "--rerun-only", ENTRIES[2])
    assert result.code == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ok: 3 entries in 1 protocol(s), 1 re-run")


def test_rerun_catches_numbers_that_only_a_rerun_can(board, tiny_runs, cli):
    def better_and_cheaper(data):  # consistent with itself: the static checks cannot tell
        m, c = data["metrics"], data["counts"]
        m["correct"] += 36
        m["accuracy"] = m["correct"] / m["test_samples"]
        an_ac_layer(data)["effective_ops"] -= 1
        c["ac"] -= 1
        data["energy"]["mj_per_sample"] = cost_model("fp32").mj(c["mac"], c["ac"], c["ac_int"])

    edit(entry(board, ENTRIES[2]), better_and_cheaper)
    assert cli("leaderboard", "render", "--root", str(board)).code == 0
    static = lb(cli, "check", board, tiny_runs)
    assert static.code == 0, static.stdout
    result = lb(cli, "check", board, tiny_runs, "--rerun-only", "tiny__plif__*")
    assert result.code == 1
    where = f"leaderboards/tiny/entries/{ENTRIES[2]}"
    fields = [line.removeprefix(f"{where}: ").split(": ")[0] for line in result.stdout.splitlines()]
    layer = next(f for f in fields if f.startswith("counts.layers["))
    assert fields == ["metrics.correct", "metrics.accuracy", "counts.ac", "energy.mj_per_sample", layer]
    assert layer.endswith(":ac].effective_ops")
    correct = load_record(entry(board, ENTRIES[2])).metrics.correct
    assert result.stdout.startswith(f"{where}: metrics.correct: the re-run gets {correct - 36} of 360 test images "
                                    f"right, the entry claims {correct}; must reproduce exactly on this CPU kind")


def test_a_cpu_rerun_needs_every_figure_exactly(tiny_runs):
    entry = load_record(tiny_runs.records["lif-s0"])
    data = entry.model_dump(mode="json")
    data["counts"]["ac"] *= 1.001
    data["metrics"]["firing_rates"]["stem.neurons.0"] *= 1.001
    data["config"]["surrogate_alpha"] = 4.0  # what the entry says it ran must be what ran
    found = compare_exact(entry, type(entry).model_validate(data), pinned=True)
    assert [p.field for p in found] == ["counts.ac", "config.surrogate_alpha", "metrics.firing_rates.stem.neurons.0"]
    assert found[0].message.endswith("must reproduce exactly (the protocol pins CPU numerics)")
    assert compare_exact(entry, entry, pinned=False) == []


def rerun_on_a_gpu(record, ac_factor: float, dense_delta: float = 0.0, correct_delta: int = 0):
    """The record as a GPU re-run might give it: another dense model, ACs and firing rates scaled
    by ``ac_factor``, the first counted layer's dense products shifted by ``dense_delta``,
    ``correct_delta`` more images right."""
    data = record.model_dump(mode="json")
    data["provenance"]["checkpoint_sha256"] = "0" * 64
    counts, m = data["counts"], data["metrics"]
    counts["ac"] *= ac_factor
    counts["layers"][0]["dense_ops"] += dense_delta
    m["firing_rate"] *= ac_factor
    m["correct"] += correct_delta
    m["accuracy"] = m["correct"] / m["test_samples"]
    for layer in counts["layers"]:
        if layer["kind"] == "ac":
            layer["effective_ops"] *= ac_factor
            layer["input_rate"] *= ac_factor
    for op in counts["ops"]:
        op["nonzero_pairs"] *= ac_factor
    counts["layers"][0]["dense_ops"] += dense_delta
    return type(record).model_validate(data)


def test_a_gpu_rerun_allows_spike_drift_within_the_protocols_tolerances(tiny_runs):
    entry = load_record(tiny_runs.records["lif-s0"])
    tol = Tolerances(accuracy=0.05, rtol=0.10)  # tiny's accuracy_tolerance, the default rerun_rtol
    assert entry.counts.ac > 0
    assert compare_tolerant(entry, rerun_on_a_gpu(entry, 1.03, correct_delta=18), tol) == []
    too_far = compare_tolerant(entry, rerun_on_a_gpu(entry, 1.2), tol)
    assert [p.field for p in too_far][:2] == ["metrics.firing_rate", "counts.ac"]
    assert too_far[1].message.endswith("differs by more than the protocol's rerun_rtol 10%")
    images = compare_tolerant(entry, rerun_on_a_gpu(entry, 1.0, correct_delta=19), tol)
    assert [p.field for p in images] == ["metrics.correct"]
    assert "19 test images apart, more than the protocol's accuracy_tolerance 0.05 (18.0 images)" in images[0].message
    # what spikes cannot move must still agree exactly
    first = entry.counts.layers[0].module
    dense = compare_tolerant(entry, rerun_on_a_gpu(entry, 1.0, dense_delta=1.0), tol)
    assert [p.field for p in dense] == [f"counts.modules[{first}].layer_dense_ops"]
    assert dense[0].message.endswith("spikes cannot move it: must agree exactly")


def test_rerun_only_must_match_an_entry(clean_board, tiny_runs, cli):
    result = lb(cli, "check", clean_board[0], tiny_runs, "--rerun-only", "nothing*")
    assert result.code == 2 and result.stderr.startswith("error: --rerun-only nothing*: no entry matches")


def test_ci_picks_one_entry_by_commit(tmp_path):
    entries = [Entry(tmp_path / name, None) for name in ("c.json", "a.json", "b.json")]
    assert pick_one([], "abc") is None
    assert pick_one(entries, None).path.name == "a.json"
    picks = {pick_one(entries, f"{i:040x}").path.name for i in range(20)}
    assert picks == {"a.json", "b.json", "c.json"}  # successive commits cover every entry
    assert pick_one(entries, "1234") == pick_one(list(reversed(entries)), "1234+dirty")
