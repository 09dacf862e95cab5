"""The plugin host: discovery through entry points and -p, and containment of broken plugins."""

import textwrap

import pytest

from stxbench.run.errors import UsageError
from stxbench.host.plugin_host import PluginHost


def write_module(folder, name, source):
    (folder / f"{name}.py").write_text(textwrap.dedent(source))


def install_entry_point(folder, dist, name, module):
    """A fake installed distribution declaring one `stxbench` entry point."""
    info = folder / f"{dist}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[stxbench]\n{name} = {module}\n")


GOOD_NEURON = """
from stxbench.api import hookimpl
from stxbench.api import NeuronSpec

@hookimpl
def stxbench_add_neurons():
    return [NeuronSpec("lif4", "LIF with tau = 4", tau=4.0)]
"""


def test_first_party_plugins_come_through_entry_points():
    host = PluginHost()
    assert {"lif", "plif"} <= set(host.names("neuron"))
    assert "torch" in host.names("backend") and "digits" in host.names("dataset")
    assert host.get("neuron", "lif").plugin == "neuron-lif"
    assert host.failures == [] and host.clashes == []


def test_third_party_entry_point_is_found(tmp_path, monkeypatch):
    write_module(tmp_path, "stxbench_lif4", GOOD_NEURON)
    install_entry_point(tmp_path, "stxbench_lif4", "lif4", "stxbench_lif4")
    monkeypatch.syspath_prepend(str(tmp_path))
    host = PluginHost()
    assert host.neuron("lif4").tau == 4.0
    assert host.get("neuron", "lif4").plugin == "lif4"


def test_entry_point_that_fails_to_import_is_listed_and_the_rest_work(tmp_path, monkeypatch, cli):
    write_module(tmp_path, "stxbench_broken", "raise RuntimeError('needs a GPU driver')\n")
    install_entry_point(tmp_path, "stxbench_broken", "broken", "stxbench_broken")
    monkeypatch.syspath_prepend(str(tmp_path))
    host = PluginHost()
    assert [(f.plugin, f.reason) for f in host.failures] == [
        ("broken", "import failed: RuntimeError: needs a GPU driver")]
    assert "lif" in host.names("neuron")
    with pytest.raises(UsageError, match=r"1 plugin\(s\) failed to load"):
        host.neuron("missing")
    result = cli("list", "neurons")
    assert result.code == 0
    assert "failed plugins" in result.stdout and "needs a GPU driver" in result.stdout
    assert "lif" in result.stdout


def test_p_module_is_loaded(tmp_path, monkeypatch):
    write_module(tmp_path, "my_neuron", GOOD_NEURON)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "lif4" in PluginHost(["my_neuron"]).names("neuron")


def test_p_module_that_does_not_exist_is_a_usage_error():
    with pytest.raises(UsageError, match="-p no_such_module: no module named 'no_such_module'"):
        PluginHost(["no_such_module"])


def test_hook_that_raises_or_returns_the_wrong_type_is_contained(tmp_path, monkeypatch):
    write_module(tmp_path, "bad_hooks", """
        from stxbench.api import hookimpl

        @hookimpl
        def stxbench_add_neurons():
            raise ValueError("oops")

        @hookimpl
        def stxbench_add_pruners():
            return ["not a pruner"]

        @hookimpl
        def stxbench_add_datasets():
            return None
    """)
    monkeypatch.syspath_prepend(str(tmp_path))
    host = PluginHost(["bad_hooks"])
    reasons = sorted(f.reason for f in host.failures)
    assert reasons == [
        "returned a str where a Pruner belongs",
        "stxbench_add_datasets must return a list of Dataset, got NoneType",
        "stxbench_add_neurons raised ValueError: oops",
    ]
    assert "lif" in host.names("neuron") and "none" in host.names("pruner")


def test_builtins_win_name_clashes(tmp_path, monkeypatch):
    write_module(tmp_path, "fake_lif", """
        from stxbench.api import hookimpl
        from stxbench.api import NeuronSpec

        @hookimpl
        def stxbench_add_neurons():
            return [NeuronSpec("lif", "an impostor", tau=8.0)]
    """)
    install_entry_point(tmp_path, "fake_lif", "fake-lif", "fake_lif")
    monkeypatch.syspath_prepend(str(tmp_path))
    host = PluginHost()
    assert host.neuron("lif").tau == 2.0
    assert host.clashes == [
        "neuron 'lif' from plugin 'fake-lif' ignored: already provided by 'neuron-lif'"]


def test_unknown_names_suggest_the_closest():
    host = PluginHost()
    with pytest.raises(UsageError, match=r"unknown neuron 'lfi'; did you mean 'lif'\? valid: ann, lif, plif"):
        host.neuron("lfi")
    with pytest.raises(UsageError, match="unknown backend 'jax'"):
        host.backend("jax")
