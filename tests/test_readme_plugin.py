"""The README's third-party plugin example, extracted verbatim and run as a user would."""

import re
import textwrap
from pathlib import Path

from stxbench.record import load_record

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_plugin_source() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    (source,) = [b for b in blocks if b.startswith("# stxbench_random.py")]
    return source


def test_readme_plugin_loads_with_p_and_runs(tmp_path, monkeypatch, tiny_protocol, cli):
    (tmp_path / "stxbench_random.py").write_text(readme_plugin_source())
    monkeypatch.chdir(tmp_path)  # as in the README: run from the folder holding the file
    listed = cli("-p", "stxbench_random", "list", "pruners")
    assert listed.code == 0 and "random" in listed.stdout and "sparsity=0.5" in listed.stdout

    out = tmp_path / "out"
    result = cli("-p", "stxbench_random", "run", "--pruner", "random", "--set", "sparsity=0.8",
                 "--protocol", str(tiny_protocol), "--out", str(out),
                 "--cache-dir", str(tmp_path / "cache"), "-q")
    assert result.code == 0, result.stderr
    record = load_record(out / "result.json")
    assert record.config.pruner == "random"
    assert record.config.pruner_params == {"sparsity": 0.8, "seed": 0}
    assert 0.75 < record.metrics.sparsity < 0.85  # random masks: about 80 % zeros
    assert record.metrics.params_effective < record.metrics.params_total
    assert any(k == "stxbench_random.py" for k in record.provenance.plugin_sha256)

    bad = cli("-p", "stxbench_random", "run", "--pruner", "random", "--set", "sparsity=1.5",
              "--protocol", str(tiny_protocol), "--out", str(tmp_path / "bad"))
    assert bad.code == 2
    assert bad.stderr == "error: pruner 'random': sparsity=1.5: Input should be less than 1\n"


OBSERVER = """
from stxbench.api import hookimpl

EVENTS = []

@hookimpl
def stxbench_run_start(config):
    EVENTS.append(("start", config.neuron))

@hookimpl
def stxbench_epoch_end(stage, epoch, metrics):
    EVENTS.append((stage, epoch, sorted(metrics)))

@hookimpl
def stxbench_run_end(record):
    EVENTS.append(("end", record.metrics.accuracy))
"""

BROKEN_OBSERVER = """
from stxbench.api import hookimpl

@hookimpl
def stxbench_epoch_end(stage, epoch, metrics):
    raise RuntimeError("tracker offline")
"""


def test_observers_follow_a_run_and_a_broken_one_is_left_out(tmp_path, monkeypatch, tiny_protocol, cli):
    (tmp_path / "watcher.py").write_text(textwrap.dedent(OBSERVER))
    (tmp_path / "flaky.py").write_text(textwrap.dedent(BROKEN_OBSERVER))
    monkeypatch.chdir(tmp_path)
    result = cli("-p", "watcher", "-p", "flaky", "run", "--protocol", str(tiny_protocol),
                 "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "-q")
    assert result.code == 0, result.stderr
    import watcher

    keys = ["loss", "train_accuracy"]
    assert watcher.EVENTS[:4] == [("start", "lif"), ("dense", 1, keys), ("dense", 2, keys), ("finetune", 1, keys)]
    assert watcher.EVENTS[4][0] == "end"
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1  # reported once, then left out
    assert "observer flaky.stxbench_epoch_end raised RuntimeError: tracker offline" in warnings[0]
