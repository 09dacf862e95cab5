"""Every worked example of the plugin guides (docs/plugins/*.md), extracted verbatim from its
page, loaded with ``stxbench -p`` and run through the CLI on a tiny protocol, as a reader would.
(The pruner and observer examples are run by tests/test_readme_plugin.py.)"""

from __future__ import annotations

import re

import numpy as np
import pytest
from docs_examples import DOCS, ROOT, code_blocks, examples, write_example

from stxbench.record.schema import load_record

#: example name -> the test that runs it
TESTED = {"neuron", "backend", "dataset", "model", "pruner", "observer"}


def test_every_marked_example_is_run_by_a_test():
    assert set(examples()) == TESTED


def test_every_plugin_guide_has_a_worked_example():
    pages = {page.name for page, _ in examples().values()}
    assert {"neuron.md", "pruner.md", "backend.md", "dataset.md", "model.md"} <= pages


def run(cli, folder, protocol, *args, cache=None):
    """``stxbench -p MODULE run ...`` into ``folder/out``, the dense cache in ``cache`` (default
    ``folder/cache``)."""
    out = folder / "out"
    result = cli(*args[:2], "run", "--protocol", str(protocol), "--out", str(out),
                 "--cache-dir", str(cache or folder / "cache"), "-q", *args[2:])
    assert result.code == 0, result.stderr
    return load_record(out / "result.json")


def test_neuron_example(tmp_path, monkeypatch, tiny_protocol, cli, shared_cache):
    module = write_example("neuron", tmp_path)
    monkeypatch.chdir(tmp_path)
    listed = cli("-p", module, "list", "neurons")
    assert listed.code == 0
    assert re.search(r"^clif\s+LIF with a learnable decay per channel.*\slif\s+stxbench_clif", listed.stdout, re.M)

    parity = cli("-p", module, "parity", "-n", "clif", "-b", "torch")  # as the page says to run it
    assert parity.code == 0, parity.stdout + parity.stderr
    rows = [line.split() for line in parity.stdout.splitlines() if line.startswith("clif ")]
    assert len(rows) == 3 and all(r[3] == "0" and r[-1] == "PASS" for r in rows)

    params = {}
    for neuron in ("lif", "clif", "slif"):  # one dense model (the session's), three fine-tuned neurons
        (tmp_path / neuron).mkdir()
        record = run(cli, tmp_path / neuron, tiny_protocol, "-p", module, "--neuron", neuron,
                     cache=shared_cache)
        assert record.config.neuron == neuron
        params[neuron] = record.metrics.params_effective
    # clif learns one decay per channel of every neuron layer, slif a decay and a threshold
    assert params["clif"] > params["lif"]
    assert params["slif"] - params["lif"] == 2 * (params["clif"] - params["lif"])


def test_backend_example(tmp_path, monkeypatch, tiny_protocol, cli):
    module = write_example("backend", tmp_path)
    monkeypatch.chdir(tmp_path)
    parity = cli("-p", module, "parity", "-b", "loop")
    assert parity.code == 0, parity.stdout + parity.stderr
    rows = [line.split() for line in parity.stdout.splitlines() if line.split()[1:2] == ["loop"]]
    assert {(r[0], r[2]) for r in rows} == {(n, s) for n in ("lif", "plif", "slif")
                                            for s in ("atan", "sigmoid", "superspike")}
    assert all(r[3] == "0" and r[4].startswith("0/") and r[-1] == "PASS" for r in rows)

    record = run(cli, tmp_path, tiny_protocol, "-p", module, "--backend", "loop", "--neuron", "slif")
    assert record.config.backend == "loop" and record.config.neuron == "slif"
    assert any(k == "stxbench_loop.py" for k in record.provenance.plugin_sha256)


