"""The bad-input battery of benchmarks/bad_input.py: every case refused cleanly (its exit code,
one line, no traceback, nothing written). The README's reliability figure and the list of
classes in docs/reliability.md come from it."""

import importlib.util
import re
import sys
from pathlib import Path

import pytest

import stxbench.record.schema

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "bad_input.py"
#: branches whose work some cases wait for, and whether this checkout has it
MERGED = {"lbtrust": hasattr(stxbench.record.schema, "parse_record_json")}  # strict record loading


@pytest.fixture(scope="module")
def battery():
    spec = importlib.util.spec_from_file_location("bad_input", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bad_input"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_every_bad_input_is_refused_cleanly(battery, tmp_path):
    results = battery.run_all(tmp_path)
    assert len(results) == len(battery.ALL) >= 112
    waiting = {case.name for case, _ in results if case.pending and not MERGED[case.pending]}
    assert {case.name: problem for case, problem in results if problem and case.name not in waiting} == {}
    # a case waiting for a branch is a real failure today, so it says something once merged
    assert all(problem for case, problem in results if case.name in waiting)


def test_every_class_of_the_issue_has_cases(battery):
    sizes = {group: len(cases) for group, cases in battery.CLASSES.items()}
    assert sizes["numbers"] >= 20 and sizes["paths"] >= 20 and sizes["concurrency and reproducibility"] >= 5
    assert sizes["containment"] >= 10
    names = [case.name for case in battery.ALL]
    assert len(names) == len(set(names))


def test_the_battery_notices_what_is_not_clean(battery, tmp_path):
    # a valid command is not a refusal, and a run that writes something is caught
    good = battery.Case("a valid run", battery.RUN + ["--set", "train.epochs=0", "-q"], battery._tiny)
    assert battery.try_case(good, tmp_path).startswith("exit code 0")
    good.expect_code = 0
    assert "out/result.json" in battery.try_case(good, tmp_path)
    crash = battery.Case("a crash", ["energy", "bad.json"], battery._raw_file("bad.json", b"\xff"))
    if not MERGED["lbtrust"]:
        assert battery.try_case(crash, tmp_path).startswith("exit code 1: Traceback")


def test_the_docs_list_every_case_and_the_readme_states_the_size(battery):
    docs = (ROOT / "docs" / "reliability.md").read_text()
    missing = [case.name for case in battery.ALL if f"`{case.name}`" not in docs]
    assert missing == []
    size = len(battery.ALL)
    assert re.search(rf"\*\*{size} tried, {size} refused cleanly\*\*", (ROOT / "README.md").read_text())
    assert f"**{size} cases**" in docs
