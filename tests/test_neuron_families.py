"""Neuron families as plugins: the ALIF example's equations by hand, families run through their
reference on any backend, third-party native implementations held to the reference by parity,
and every way a neuron or family can be unusable refused with one line."""

import math
from pathlib import Path

import pytest
import torch
from backends_util import needs
from helpers import backend_source, backends_hook

from stxbench.api import LIFParams, NeuronSite, NeuronSpec, Surrogate
from stxbench.run.errors import UsageError
from stxbench.host.plugin_host import PluginHost
from stxbench.record.schema import load_record

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "stxbench-alif"
ONE = NeuronSite("n", channels=1, channel_dim=-1, v_threshold=1.0)


@pytest.fixture
def alif(monkeypatch):
    """The example plugin's module, importable as a user's ``-p stxbench_alif`` would be."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    import stxbench_alif

    return stxbench_alif


def run_neuron(module, x):
    module.store_v_seq = True
    spikes = module(torch.tensor(x).reshape(-1, 1, 1))
    return spikes.flatten().tolist(), module.v_seq.flatten().tolist()


def test_alif_adaptation_by_hand(alif):
    # tau_adapt = 1/ln 2: rho = exp(-ln 2) = 1/2, beta = 1. Input 2 every step, then 0:
    # t0: H = 1.0 >= 1 + 1*0 fires (tie), V = 0, a = 0.5
    # t1: H = 0 + 2/2 = 1.0 < 1 + 0.5: no spike (LIF fires here), V = 1, a = 0.25
    # t2: H = 1 + (2 - 1)/2 = 1.5 >= 1.25 fires, V = 0, a = 0.625
    # t3: H = 0
    spec = NeuronSpec("a", "", family="alif", params=alif.ALIFParams(tau_adapt=1 / math.log(2), beta=1.0))
    neuron = alif.ALIFReference(spec, ONE, Surrogate())
    assert run_neuron(neuron, [2.0, 2.0, 2.0, 0.0]) == ([1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.5, 0.0])
    assert [n for n, _ in neuron.named_parameters()] == ["beta"] and neuron.beta.shape == (1,)
    neuron(torch.full((3, 1, 1), 2.0)).sum().backward()
    assert neuron.beta.grad.item() < 0  # a higher threshold means fewer spikes


def test_alif_starts_as_lif_bit_for_bit(alif):
    from stxbench_neuron_lif import LIF, LIFReference

    site = NeuronSite("maps", channels=3, channel_dim=-3, v_threshold=0.5)
    x = torch.randn(6, 2, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 1.5 + 0.5
    a, b = alif.ALIFReference(alif.ALIF, site, Surrogate()), LIFReference(LIF, site, Surrogate())
    a.store_v_seq = b.store_v_seq = True
    assert torch.equal(a(x), b(x)) and torch.equal(a.v_seq, b.v_seq)
    assert a(x).sum() > 0  # spikes happened, so the adaptation state was non-zero
    assert alif.ALIF.tau_adapt == 20.0  # a family's parameters read as the spec's attributes


@needs("spikingjelly")
def test_alif_runs_on_spikingjelly_through_its_reference(cli, alif, tiny_protocol, cache_dir, tmp_path):
    out = tmp_path / "out"
    result = cli("-p", "stxbench_alif", "run", "--protocol", str(tiny_protocol), "--neuron", "alif",
                 "--backend", "spikingjelly", "--set", "train.epochs=0", "--cache-dir", str(cache_dir),
                 "--out", str(out), "-q")
    assert result.code == 0, result.stderr
    record = load_record(out / "result.json")
    assert record.config.backend == "spikingjelly"
    assert {k: (v.family, v.implementation) for k, v in record.config.neurons.items()} == {
        "lif": ("lif", "native"), "alif": ("alif", "reference")}
    assert record.metrics.accuracy != record.metrics.accuracy_pruned  # fine-tuning through the reference trained


THIRD_PARTY_ALIF_BACKENDS = '''
import math

import torch
from stxbench.api import Backend, hookimpl, spike
from stxbench_alif import ALIFReference


class DetachedAdaptation(ALIFReference):
    """A native ALIF with a bug: the same spikes, but no gradient runs through the adaptation."""

    def forward(self, x):
        p = self.params
        rho = math.exp(-1.0 / p.tau_adapt)
        v, a, out, hs = torch.full_like(x[0], p.v_reset), torch.zeros_like(x[0]), [], []
        for x_t in x.unbind(0):
            h = v + (x_t - (v - p.v_reset)) / p.tau
            s = spike(h - (self.site.v_threshold + self.beta * a), self.surrogate)
            v = h * (1.0 - s.detach()) + p.v_reset * s.detach()
            a = rho * a + (1.0 - rho) * s.detach()  # the bug: BPTT no longer runs through a
            out.append(s)
            hs.append(h.detach())
        self.v_seq = torch.stack(hs)
        return torch.stack(out)


''' + backend_source("GoodALIF", "alif-native", "ALIF natively (the reference's code)", "ALIFReference",
                    families='("alif",)') + "\n\n" \
    + backend_source("BadALIF", "alif-detached", "ALIF natively, adaptation detached", "DetachedAdaptation",
                     base="GoodALIF") + "\n\n" + backends_hook("GoodALIF", "BadALIF")


def test_parity_holds_third_party_native_implementations_to_the_family_reference(cli, alif, plugin_dir):
    mod = plugin_dir("stx_alif_backends", THIRD_PARTY_ALIF_BACKENDS)
    result = cli("-p", "stxbench_alif", "-p", mod, "parity", "-n", "alif", "-n", "lif",
                 "-b", "alif-native", "-b", "alif-detached")
    assert result.code == 1
    rows = {(r[0], r[1], r[2]): r[-1] for r in (line.split() for line in result.stdout.splitlines())
            if r and r[-1] in ("PASS", "FAIL")}
    surrogates = ("atan", "sigmoid", "superspike")
    assert rows == {**{("alif", "alif-native", s): "PASS" for s in surrogates},
                    **{("alif", "alif-detached", s): "FAIL" for s in surrogates},
                    # neither backend implements lif: its reference is checked on its own
                    **{("lif", "(reference)", s): "PASS" for s in surrogates}}
    assert "FAIL alif-detached alif atan: outside tolerance" in result.stdout
    assert "note: family lif: no chosen backend implements it natively (" in result.stdout
    assert result.stderr == "error: parity failed for 3 of 9 rows (backends: alif-detached)\n"

    host = PluginHost(["stxbench_alif", mod])
    native = host.backend("alif-native")
    assert host.implementation(host.neuron("alif"), native, Surrogate()).kind == "native"
    lif_there = host.implementation(host.neuron("slif"), native, Surrogate())
    assert lif_there.kind == "reference"  # a backend without lif runs it through lif's reference
    assert type(lif_there.make(ONE)).__name__ == "LIFReference"


BROKEN_FAMILIES = '''
import torch
from stxbench.api import NeuronFamily, NeuronParams, NeuronSpec, hookimpl, spike


class Leaky(torch.nn.Module):
    """Breaks the contract: the membrane carries over from the previous call."""

    def __init__(self, spec, site, surrogate):
        super().__init__()
        self.site, self.surrogate, self.v, self.store_v_seq, self.v_seq = site, surrogate, None, False, None

    def forward(self, x):
        v = torch.zeros_like(x[0]) if self.v is None or self.v.shape != x[0].shape else self.v
        out, hs = [], []
        for x_t in x.unbind(0):
            h = v + (x_t - v) / 2
            s = spike(h - self.site.v_threshold, self.surrogate)
            v = h * (1 - s.detach())
            out.append(s)
            hs.append(h.detach())
        self.v, self.v_seq = v.detach(), torch.stack(hs)
        return torch.stack(out)


class Crashing(torch.nn.Module):
    def __init__(self, spec, site, surrogate):
        super().__init__()

    def forward(self, x):
        raise RuntimeError("not written yet")


class LeakyFamily(NeuronFamily):
    name, summary, Reference = "leaky", "state leaks between calls", Leaky


class CrashingFamily(NeuronFamily):
    name, summary, Reference = "crashing", "forward raises", Crashing


class LibraryOnly(NeuronFamily):
    name, summary = "libonly", "implemented by some library, no reference"


class BadParams(NeuronFamily):
    name, summary, Params = "badparams", "Params is not a NeuronParams", dict


@hookimpl
def stxbench_add_neuron_families():
    return [LeakyFamily(), CrashingFamily(), LibraryOnly(), BadParams()]


@hookimpl
def stxbench_add_neurons():
    return [NeuronSpec(n, f"a {n} neuron", family=n, params=NeuronParams())
            for n in ("leaky", "crashing", "libonly")] + [
            NeuronSpec("ghost", "family nobody provides", family="nosuch", params=NeuronParams())]
'''


def test_a_reference_that_breaks_the_contract_is_a_fail_row(cli, plugin_dir):
    mod = plugin_dir("stx_broken_families", BROKEN_FAMILIES)
    result = cli("-p", mod, "parity", "-n", "leaky", "-n", "crashing")
    assert result.code == 1
    fails = [line for line in result.stdout.splitlines() if line.startswith("FAIL ")]
    assert fails == [
        *(f"FAIL (reference) leaky {s}: state leaks between calls (output depends on the previous batch); "
          "reference: state leaks between calls (output depends on the previous batch)"
          for s in ("atan", "sigmoid", "superspike")),
        *(f"FAIL (reference) crashing {s}: reference: RuntimeError: not written yet"
          for s in ("atan", "sigmoid", "superspike")),
    ]
    assert result.stderr == "error: parity failed for 6 of 6 rows (backends: (reference))\n"


GHOST = ("neuron 'ghost' (plugin 'stx_broken_families') is of neuron family 'nosuch', which no installed "
         "plugin provides; valid families: crashing, leaky, libonly, lif, rate")


@pytest.mark.parametrize("args, message", [
    (("run", "--neuron", "ghost"), GHOST),
    (("parity", "-n", "ghost"), GHOST),
    (("run", "--neuron", "libonly", "--backend", "torch"),
     "backend 'torch' does not implement neuron family 'libonly' (neuron 'libonly') and the family has "
     "no reference implementation; backends that implement it: (none installed)"),
])
def test_an_unusable_neuron_is_one_line_and_exit_2(cli, plugin_dir, tiny_protocol, tmp_path, args, message):
    mod = plugin_dir("stx_broken_families", BROKEN_FAMILIES)
    out = tmp_path / "out"
    extra = ("--protocol", str(tiny_protocol), "--out", str(out)) if args[0] == "run" else ()
    result = cli("-p", mod, *args, *extra)
    assert (result.code, result.stderr) == (2, f"error: {message}\n")
    assert not out.exists()


def test_listing_and_default_parity_show_what_is_unusable(cli, plugin_dir):
    mod = plugin_dir("stx_broken_families", BROKEN_FAMILIES)
    host = PluginHost([mod])
    assert [(f.plugin, f.reason) for f in host.failures] == [
        ("stx_broken_families", "neuron family 'badparams': Params must subclass stxbench.api.NeuronParams")]
    listing = cli("-p", mod, "list", "neurons")
    assert listing.code == 0
    ghost = next(line for line in listing.stdout.splitlines() if line.startswith("ghost"))
    assert "nosuch (not installed)" in ghost
    result = cli("-p", mod, "parity", "-b", "torch")  # every neuron: the broken ones are notes or rows
    assert result.code == 1  # the leaky and crashing references fail
    assert f"note: {GHOST}; not compared" in result.stdout
    assert ("note: family libonly: no reference implementation; its native implementations (none) are not "
            "compared") in result.stdout
    rows = [line.split() for line in result.stdout.splitlines() if line.endswith(("PASS", "FAIL"))]
    assert {(r[0], r[-1]) for r in rows} == {("lif", "PASS"), ("plif", "PASS"), ("slif", "PASS"),
                                            ("leaky", "FAIL"), ("crashing", "FAIL")}


def test_spec_parameters_are_checked_where_the_neuron_is_defined(alif):
    with pytest.raises(ValueError, match="keyword parameters"):
        NeuronSpec("x", "", family="alif", tau=3.0)  # the keyword shorthand is lif's alone
    with pytest.raises(ValueError, match="the lif family takes LIFParams"):
        NeuronSpec("x", "", params=alif.ALIFParams())
    with pytest.raises(ValueError, match="params must be an instance"):
        NeuronSpec("x", "", family="alif", params={"tau": 3.0})
    with pytest.raises(ValueError):
        alif.ALIFParams(tau_adapt=0.0)
    with pytest.raises(ValueError):
        LIFParams(tau=2.0, beta=1.0)  # unknown keys are refused
    assert NeuronSpec("p", "", decay="layer") == NeuronSpec("p", "", family="lif", params=LIFParams(decay="layer"))


def test_a_neuron_with_another_familys_params_is_refused(alif, plugin_dir):
    mod = plugin_dir("stx_mixed", '''
        from stxbench.api import LIFParams, NeuronSpec, hookimpl

        @hookimpl
        def stxbench_add_neurons():
            return [NeuronSpec("mixed", "alif with lif's params", family="alif", params=LIFParams())]
    ''')
    host = PluginHost(["stxbench_alif", mod])
    with pytest.raises(UsageError) as caught:
        host.neuron("mixed")
    assert str(caught.value) == ("neuron 'mixed' (plugin 'stx_mixed'): params are LIFParams, but family 'alif' "
                                 "takes ALIFParams")


def test_malformed_families_and_backends_are_failed_plugins_not_crashes(plugin_dir):
    mod = plugin_dir("stx_malformed", '''
        from stxbench.api import Backend, NeuronFamily, NeuronParams, hookimpl

        class NotAModule(NeuronFamily):
            name, summary, Params, Reference = "notamodule", "Reference is a function", NeuronParams, print

        class OneString(Backend):
            name, summary, families = "onestring", "families is a bare string", "lif"

            def make_neuron(self, spec, site, surrogate):
                raise AssertionError("never built")

        @hookimpl
        def stxbench_add_neuron_families():
            return [NotAModule()]

        @hookimpl
        def stxbench_add_backends():
            return [OneString()]
    ''')
    host = PluginHost([mod])
    assert sorted(f.reason for f in host.failures) == [
        "backend 'onestring': families must be a tuple of neuron family names",
        "neuron family 'notamodule': Reference must be a torch.nn.Module subclass (or None)",
    ]
    assert "notamodule" not in host.names("neuron family") and "onestring" not in host.names("backend")
    assert host.neuron("lif").family == "lif"  # everything else keeps working
