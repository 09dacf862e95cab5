"""The bad-input battery of benchmarks/bad_input.py: every case refused cleanly (exit code 2,
one line, no traceback, nothing written). The README's reliability figure comes from it."""

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bad_input.py"


@pytest.fixture(scope="module")
def battery():
    spec = importlib.util.spec_from_file_location("bad_input", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bad_input"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_every_bad_input_is_refused_cleanly(battery, tmp_path):
    results = battery.run_all(tmp_path)
    assert len(results) >= 35
    assert {case.name: problem for case, problem in results if problem} == {}


def test_the_battery_notices_what_is_not_clean(battery, tmp_path):
    # a valid command is not a refusal, and a run that writes something is caught
    good = battery.Case("a valid run", battery.RUN + ["--set", "train.epochs=0", "-q"], battery._tiny)
    assert battery.try_case(good, tmp_path).startswith("exit code 0")
    good.expect_code = 0
    assert "out/result.json" in battery.try_case(good, tmp_path)