def test_dataset_example(tmp_path, monkeypatch, tiny_protocol, cli):
    from sklearn.datasets import load_digits

    module = write_example("dataset", tmp_path)
    monkeypatch.chdir(tmp_path)
    digits = load_digits()
    rows = np.concatenate([digits.target[:, None], digits.data / 16.0], axis=1)
    data = tmp_path / "data"
    data.mkdir()
    np.savetxt(data / "train.csv", rows[:1400], delimiter=",", fmt="%g")
    np.savetxt(data / "test.csv", rows[1400:], delimiter=",", fmt="%g")
    protocol = tmp_path / "csv.toml"
    protocol.write_text(tiny_protocol.read_text().replace(
        'dataset = "digits"', 'dataset = "csv"\n\n[data.options]\nimage_side = 8'))

    record = run(cli, tmp_path, protocol, "-p", module, "--data-root", str(data))
    assert record.config.dataset == "csv"
    assert record.metrics.accuracy * 397 == pytest.approx(round(record.metrics.accuracy * 397))
    assert record.counts.samples == 397  # the 1797 - 1400 rows of test.csv

    half = tmp_path / "half"
    half.mkdir()
    (half / "train.csv").write_text((data / "train.csv").read_text())
    refused = cli("-p", module, "run", "--protocol", str(protocol), "--data-root", str(half),
                  "--out", str(tmp_path / "refused"))
    assert refused.code == 2
    assert refused.stderr == (f"error: dataset 'csv': incomplete folder, expected DIR/train.csv and "
                              f"DIR/test.csv (one sample per row: label, then the features); missing "
                              f"{half / 'test.csv'}\n")
    assert not (tmp_path / "refused").exists()


def test_model_example(tmp_path, monkeypatch, tiny_protocol, cli):
    module = write_example("model", tmp_path)
    monkeypatch.chdir(tmp_path)
    listed = cli("-p", module, "list", "models")
    assert listed.code == 0 and re.search(r"^mlp\s+a one-block spiking MLP", listed.stdout, re.M)

    protocol = tmp_path / "mlp.toml"
    text = tiny_protocol.read_text().replace('name = "spikformer-1-32"', 'name = "mlp-32"')
    protocol.write_text(text.replace("[model.options]\npools = 2\n", ""))
    record = run(cli, tmp_path, protocol, "-p", module, "--pruner", "dsp", "--set", "method=channels")
    assert record.config.model == "mlp-32"
    # the page's numbers: 32 of fc1's 64 hidden units removed with their fc2 columns
    assert record.metrics.params_total == 6858
    assert record.metrics.params_effective == 4714
    assert record.metrics.sparsity == 0.5


ALIF = ROOT / "examples" / "stxbench-alif"


def test_the_neuron_families_page_shows_the_alif_example_verbatim():
    """docs/neuron-families.md walks through examples/stxbench-alif, which tests/test_alif_example.py
    installs, runs and holds to parity: each of the page's code blocks of the example is a part of
    its files, word for word, so the page cannot drift from code that is tested (it once lacked
    the imports and the [build-system] table)."""
    page = DOCS / "neuron-families.md"
    toml = code_blocks(page, "toml")
    project = (ALIF / "pyproject.toml").read_text()
    # the file, without its leading comment lines (how to install it)
    assert toml == [project[project.index("[build-system]"):]]
    source = (ALIF / "stxbench_alif.py").read_text()
    python = code_blocks(page, "python")
    example = python[:-1]  # the last is the "Other ways to extend" snippet
    assert len(example) == 4 and example[0].startswith("import math\n")  # imports, params, reference, family + hooks
    assert [block for block in example if block not in source] == []
    # every name the parts use is imported by the first block or defined by another
    assert "from stxbench.api import" in example[0] and "from pydantic import Field" in example[0]


def test_the_neuron_families_page_extends_with_code_that_runs(monkeypatch):
    """The page's 'Other ways to extend' snippet, run as written (the example on the path)."""
    monkeypatch.syspath_prepend(str(ALIF))
    snippet = code_blocks(DOCS / "neuron-families.md", "python")[-1]
    assert snippet.startswith("from stxbench.api import NeuronSpec\nfrom stxbench_alif import ALIFParams\n")
    namespace: dict = {}
    exec(compile(snippet, "neuron-families.md", "exec"), namespace)
    from stxbench.api import NeuronSpec

    assert NeuronSpec("lif3", "LIF with tau = 3", tau=3.0).params.tau == 3.0
    assert namespace["ALIFParams"](beta=1.8, tau_adapt=200.0).beta == 1.8
