"""Evidence that travels (issue 22): code identity that means numbers, verification receipts, and
a CI check that fails rather than passes an entry no one re-ran."""

from __future__ import annotations

import json
import shutil
import sys
import types
from pathlib import Path

import pytest

from helpers import lb

from stxbench.record import code_identity
from stxbench.record.code_identity import NUMBERS_PATH, PRESENTATION, file_digest, installed_identity, normalized_tree
from stxbench.leaderboard import receipts
from stxbench.record.provenance import cpu_kind

LIF, PLIF = "tiny__lif__none__torch__s0.json", "tiny__plif__none__torch__s0.json"

SOURCE = '''"""A module."""
import math

RATE = 0.5  # the decay


def decay(x):
    """Halve it."""
    return x * RATE + math.pi
'''


# -- code identity ------------------------------------------------------------------------------


@pytest.mark.parametrize("edit", [
    lambda s: s.replace("# the decay", "# the decay per step, as in Spikformer"),
    lambda s: s.replace('"""Halve it."""', '"""Halve it, then add pi:\n    a docstring that grew."""'),
    lambda s: s.replace("x * RATE + math.pi", "(x * RATE\n            + math.pi)"),
    lambda s: s.replace('"""A module."""\n', ""),
    lambda s: s + "\n\n# a trailing comment\n",
])
def test_comments_docstrings_and_formatting_change_no_digest(edit):
    assert normalized_tree(edit(SOURCE)) == normalized_tree(SOURCE)


@pytest.mark.parametrize("edit", [
    lambda s: s.replace("RATE = 0.5", "RATE = 0.25"),
    lambda s: s.replace("x * RATE + math.pi", "x * RATE - math.pi"),
    lambda s: s.replace("math.pi", "math.e"),
    lambda s: s.replace("def decay(x):", "def decay(x, y=1):"),
])
def test_code_changes_change_the_digest(edit):
    assert normalized_tree(edit(SOURCE)) != normalized_tree(SOURCE)


def test_a_plugin_package_digest_follows_code_not_comments(tmp_path):
    package = tmp_path / "stxbench_neuron_probe"
    package.mkdir()
    (package / "__init__.py").write_text(SOURCE)
    module = types.ModuleType("stxbench_neuron_probe")
    module.__file__ = str(package / "__init__.py")
    before = installed_identity(module)
    (package / "__init__.py").write_text(SOURCE.replace("# the decay", "# reworded"))
    assert installed_identity(module) == before
    (package / "helpers.py").write_text("SCALE = 2\n")  # a new file of the package counts
    assert installed_identity(module) != before


def test_every_core_module_is_classified_once():
    """A new core module must be declared on the numbers path or as presentation."""
    root = code_identity._core_root()
    every = {p.relative_to(root).as_posix() for p in root.rglob("*.py") if "__pycache__" not in p.parts}
    numbers = set(code_identity.core_files(NUMBERS_PATH))
    presentation = set(code_identity.core_files(PRESENTATION))
    assert numbers.isdisjoint(presentation), numbers & presentation
    assert every == numbers | presentation, sorted(every - numbers - presentation)
    assert {"run/training.py", "measure/counting.py", "measure/op_rules.py", "measure/energy.py", "run/stages.py",
            "run/cpu_pin.py"} <= numbers


# -- staleness through `leaderboard check` ------------------------------------------------------


@pytest.fixture(scope="module")
def verified_board(tiny_runs, tmp_path_factory):
    """The tiny lif and plif entries, each re-run once and holding the receipt it wrote."""
    from conftest import run_cli

    root = tmp_path_factory.mktemp("verified") / "leaderboards"
    paths = [str(tiny_runs.records[k]) for k in ("lif-s0", "plif-s0")]
    assert run_cli("leaderboard", "submit", *paths, "--root", str(root),
                   "--protocol-dir", str(tiny_runs.protocol_dir)).code == 0
    result = lb(run_cli, "check", root, tiny_runs.protocol_dir, "--rerun")
    assert result.code == 0, result.stdout + result.stderr
    return root


@pytest.fixture
def board(verified_board, tmp_path):
    root = tmp_path / "leaderboards"
    shutil.copytree(verified_board, root)
    return root


def core_copy(tmp_path: Path, monkeypatch, edit) -> None:
    """Make the code identity read a copy of the core with one file edited."""
    copy = tmp_path / "core"
    shutil.copytree(code_identity._core_root(), copy, ignore=shutil.ignore_patterns("__pycache__"))
    path = copy / "run" / "training.py"
    path.write_text(edit(path.read_text()))
    monkeypatch.setattr(code_identity, "_core_root", lambda: copy)


def test_a_comment_edit_in_a_core_module_stales_nothing(board, tiny_runs, cli, tmp_path, monkeypatch):
    core_copy(tmp_path, monkeypatch, lambda s: s.replace("def lr_factor(", "# a new comment\ndef lr_factor(", 1))
    result = lb(cli, "check", board, tiny_runs.protocol_dir, "--require-verified")
    assert result.code == 0, result.stdout


