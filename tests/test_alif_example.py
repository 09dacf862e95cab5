"""The installable example plugin ``examples/stxbench-alif``, as a user meets it: pip-installed
(offline) into a folder of its own, found by the host through its entry point, listed, trained on
digits and checked by ``stxbench parity``, all through the CLI in a fresh process."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stxbench.record.schema import load_record

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "stxbench-alif"
#: per-channel adaptation strengths of spikformer-1-32 (pools=2): stem 4+8+16+32, rpe 32,
#: q/k/v/attention/proj 5x32, fc1 128, fc2 32
TINY_NEURON_CHANNELS = 412


def stxbench(env, *args):
    return subprocess.run([sys.executable, "-m", "stxbench", *args], env=env, capture_output=True,
                          text=True, timeout=300)


def table_rows(stdout: str, section: str) -> list[list[str]]:
    """The rows of one ``stxbench list`` section, split on runs of two or more spaces."""
    import re

    block = stdout.split(f"{section}:\n", 1)[1].split("\n\n", 1)[0]
    return [re.split(r"\s{2,}", line.strip()) for line in block.splitlines()[2:]]


@pytest.mark.e2e  # pip install, then three fresh stxbench processes
def test_alif_example_installs_lists_trains_and_passes_parity(tmp_path, tiny_protocol):
    source = tmp_path / "src"
    shutil.copytree(EXAMPLE, source)  # building writes build/ and *.egg-info next to the sources
    site = tmp_path / "site"
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--disable-pip-version-check", "--target", str(site), str(source)],
        capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr
    entry_points = next(site.glob("stxbench_alif-*.dist-info")) / "entry_points.txt"
    assert entry_points.read_text().split() == ["[stxbench]", "alif", "=", "stxbench_alif"]
    # COLUMNS: one line per table row (at 100 columns the parameters column wraps)
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1", "COLUMNS": "250"}

    listing = stxbench(env, "list")
    assert listing.returncode == 0, listing.stderr
    families = {row[0]: row for row in table_rows(listing.stdout, "neuron families")}
    assert families["alif"][2:] == ["tau=2.0, tau_adapt=20.0, beta=0.0, v_reset=0.0", "none: reference only", "alif"]
    assert families["lif"][-1] == "neuron-lif"
    neurons = {row[0]: row for row in table_rows(listing.stdout, "neurons")}
    assert neurons["alif"][2:] == ["alif", "alif"]  # family, plugin
    backends = {row[0]: row for row in table_rows(listing.stdout, "backends")}
    assert backends["torch"][3] == "lif (via reference: alif, rate)"  # rate: the ANN twin's
    assert "failed plugins" not in listing.stdout

    out = tmp_path / "run"
    run = stxbench(env, "run", "--protocol", str(tiny_protocol), "--neuron", "alif", "--threads", "1",
                   "--cache-dir", str(tmp_path / "cache"), "--out", str(out), "-q")
    assert run.returncode == 0, run.stderr
    record = load_record(out / "result.json")
    c, m = record.config, record.metrics
    assert (c.neuron, c.base_neuron, c.backend, c.dataset) == ("alif", "lif", "torch", "digits")
    assert json.loads(record.model_dump_json())["config"]["neurons"] == {
        "lif": {"family": "lif", "implementation": "native"},
        "alif": {"family": "alif", "implementation": "reference"},
    }
    assert "stxbench_alif.py" in record.provenance.plugin_sha256
    # the dense LIF model, plus one learnable adaptation strength per neuron channel
    assert m.params_effective == m.params_total + TINY_NEURON_CHANNELS
    assert m.accuracy > 0.3 and 0 < m.firing_rate < 1  # trained: well above chance (0.1)

    parity = stxbench(env, "parity", "-n", "alif")
    assert parity.returncode == 0, parity.stdout + parity.stderr
    rows = [line.split() for line in parity.stdout.splitlines() if line.endswith(("PASS", "FAIL"))]
    assert [(r[0], r[1], r[2], r[-1]) for r in rows] == [
        ("alif", "(reference)", s, "PASS") for s in ("atan", "sigmoid", "superspike")]
    assert "reference of family alif: stxbench_alif.ALIFReference (plugin 'alif')" in parity.stdout
    # beta starts at 0: alif fires LIF's spikes at initialisation (docs/neuron-families.md)
    assert "drop-in for lif: alif holds (0 of 4272 spikes differ at initialisation)\n" in parity.stdout
    assert ("note: family alif: its reference is its only implementation (no installed backend implements "
            "it natively; every backend runs it through the reference); the reference is checked against "
            "the neuron contract alone (rows (reference))") in parity.stdout


def test_the_guide_quotes_the_example_verbatim():
    import re

    guide = (Path(__file__).resolve().parent.parent / "docs" / "neuron-families.md").read_text()
    source = (EXAMPLE / "stxbench_alif.py").read_text()
    quoted = [b for b in re.findall(r"```python\n(.*?)```", guide, flags=re.S) if b.startswith("class ALIF")]
    assert len(quoted) == 3  # Params, Reference, and the family with its neuron and hooks
    for block in quoted:
        assert block in source, block.splitlines()[0]
    toml = re.findall(r"```toml\n(.*?)```", guide, flags=re.S)[0]
    pyproject = (EXAMPLE / "pyproject.toml").read_text()
    assert all(line in pyproject.splitlines() for line in toml.splitlines())
