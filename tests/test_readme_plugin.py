"""The random-pruning plugin example (docs/plugins/pruner.md, once the README's) and the
observer example (docs/plugins/index.md), extracted verbatim and run as a user would."""

import textwrap

from docs_examples import write_example

from stxbench.record.schema import load_record


def test_readme_plugin_loads_with_p_and_runs(tmp_path, monkeypatch, tiny_protocol, cli):
    module = write_example("pruner", tmp_path)
    assert module == "stxbench_random"
    monkeypatch.chdir(tmp_path)  # as in the docs: run from the folder holding the file
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


BROKEN_OBSERVER = """
from stxbench.api import hookimpl

@hookimpl
def stxbench_epoch_end(stage, epoch, metrics):
    raise RuntimeError("tracker offline")
"""


def test_observers_follow_a_run_and_a_broken_one_is_left_out(tmp_path, monkeypatch, tiny_protocol, cli):
    assert write_example("observer", tmp_path) == "watcher"
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
