"""One thing wrong with a leaderboard entry: the record field it is about, and what is wrong."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    field: str
    message: str
    #: a re-run can settle it: the code that computes the entry changed since it was made, and a
    #: re-run under the installed code that reproduces every claim (or a receipt of one) shows the
    #: change did not move its numbers (`stxbench.leaderboard.receipts`)
    redeemable: bool = False

    def line(self, where: str) -> str:
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
