"""One thing wrong with a leaderboard entry: the record field it is about, and what is wrong."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    field: str
    message: str

    def line(self, where: str) -> str:
        return f"{where}: {self.field}: {self.message}"