def test_a_changed_constant_in_a_core_module_stales_every_entry(board, tiny_runs, cli, tmp_path, monkeypatch):
    core_copy(tmp_path, monkeypatch, lambda s: s.replace("0.5 * (1.0 + math.cos", "0.49 * (1.0 + math.cos", 1))
    result = lb(cli, "check", board, tiny_runs.protocol_dir)
    assert result.code == 1
    for name in (LIF, PLIF):
        line = next(line for line in result.stdout.splitlines() if line.startswith(f"leaderboards/tiny/entries/{name}"))
        assert ": provenance.code[stxbench]: stale: the code of the core's numbers path changed since the run" in line


# -- receipts -------------------------------------------------------------------------------------


def test_a_rerun_writes_a_receipt_per_reproduced_entry(verified_board):
    for name in (LIF, PLIF):
        receipt = json.loads((verified_board / "tiny" / "receipts" / name).read_text())
        entry = json.loads((verified_board / "tiny" / "entries" / name).read_text())
        assert receipt["entry"] == name and receipt["code"] == entry["provenance"]["code"]
        assert receipt["cpu_kind"] == cpu_kind() == entry["provenance"]["cpu_numerics"]["cpu_kind"]
        assert len(receipt["claims_sha256"]) == 64


def test_require_verified_passes_a_board_whose_receipts_are_valid(board, tiny_runs, cli):
    result = lb(cli, "check", board, tiny_runs.protocol_dir, "--rerun-unverified", "--require-verified")
    assert result.code == 0, result.stdout
    assert "0 of 2 entries have no valid receipt" in result.stderr


def test_an_entry_without_a_receipt_fails_require_verified_naming_it(board, tiny_runs, cli):
    (board / "tiny" / "receipts" / PLIF).unlink()
    result = lb(cli, "check", board, tiny_runs.protocol_dir, "--require-verified")
    assert result.code == 1
    assert result.stdout.splitlines() == [
        f"leaderboards/tiny/entries/{PLIF}: unverified: no receipt, and this check did not reproduce it; "
        f"re-run it (`stxbench leaderboard check --rerun-only {PLIF}`, any x86-64 CPU) and commit the receipt "
        "it writes"]


def test_ci_fails_rather_than_passes_what_its_budget_left(board, tiny_runs, cli):
    """CI's command with no time to re-run: the entry without a receipt fails the check."""
    (board / "tiny" / "receipts" / LIF).unlink()
    result = lb(cli, "check", board, tiny_runs.protocol_dir, "--rerun-unverified", "--rerun-one",
                "--require-verified", "--rerun-budget", "0", "--no-write-receipts")
    assert result.code == 1
    assert "1 of 2 entries have no valid receipt" in result.stderr
    assert f"not re-run: {LIF}: over the re-run budget of 0 min" in result.stderr
    assert [line.split(": ")[0] for line in result.stdout.splitlines()] == [f"leaderboards/tiny/entries/{LIF}"]


def test_rerun_unverified_reruns_exactly_the_entries_without_a_valid_receipt(board, tiny_runs, cli):
    (board / "tiny" / "receipts" / PLIF).unlink()
    result = lb(cli, "check", board, tiny_runs.protocol_dir, "--rerun-unverified", "--require-verified")
    assert result.code == 0, result.stdout
    assert "1 of 2 entries have no valid receipt" in result.stderr
    assert f"re-running {PLIF} ..." in result.stderr and f"re-running {LIF}" not in result.stderr
    assert (board / "tiny" / "receipts" / PLIF).is_file()  # written again


def test_a_receipt_does_not_cover_other_claims(board, tiny_runs, cli):
    """An entry edited after its re-run (claims and rendered files consistent) is unverified."""
    path = board / "tiny" / "entries" / LIF
    data = json.loads(path.read_text())
    data["timing"]["eval_s"] += 1  # not a claim: the receipt still holds
    path.write_text(json.dumps(data, indent=2) + "\n")
    assert receipts.why_unverified(receipts_entry(path), installed()) is None
    data["metrics"]["firing_rate"] *= 1.0 + 1e-9  # a claim
    path.write_text(json.dumps(data, indent=2) + "\n")
    assert receipts.why_unverified(receipts_entry(path), installed()) == (
        "it claims other figures than the ones its receipt's re-run reproduced")


def test_a_receipt_of_a_removed_entry_is_a_problem(board, tiny_runs, cli):
    (board / "tiny" / "receipts" / "tiny__slif__none__torch__s0.json").write_text("{}")
    result = lb(cli, "check", board, tiny_runs.protocol_dir, "--require-verified")
    assert result.code == 1
    assert "leaderboards/tiny/receipts/tiny__slif__none__torch__s0.json: a receipt whose entry is gone: remove it" \
        in result.stdout


