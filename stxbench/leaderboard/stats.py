"""The statistics of paired verdicts: a paired t-test per comparison, Holm's correction over a
family of comparisons, and the minimum detectable effect.

Runs of one seed share the dense model and the pruned weights, so two methods are compared by
the differences ``d_i = a_i - b_i`` of their seeds. With ``n`` pairs, mean ``m`` and sample
standard deviation ``s`` of the differences:

* the 95 % interval of the mean difference is ``m ± t(0.975, n-1) * s / sqrt(n)``;
* the two-sided p-value is ``2 * P(T_{n-1} > |m| / (s / sqrt(n)))``; with ``s = 0`` it is 0 if
  ``m != 0`` (every seed moved by the same amount) and 1 if ``m = 0``;
* a board asks many questions at once, so the p-values of one family (everything one table
  shows, per metric) are adjusted with Holm's step-down method: sorted ascending, the i-th of
  ``k`` becomes ``max_{j <= i} min(1, (k - j + 1) p_(j))``. Holm rather than Benjamini-Hochberg
  because each verdict is read as a claim of its own ("sLIF beats LIF at L1P 0.9"), so the
  chance of *any* false claim (the family-wise error) is what to bound, and because Holm holds
  under any dependence between the tests, which these have (the comparisons of one board share
  dense models, seeds and, for "X vs LIF", the LIF runs); BH bounds only the expected share
  of false claims, and for dependent tests only under positive dependence;
* the minimum detectable effect (MDE) is the true mean difference that this test would find
  with 80 % power at the strictest level Holm uses in the family, ``0.05 / k``:
  ``(t(1 - 0.05/(2k), n-1) + t(0.8, n-1)) * s / sqrt(n)`` (the usual normal-approximation
  formula with t quantiles, taking the observed ``s`` as the true spread).

The t quantiles come from scipy.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from stxbench.run.errors import UsageError

ALPHA = 0.05
POWER = 0.8


def t_dist():
    try:
        from scipy.stats import t
    except ImportError:
        raise UsageError("paired verdicts need scipy: pip install 'stxbench[leaderboard]'") from None
    return t


@dataclass(frozen=True)
class PairedTest:
    """The paired t-test of one comparison (differences a - b, one per seed)."""

    n: int
    mean: float
    sd: float | None  # None with one pair
    half_width: float | None  # of the 95 % interval
    p: float | None  # two-sided, before the family's correction

    @classmethod
    def of(cls, differences: Sequence[float]) -> PairedTest:
        n = len(differences)
        if n == 0:
            raise ValueError("no pairs")
        mean = statistics.fmean(differences)
        if n < 2:
            return cls(n, mean, None, None, None)
        sd = statistics.stdev(differences)
        t = t_dist()
        half_width = t.ppf(1 - ALPHA / 2, n - 1) * sd / math.sqrt(n)
        if sd == 0:
            p = 0.0 if mean != 0 else 1.0
        else:
            p = float(2 * t.sf(abs(mean) / (sd / math.sqrt(n)), n - 1))
        return cls(n, mean, sd, float(half_width), p)

    def mde(self, family: int) -> float | None:
        """The minimum detectable effect at this n, in a family of ``family`` tests."""
        if self.sd is None:
            return None
        t, df = t_dist(), self.n - 1
        return float((t.ppf(1 - ALPHA / (2 * family), df) + t.ppf(POWER, df)) * self.sd / math.sqrt(self.n))


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm-adjusted p-values, in the order given; None (no test) stays None and does not count
    in the family."""
    tested = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    k = len(tested)
    adjusted: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (k - rank) * p))
        adjusted[i] = running
    return adjusted


def verdict(test: PairedTest, adjusted_p: float | None) -> str:
    if adjusted_p is None:
        return f"too few seeds (n={test.n})"
    if adjusted_p < ALPHA:
        return "a better" if test.mean > 0 else "b better"
    return "no detectable difference"
