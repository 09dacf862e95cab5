"""The library backends as a user meets them: listing, lazy imports, refusals with one line,
``stxbench parity`` (third-party backends included), and one dense checkpoint that predicts the
same on every backend."""

import subprocess
import sys

import pytest
import torch
from backends_util import LIBRARY_BACKENDS, LIF, SLIF, make_backend, needs
from helpers import backend_source, backends_hook

from stxbench.api import NeuronSite, Surrogate
from stxbench.run.errors import UsageError
from stxbench.host.plugin_host import PluginHost
from stxbench.run.protocol import load_protocol
from stxbench.record.schema import load_record
from stxbench.run.training import evaluate

installed = needs(*LIBRARY_BACKENDS)

MISSING_BACKEND = '''
from stxbench.api import hookimpl
from stxbench.api import Backend


class MissingBackend(Backend):
    name = "missing"
    summary = "a backend whose library is not installed"
    library = "stxbench-no-such-library"
    extra = "nosuchlib"

    def make_neuron(self, spec, site, surrogate):
        self.check_available()
        raise AssertionError("unreachable")


@hookimpl
def stxbench_add_backends():
    return [MissingBackend()]
'''

# A third-party backend with the classic bug: it fires on `>` (nextafter(H, -inf) >= theta).
GREATER_BACKEND = '''
import torch
from stxbench.api import hookimpl, lif
from stxbench.api import Backend
from stxbench_backend_torch import spike


class GreaterNeuron(torch.nn.Module):
    def __init__(self, spec, site, surrogate):
        super().__init__()
        self.spec, self.site, self.surrogate = spec, site, surrogate
        lif.add_learnables(self, spec, site)
        self.store_v_seq, self.v_seq = False, None

    def forward(self, x):
        k, theta = lif.decay(self, self.spec), lif.threshold(self, self.spec, self.site)
        v, out, hs = torch.zeros_like(x[0]), [], []
        for t in range(x.shape[0]):
            h = lif.charge(v, x[t], 0.0, self.spec.tau, k)
            s = spike(torch.nextafter(h, torch.full_like(h, -torch.inf)) - theta, self.surrogate)
            v = h * (1 - s.detach())
            out.append(s)
            hs.append(h.detach())
        self.v_seq = torch.stack(hs)
        return torch.stack(out)


''' + backend_source("GreaterBackend", "greater", "fires on > (wrong at exact ties)", "GreaterNeuron") + "\n\n" \
    + backends_hook("GreaterBackend")

LOCAL_SLIF = '''
from stxbench.api import hookimpl
from stxbench.api import NeuronSpec


@hookimpl
def stxbench_add_neurons():
    return [NeuronSpec("slif-local", "per-channel decay and threshold", decay="channel", threshold="channel")]
'''


@installed
def test_list_backends_shows_library_versions(cli):
    result = cli("list", "backends")
    assert result.code == 0
    lines = result.stdout.splitlines()
    for name, version in [("spikingjelly", "2.0.0"), ("snntorch", "1.0.0"), ("norse", "1.1.0")]:
        assert any(line.startswith(name) and f"{name} {version}" in line for line in lines), result.stdout


def test_a_missing_library_is_listed_and_refused_with_the_extra(cli, plugin_dir, tiny_protocol, tmp_path):
    mod = plugin_dir("stx_missing_backend", MISSING_BACKEND)
    listing = cli("-p", mod, "list", "backends")
    assert "stxbench-no-such-library (not installed)" in listing.stdout
    assert "missing: pip install 'stxbench[nosuchlib]' installs stxbench-no-such-library" in listing.stdout
    out = tmp_path / "out"
    result = cli("-p", mod, "run", "--protocol", str(tiny_protocol), "--backend", "missing", "--out", str(out))
    assert result.code == 2
    assert result.stderr.strip().splitlines() == [
        "error: backend 'missing' needs stxbench-no-such-library, which is not installed: "
        "pip install 'stxbench[nosuchlib]'"
    ]
    assert not out.exists()
    parity = cli("-p", mod, "parity", "--backend", "missing")
    assert parity.code == 0
    assert "note: missing: not installed (pip install 'stxbench[nosuchlib]')" in parity.stdout


