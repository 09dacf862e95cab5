"""Every time the README and the docs state for the README's first command comes from one
measurement, docs/measured/first-run.json (benchmarks/cold_start.py: a fresh clone, empty HOME
and TMPDIR, the install line and the main job with its defaults), so the pages cannot disagree
with each other or with what a new user meets (they once said "~1 min" and "about 4 minutes",
measured on a machine whose kernel cache was warm)."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MEASURED = ROOT / "docs" / "measured" / "first-run.json"
#: the pages that state how long the first command takes
PAGES = ["README.md", "docs/getting-started.md", "docs/index.md", "docs/running.md"]
#: how a page states it: "about N minutes on 2 CPU cores from empty caches"
CLAIM = re.compile(r"about (\d+) minutes on 2 CPU cores from empty caches")


def text(name: str) -> str:
    return re.sub(r"\s+", " ", (ROOT / name).read_text())


def test_the_measurement_is_of_the_readme_command():
    measured = json.loads(MEASURED.read_text())
    first = next(line.strip() for line in (ROOT / "README.md").read_text().splitlines()
                 if line.startswith("    python3 -m venv .venv") and "stxbench run" in line)
    assert measured["command"] == first, "the README's first command changed: run benchmarks/cold_start.py again"
    assert measured["install_s"] + measured["run_s"] == measured["total_s"] or \
        abs(measured["install_s"] + measured["run_s"] - measured["total_s"]) <= 1


def test_every_stated_time_is_the_measured_one():
    measured = json.loads(MEASURED.read_text())
    minutes = round(measured["total_s"] / 60)
    claims = {name: [int(m) for m in CLAIM.findall(text(name))] for name in PAGES}
    assert claims["README.md"], "the README states no time for its first command"
    wrong = {name: found for name, found in claims.items() if any(m != minutes for m in found)}
    assert wrong == {}, f"measured {measured['total_s']} s (about {minutes} minutes): {wrong}"
    for name in PAGES:  # the old, unmeasured claims
        assert "~1 min" not in text(name) and "a minute on a CPU" not in text(name), name