def receipts_entry(path: Path):
    from stxbench.leaderboard.store import Entry
    from stxbench.record.schema import load_record

    return Entry(path, load_record(path))


def installed() -> dict[str, str]:
    from stxbench.host.plugin_host import PluginHost
    from stxbench.leaderboard.verify import installed_code

    return installed_code(PluginHost())


# -- plugins that contribute entries come with their code ----------------------------------------


def test_an_entry_of_a_plugin_ci_cannot_install_is_refused(board, tiny_runs, cli, tmp_path, monkeypatch):
    """A neuron installed from outside the repository: `check` (and so `submit`) says CI cannot
    re-run the entry and how to vendor the plugin."""
    folder = tmp_path / "site"
    (folder / "stxbench_neuron_softlif").mkdir(parents=True)
    (folder / "stxbench_neuron_softlif" / "__init__.py").write_text(
        "from stxbench.api import hookimpl\n\n@hookimpl\ndef stxbench_add_neurons():\n    return []\n")
    monkeypatch.syspath_prepend(str(folder))
    sys.modules.pop("stxbench_neuron_softlif", None)
    import stxbench_neuron_softlif

    path = board / "tiny" / "entries" / LIF
    data = json.loads(path.read_text())
    data["provenance"]["code"]["stxbench_neuron_softlif"] = installed_identity(stxbench_neuron_softlif)
    path.write_text(json.dumps(data, indent=2) + "\n")
    result = cli("-p", "stxbench_neuron_softlif", "leaderboard", "check", "--root", str(board),
                 "--protocol-dir", str(tiny_runs.protocol_dir))
    assert result.code == 1
    assert (f"leaderboards/tiny/entries/{LIF}: provenance.code[stxbench_neuron_softlif]: plugin "
            "stxbench_neuron_softlif is not in this repository, so CI cannot install it and re-run the entry: "
            "vendor it under plugins/ and register it in pyproject.toml") in result.stdout


def test_file_digests_are_cached_per_version_of_a_file(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("A = 1\n")
    first = file_digest(path)
    path.write_text("A = 2  # longer\n")
    assert file_digest(path) != first


# -- a receipt under new code redeems a code-stale entry ----------------------------------------


def test_a_code_change_that_moves_no_number_is_redeemed_by_a_rerun(board, tiny_runs, cli, tmp_path, monkeypatch):
    """A numbers-path module changes (here: a new constant no run reads), so both entries go
    stale; re-running them under the new code reproduces every claim, which settles it: the check
    passes, and the receipts it writes name the new code, so later checks pass without a re-run."""
    core_copy(tmp_path, monkeypatch, lambda s: s + "\nUNUSED_BY_ANY_RUN = 1\n")
    stale = lb(cli, "check", board, tiny_runs.protocol_dir)
    assert stale.code == 1
    assert "and no re-run under the new code reproduced it" in stale.stdout
    verified = lb(cli, "check", board, tiny_runs.protocol_dir, "--rerun-unverified", "--require-verified")
    assert verified.code == 0, verified.stdout
    assert "2 of 2 entries have no valid receipt" in verified.stderr
    new_core = code_identity.core_digest()
    for name in (LIF, PLIF):
        receipt = json.loads((board / "tiny" / "receipts" / name).read_text())
        entry = json.loads((board / "tiny" / "entries" / name).read_text())
        assert receipt["code"]["stxbench"] == new_core != entry["provenance"]["code"]["stxbench"]
        assert receipt["receipt_version"] == 2
    again = lb(cli, "check", board, tiny_runs.protocol_dir, "--require-verified")
    assert again.code == 0, again.stdout


def test_a_code_stale_entry_left_unrun_stays_stale(board, tiny_runs, cli, tmp_path, monkeypatch):
    """Over the budget, nothing redeems it: the staleness stands, and CI's command fails."""
    core_copy(tmp_path, monkeypatch, lambda s: s + "\nUNUSED_BY_ANY_RUN = 1\n")
    result = lb(cli, "check", board, tiny_runs.protocol_dir, "--rerun-unverified", "--require-verified",
                "--rerun-budget", "0", "--no-write-receipts")
    assert result.code == 1
    stale = [line for line in result.stdout.splitlines() if "provenance.code[stxbench]: stale" in line]
    assert len(stale) == 2


def test_a_protocol_change_is_not_redeemable(board, tiny_runs, cli, tmp_path):
    """A changed protocol is another experiment: its entries are not re-run, whatever receipts say."""
    protocols = tmp_path / "protocols"
    shutil.copytree(tiny_runs.protocol_dir, protocols)
    path = protocols / "tiny.toml"
    path.write_text(path.read_text().replace("epochs = 1", "epochs = 2", 1))
    result = lb(cli, "check", board, protocols, "--rerun-unverified")
    assert result.code == 1
    assert "re-running" not in result.stderr
    assert all("protocol.sha256: stale" in line or "receipt" in line for line in result.stdout.splitlines()
               if line.startswith("leaderboards/tiny/entries/"))