def test_library_imports_wait_until_a_neuron_is_built():
    code = (
        "import sys; from stxbench.host.plugin_host import PluginHost; host = PluginHost(); "
        "assert {'spikingjelly', 'snntorch', 'norse'} <= set(host.names('backend')), host.failures; "
        "print(sorted(m for m in ('spikingjelly', 'snntorch', 'norse') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "backend_name, surrogate, message",
    [
        pytest.param("norse", Surrogate("atan"), "backend 'norse' has no 'atan' surrogate; valid: superspike"
                     " (choose one with --set model.surrogate=superspike, which makes the run unofficial)",
                     marks=needs("norse")),
        pytest.param("norse", Surrogate("sigmoid"), "backend 'norse' has no 'sigmoid' surrogate; valid: superspike"
                     " (choose one with --set model.surrogate=superspike, which makes the run unofficial)",
                     marks=needs("norse")),
        pytest.param("norse", Surrogate("superspike", 2.0),
                     "backend 'norse' computes the 'superspike' surrogate only with alpha=1, not 2"
                     " (--set model.surrogate_alpha=1, which makes the run unofficial)",
                     marks=needs("norse")),
        pytest.param("snntorch", Surrogate("superspike", 2.0),
                     "backend 'snntorch' computes the 'superspike' surrogate only with alpha=1, not 2"
                     " (--set model.surrogate_alpha=1, which makes the run unofficial)",
                     marks=needs("snntorch")),
    ],
)
def test_a_surrogate_the_library_lacks_is_refused_not_swapped(backend_name, surrogate, message):
    with pytest.raises(UsageError) as caught:
        make_backend(backend_name).make_neuron(LIF, NeuronSite("n", 1, -1), surrogate)
    assert str(caught.value) == message


@needs("norse")
def test_run_on_norse_with_the_protocols_atan_is_refused_before_any_work(cli, tiny_protocol, tmp_path):
    out = tmp_path / "out"
    result = cli("run", "--protocol", str(tiny_protocol), "--backend", "norse", "--out", str(out))
    assert result.code == 2
    assert result.stderr.strip() == ("error: backend 'norse' has no 'atan' surrogate; valid: superspike"
                                     " (choose one with --set model.surrogate=superspike, which makes the run unofficial)")
    assert not out.exists()


@installed
def test_parity_passes_and_names_every_backend_and_neuron(cli, plugin_dir):
    mod = plugin_dir("stx_local_slif", LOCAL_SLIF)
    result = cli("-p", mod, "parity")
    assert result.code == 0, result.stdout + result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if line.endswith(("PASS", "FAIL"))]
    neurons = [n for n in PluginHost([mod]).names("neuron") if n != "ann"]  # ann does not spike
    assert {"lif", "plif", "slif-local"} <= set(neurons)
    assert "note: ann: family rate does not spike; parity compares spiking neurons only" in result.stdout
    # every neuron x (torch 3 + spikingjelly 3 + snntorch 3 + norse 1 surrogates): all of them
    # implement the lif family natively and are held to its reference
    assert len(rows) == len(neurons) * 10 and all(row[-1] == "PASS" for row in rows)
    assert {row[1] for row in rows} == {"torch", *LIBRARY_BACKENDS}
    assert {row[0] for row in rows} == set(neurons)
    assert "note: norse: refuses" in result.stdout


def test_parity_fails_a_third_party_backend_that_fires_on_greater_than(cli, plugin_dir):
    mod = plugin_dir("stx_greater_backend", GREATER_BACKEND)
    result = cli("-p", mod, "parity")
    assert result.code == 1
    failing = [line for line in result.stdout.splitlines() if line.endswith("FAIL")]
    assert failing and all(line.split()[1] == "greater" for line in failing)
    assert "FAIL greater lif atan: outside tolerance" in result.stdout
    assert result.stderr.strip().splitlines() == [
        f"error: parity failed for {len(failing)} of "
        f"{sum(1 for line in result.stdout.splitlines() if line.endswith(('PASS', 'FAIL')))} rows (backends: greater)"
    ]


def test_parity_refuses_an_unknown_backend_with_one_line(cli):
    result = cli("parity", "--backend", "snntroch")
    assert result.code == 2
    assert result.stderr.strip().splitlines()[0].startswith("error: unknown backend 'snntroch'; did you mean 'snntorch'?")


