"""Paired verdicts: the statistics against hand-computed values, and ``stxbench leaderboard
paired`` on a frozen copy of the digits board as it stood when the command was written
(tests/data/digits-board: 47 entries, lif/plif/slif x none, L1P 0.9, DSP svd 0.5 and 0.25,
DSP channels 0.5 at seeds 0-2, two single-seed sLIF rows on other backends)."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest

from stxbench.leaderboard import paired
from stxbench.leaderboard.curves import recovery_auc
from stxbench.leaderboard.stats import PairedTest, holm, verdict
from stxbench.leaderboard.store import Board
from stxbench.record.schema import CurvePoint

DIGITS = Path(__file__).parent / "data" / "digits-board"
T975_DF2 = 4.302652729911275  # t quantile 0.975 with 2 degrees of freedom (tables)


def p_two_sided_df2(t: float) -> float:
    """With 2 degrees of freedom the t CDF is 1/2 + t / (2 sqrt(t^2 + 2)): p = 1 - |t|/sqrt(t^2+2)."""
    return 1 - abs(t) / math.sqrt(t * t + 2)


def test_paired_t_by_hand():
    test = PairedTest.of([3.0, 1.0, 2.0])  # mean 2, sd 1
    assert (test.n, test.mean, test.sd) == (3, 2.0, 1.0)
    assert test.half_width == pytest.approx(T975_DF2 / math.sqrt(3), rel=1e-9)
    assert test.p == pytest.approx(p_two_sided_df2(2.0 * math.sqrt(3)), rel=1e-9)
    # MDE: (t(1 - 0.05/2k) + t(0.8)) s / sqrt(n); t(0.8, 2) = sqrt(2) * 0.6 / sqrt(1 - 0.36) ... by the CDF:
    # 1/2 + t / (2 sqrt(t^2 + 2)) = 0.8  ->  t = 0.6 sqrt(2) / sqrt(1 - 0.36) = 1.0606601717798212
    t80 = 0.6 * math.sqrt(2) / math.sqrt(0.64)
    t_strict = 0.95 * math.sqrt(2) / math.sqrt(1 - 0.95 ** 2)  # k = 1: t(0.975), from the CDF too
    assert t_strict == pytest.approx(T975_DF2, rel=1e-9)
    assert test.mde(1) == pytest.approx((T975_DF2 + t80) / math.sqrt(3), rel=1e-9)
    q = 1 - 0.05 / 20  # k = 10
    t_k10 = (2 * q - 1) * math.sqrt(2) / math.sqrt(1 - (2 * q - 1) ** 2)
    assert test.mde(10) == pytest.approx((t_k10 + t80) / math.sqrt(3), rel=1e-9)


def test_degenerate_pairs():
    one = PairedTest.of([0.5])
    assert (one.sd, one.half_width, one.p, one.mde(4)) == (None, None, None, None)
    assert verdict(one, None) == "too few seeds (n=1)"
    same = PairedTest.of([0.25, 0.25, 0.25])  # every seed moved by the same amount
    assert (same.sd, same.half_width, same.p, same.mde(3)) == (0.0, 0.0, 0.0, 0.0)
    assert PairedTest.of([0.0, 0.0]).p == 1.0


def test_holm_by_hand():
    # sorted: 0.005 x4 = 0.02, 0.01 x3 = 0.03, 0.03 x2 = 0.06, 0.04 x1 = 0.04 -> max so far 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, None, 0.02]) == pytest.approx([0.5, None, 0.04])
    assert holm([0.9, 0.8]) == [1.0, 1.0]
    test = PairedTest.of([1.0, 2.0, 3.0])
    assert verdict(test, 0.049) == "a better" and verdict(PairedTest.of([-1.0, -2.0]), 0.01) == "b better"
    assert verdict(test, 0.05) == "no detectable difference"


def test_area_under_the_recovery_curve_by_hand():
    curve = [CurvePoint(epoch=0, accuracy=0.5, loss=None), CurvePoint(epoch=1, accuracy=0.7, loss=1.0),
             CurvePoint(epoch=2, accuracy=0.8, loss=0.9)]
    assert recovery_auc(curve) == pytest.approx((0.6 + 0.75) / 2)
    assert recovery_auc(curve[:1]) == 0.5


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # one line per row, as rows_of reads them (at 100 they wrap)


def rows_of(stdout: str) -> dict[tuple[str, str], list[str]]:
    """Verdict table rows by (a - b, pruner)."""
    out = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.split("  ") if c.strip()]
        if cells and " - " in cells[0] and cells[0] != "a - b" and len(cells) >= 8:
            out[(cells[0], cells[1])] = cells
    return out


def test_the_digits_example_of_the_issue(cli):
    """PLIF vs LIF, DSP channels 0.5, digits: +0.74 ± 0.40 points (3, 3 and 2 more of 360 test
    images right at seeds 0, 1, 2: differences 5/6, 5/6, 5/9 points, t = 8 exactly)."""
    result = cli("leaderboard", "paired", "digits", "--a", "plif", "--b", "lif", "--root", str(DIGITS))
    assert result.code == 0, result.stderr
    rows = rows_of(result.stdout)
    assert len(rows) == 5  # none, L1P 0.9, DSP svd 0.5 and 0.25, DSP channels 0.5
    channels = rows[("plif - lif", "dsp (keep=0.5, method=channels)")]
    mean = (100 / 360) * 8 / 3
    sd = (100 / 360) * math.sqrt(1 / 3)
    assert mean / (sd / math.sqrt(3)) == pytest.approx(8.0)
    assert channels[2:5] == ["torch", "3", f"+{mean:.2f} ± {T975_DF2 * sd / math.sqrt(3):.2f}"]
    assert channels[4] == "+0.74 ± 0.40"
    # Holm over the 5 comparisons: this is the smallest p, so it is multiplied by 5
    assert channels[5] == f"{5 * p_two_sided_df2(8.0):.3f}" == "0.076"
    assert channels[6] == "no detectable difference"
    assert "no entry has a recovery curve (the protocol has no validation split): accuracy only" in result.stdout
    # the issue's count: of the 10 PLIF/sLIF - LIF comparisons on digits, none survives Holm
    both = cli("leaderboard", "paired", "digits", "--a", "plif", "--a", "slif", "--b", "lif", "--root", str(DIGITS))
    rows = rows_of(both.stdout)
    assert len(rows) == 10 and {r[6] for r in rows.values()} == {"no detectable difference"}
    assert rows[("plif - lif", "dsp (keep=0.5, method=channels)")][5] == f"{10 * p_two_sided_df2(8.0):.3f}"
    # and unadjusted, only that one interval excludes zero
    clears = [key for key, r in rows.items()
              if abs(float(r[4].split(" ± ")[0])) > float(r[4].split(" ± ")[1])]
    assert clears == [("plif - lif", "dsp (keep=0.5, method=channels)")]


def test_pruners_and_backends_are_compared_too(cli, tmp_path):
    result = cli("leaderboard", "paired", "digits", "--a", "dsp:method=svd", "--b", "l1p", "--root", str(DIGITS))
    assert result.code == 0, result.stderr
    rows = rows_of(result.stdout)
    assert sorted(rows) == sorted((f"{a} - l1p (scope=global, sparsity=0.9)", n) for n in ("lif", "plif", "slif")
                                  for a in ("dsp (keep=0.5, method=svd)", "dsp (keep=0.25, method=svd)"))
    backends = cli("leaderboard", "paired", "digits", "--a", "spikingjelly", "--b", "torch", "--root", str(DIGITS))
    assert backends.code == 0, backends.stderr
    (row,) = rows_of(backends.stdout).values()
    # one seed: a difference without an interval; and the dense models differ by backend
    assert row[0] == "spikingjelly - torch †" and row[3] == "1" and row[6] == "too few seeds (n=1)"
    assert "†: not every pair trained from the same dense checkpoint" in backends.stdout


@pytest.mark.parametrize("args, message", [
    (["nope", "--a", "plif", "--b", "lif"], "error: no board 'nope' under "),
    (["digits", "--a", "plf", "--b", "lif"], "error: --a plf --b lif: not all are names of one kind on this board "
                                             "(neurons: lif, plif, slif; pruners: dsp, l1p, none; backends: "),
    (["digits", "--a", "lif", "--b", "lif"], "error: --a and --b both select neuron 'lif': nothing to compare"),
    (["digits", "--a", "l1p", "--b", "dsp"], "error: --b dsp selects 3 pruner configurations "),
    (["digits", "--a", "plif", "--b", "lif", "--by", "colour"], "error: unknown factor (--by) 'colour'"),
])
def test_bad_requests_are_one_line(cli, args, message):
    result = cli("leaderboard", "paired", *args, "--root", str(DIGITS))
    assert result.code == 2, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), lines


def test_nothing_to_pair_is_one_line(cli, tmp_path):
    board = Board(tmp_path / "b")
    for name in ("digits__plif__none__torch__s0.json", "digits__lif__l1p-scopeglobal-sparsity0.9__torch__s1.json"):
        board.entries_dir("digits").mkdir(parents=True, exist_ok=True)
        shutil.copy(DIGITS / "digits" / "entries" / name, board.entries_dir("digits") / name)
    result = cli("leaderboard", "paired", "digits", "--a", "plif", "--b", "lif", "--root", str(board.root))
    assert result.code == 2
    assert result.stderr.strip() == ("error: no seed of board 'digits' has runs of both plif and lif with "
                                     "everything else equal: nothing to pair")


def test_the_family_is_the_table(tmp_path):
    board = Board(tmp_path / "b")
    shutil.copytree(DIGITS / "digits", board.root / "digits")
    records = [e.record for e in board.entries()]
    comparisons = paired.compare(records, "neuron", ["plif", "slif"], "lif")
    assert paired.family_size(comparisons, "accuracy") == 10
    assert paired.family_size(comparisons, "auc") == 0  # no curves on this board
    raw = [c.accuracy.p for c in comparisons]
    assert [c.accuracy_p for c in comparisons] == pytest.approx(holm(raw))