@pytest.mark.parametrize("backend", [pytest.param(n, marks=needs(n)) for n in LIBRARY_BACKENDS])
def test_the_headline_run_works_on_every_library_backend(cli, tiny_protocol, cache_dir, tmp_path, backend):
    out = tmp_path / backend
    surrogate = ["--set", "model.surrogate=superspike"] if backend == "norse" else []
    result = cli("run", "--protocol", str(tiny_protocol), "--neuron", "slif", "--pruner", "dsp",
                 "--backend", backend, *surrogate,
                 "--set", "train.epochs=0",  # fine-tuning alone shows training works; seconds
                 "--cache-dir", str(cache_dir), "--out", str(out), "-q")
    assert result.code == 0, result.stderr
    record = load_record(out / "result.json")
    assert (record.config.neuron, record.config.pruner, record.config.backend) == ("slif", "dsp", backend)
    assert record.provenance.libraries == {backend: {"spikingjelly": "2.0.0", "snntorch": "1.0.0", "norse": "1.1.0"}[backend]}
    m = record.metrics
    assert m.accuracy_dense == 0.1  # untrained: one class for every image
    assert m.accuracy != m.accuracy_pruned and m.firing_rate > 0  # the library's gradients trained it
    compiled = record.provenance.execution.compile  # spikingjelly's fastest path on a CPU is compiled
    if backend == "spikingjelly":
        assert compiled is not None and compiled.fallback is None and compiled.graphs > 0
    else:
        assert compiled is None


@pytest.mark.parametrize("backend, flag, compiled", [
    pytest.param(*case, marks=needs(case[0]) if case[0] != "torch" else ())
    for case in [("spikingjelly", None, True), ("spikingjelly", False, False), ("torch", None, False),
                 ("snntorch", None, False), ("snntorch", True, True)]
])
def test_a_backend_may_compile_its_neurons_by_default(backend, flag, compiled, tmp_path):
    """spikingjelly compiles on a CPU unless --no-compile; on CUDA it has kernels of its own. The
    torch backend's kernel compiles itself, so the run compiles nothing more for it."""
    from stxbench.run.resolve import resolve
    from stxbench.run.config import RunOptions

    host = PluginHost()
    config = resolve(host, neuron="slif", pruner="dsp", backend=backend, seed=None, settings=[], out_dir=tmp_path,
                     options=RunOptions(device="cpu", cache_dir=tmp_path, compile=flag))
    assert config.compile is compiled
    assert host.backend(backend).compile_by_default("cuda") is False


@installed
def test_one_dense_checkpoint_predicts_the_same_on_every_backend(cli, tiny_protocol, cache_dir, tmp_path):
    result = cli("run", "--protocol", str(tiny_protocol), "--backend", "torch",
                 "--cache-dir", str(cache_dir), "--out", str(tmp_path / "run"), "-q")
    assert result.code == 0, result.stderr
    (checkpoint,) = (cache_dir / "dense").glob("*.pt")
    state = torch.load(checkpoint, weights_only=True)
    host = PluginHost()
    proto = load_protocol(str(tiny_protocol))
    splits = host.dataset(proto.data.dataset).load(None)
    family = host.model_family("spikformer")

    def predictions(backend_name, spec):
        backend = host.backend(backend_name)
        surrogate = Surrogate("superspike")  # norse has only this one; forward spikes do not care
        model = family.build(
            proto.model.name.partition("-")[2], input_shape=splits.input_shape,
            num_classes=splits.num_classes, T=proto.model.T, options=dict(proto.model.options),
            make_neuron=lambda site: backend.make_neuron(spec, site, surrogate),
        )
        model.load_state_dict(state if spec is LIF else {**state, **slif_state(model)})  # strict
        return evaluate(model, splits, proto.eval.batch_size, torch.device("cpu")).predictions

    def slif_state(model):  # sLIF at initialisation: plug-and-play for the LIF checkpoint
        return {k: v for k, v in model.state_dict().items() if k.endswith(("impl.w", "impl.theta"))}

    reference = predictions("torch", LIF)
    assert len(set(reference.tolist())) >= 5  # a model that discriminates, not a constant
    for name in ("spikingjelly", "snntorch", "norse"):
        assert torch.equal(predictions(name, LIF), reference), name
        assert torch.equal(predictions(name, SLIF), reference), name
