"""The torch backend's fused kernel computes what the plain loop computes, bit for bit.

The kernel bodies are checked twice: run eagerly (``force_eager``: no compilation, every
neuron and surrogate, seconds) they must replay autograd's operations on the plain loop exactly;
compiled (inductor) they must still be exact for the protocols' surrogate (atan) and SuperSpike,
and within parity's tolerance for the sigmoid surrogate (inductor's vectorised ``exp`` differs in
the last bit from ATen's scalar ``exp`` in a tensor's tail elements). Kernels are compiled once
per machine (conftest points ``TORCHINDUCTOR_CACHE_DIR`` at torch's default folder).
"""

from __future__ import annotations

import json

import pytest
import stxbench_backend_torch.fused as fused
import torch
from backends_util import NEURONS, PLAIN_LOOP, PlainLoopBackend
from conftest import TINY_PROTOCOL
from stxbench_backend_torch import LIFFamilyNeuron, TorchBackend
from torch.utils._python_dispatch import TorchDispatchMode

from stxbench.neurons import parity
from stxbench.api import NeuronSite, Surrogate
from stxbench_neuron_lif import LIF
from stxbench_neuron_slif import SLIF

SURROGATES = ("atan", "sigmoid", "superspike")


@pytest.fixture(autouse=True)
def kernel_state(monkeypatch):
    """Each test starts with the kernel working; nothing it breaks outlives it."""
    monkeypatch.setattr(fused, "fallback", None)
    yield
    fused._compiled.clear()
    torch._dynamo.reset()


def exact(row: parity.Row) -> bool:
    return (not row.problems and row.spikes_differing == 0 and row.max_dv == 0
            and row.grad_input == 0 and row.grad_params in (None, 0))


@pytest.mark.parametrize("surrogate", SURROGATES)
@pytest.mark.parametrize("spec", NEURONS, ids=lambda s: s.name)
def test_kernel_bodies_replay_autograd_exactly(spec, surrogate):
    """Parity's inputs (ties at the threshold, a tail far below it, trained per-channel values,
    tokens and feature maps) through the kernel's own forward and backward, run eagerly."""
    with torch.compiler.set_stance("force_eager"):
        row = parity.check(PLAIN_LOOP, TorchBackend(), spec, Surrogate(surrogate))
    assert row.ties > 0
    assert exact(row), row


@pytest.mark.parametrize("spec", NEURONS, ids=lambda s: s.name)
def test_compiled_kernel_equals_the_plain_loop(spec):
    row = parity.check(PLAIN_LOOP, TorchBackend(), spec, Surrogate("atan"))
    assert exact(row), row
    assert fused.fallback is None


@pytest.mark.parametrize("surrogate", ["superspike", "sigmoid"])
def test_compiled_surrogates_on_per_channel_neurons(surrogate, monkeypatch):
    monkeypatch.setattr(parity, "SITES", parity.SITES[:1])  # tokens: one graph per direction
    row = parity.check(PLAIN_LOOP, TorchBackend(), SLIF, Surrogate(surrogate))
    if surrogate == "superspike":
        assert exact(row), row
    else:
        assert row.passed and row.spikes_differing == 0 and row.max_dv == 0, row
        assert 0 <= row.grad_input <= 1e-6 and row.grad_params <= 1e-6
    assert fused.fallback is None


def graphs() -> int:
    return torch._dynamo.utils.counters["stats"]["unique_graphs"]


def test_one_graph_serves_every_batch_size_channel_count_and_site():
    surrogate, gen = Surrogate(), torch.Generator().manual_seed(0)
    before = graphs()
    with torch.no_grad():
        for batch, channels in ((2, 8), (5, 12), (3, 7)):
            neuron = TorchBackend().make_neuron(SLIF, NeuronSite("n", channels, -1), surrogate)
            plain = LIFFamilyNeuron(SLIF, NeuronSite("n", channels, -1), surrogate)
            x = torch.randn(4, batch, 3, channels, generator=gen) * 2
            assert torch.equal(neuron(x), plain(x))
    assert graphs() - before == 1
    before = graphs()
    with torch.no_grad():  # LIF has nothing per channel: tokens and feature maps share a graph
        for site, shape in ((NeuronSite("t", 6, -1, 0.5), (4, 2, 3, 6)), (NeuronSite("m", 3, -3), (4, 2, 3, 5, 5))):
            x = torch.randn(shape, generator=gen) * 2
            assert torch.equal(TorchBackend().make_neuron(LIF, site, surrogate)(x),
                               LIFFamilyNeuron(LIF, site, surrogate)(x))
    assert graphs() - before == 1


def saved_numel(module, x: torch.Tensor) -> int:
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        module(x.requires_grad_(True))
    return sum(saved)


@pytest.mark.parametrize("spec", NEURONS, ids=lambda s: s.name)
def test_backward_keeps_only_the_input(spec):
    site = NeuronSite("n", 16, -1)
    x = torch.randn(4, 8, 5, 16)
    with torch.compiler.set_stance("force_eager"):
        kernel = saved_numel(TorchBackend().make_neuron(spec, site, Surrogate()), x.clone())
    plain = saved_numel(LIFFamilyNeuron(spec, site, Surrogate()), x.clone())
    # besides x: the kernel's k and theta (a 0-dim tensor when fixed); sigmoid(w) keeps k and
    # clamp_min(theta) keeps theta for their own backward, as in the plain loop
    params = {"lif": 1, "plif": 1 + 1 + 1, "slif": 4 * 16}[spec.name]
    assert kernel == x.numel() + params
    assert plain >= 2 * x.numel()


class OpNames(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def test_plain_loop_runs_under_a_dispatch_mode_and_for_other_dtypes(monkeypatch):
    site, surrogate = NeuronSite("n", 6, -1), Surrogate()
    x = torch.randn(3, 2, 6, generator=torch.Generator().manual_seed(1)) * 2
    neuron, plain = TorchBackend().make_neuron(SLIF, site, surrogate), LIFFamilyNeuron(SLIF, site, surrogate)
    monkeypatch.setattr(fused, "_run", None)  # the kernel must not run at all
    with torch.no_grad():
        with OpNames() as mode:  # op counting sees the neuron's own eager ops, as before
            spikes = neuron(x)
        assert {"ge", "mul", "add", "stack"} <= mode.names
        assert torch.equal(spikes, plain(x))
        for dtype in (torch.float64, torch.bfloat16):
            assert torch.equal(neuron(x.to(dtype)), plain(x.to(dtype)))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert torch.equal(neuron(x.bfloat16()), plain(x.bfloat16()))


def test_compile_failure_falls_back_to_the_plain_loop_with_one_warning(no_cxx, capsys):
    """No working C++ compiler: one warning line, then the plain loop, same results."""
    torch._dynamo.reset()
    site, surrogate = NeuronSite("n", 6, -1), Surrogate()
    x = torch.randn(3, 2, 6, generator=torch.Generator().manual_seed(2)) * 2
    results = []
    for module in (TorchBackend().make_neuron(SLIF, site, surrogate), LIFFamilyNeuron(SLIF, site, surrogate)):
        for _ in range(2):  # the second call goes straight to the plain loop
            xin = x.clone().requires_grad_(True)
            spikes = module(xin)
            spikes.sum().backward()
        results.append((spikes, xin.grad, module.w.grad, module.theta.grad))
    for kernel_value, plain_value in zip(*results):
        assert torch.equal(kernel_value, plain_value)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("warning: torch backend: the fused neuron kernel did not compile "
                               "(InductorError: InvalidCxxCompiler")
    assert lines[0].endswith("running the plain loop from here (same results, slower)")
    assert fused.fallback.startswith("InductorError: InvalidCxxCompiler")


@pytest.mark.parametrize("neuron, pruner", [("plif", "none"), ("slif", "dsp")])
def test_records_equal_the_plain_loops(cli, tmp_path, monkeypatch, neuron, pruner):
    """The tiny protocol (LIF dense training, then the swap to PLIF / sLIF and channel pruning,
    attention neurons at threshold 0.5) gives the same record on the kernel and on the plain
    loop: every metric and count, and the same trained weights."""
    protocol = tmp_path / "tiny.toml"
    protocol.write_text(TINY_PROTOCOL.format(dense_epochs=1))
    records = []
    for plain in (False, True):
        monkeypatch.setattr(fused, "fallback", "the plain loop, for comparison" if plain else None)
        out = tmp_path / f"run-{plain}"
        settings = ["--set", "method=channels"] if pruner == "dsp" else []
        result = cli("run", "--protocol", str(protocol), "--neuron", neuron, "--pruner", pruner, *settings,
                     "--cache-dir", str(tmp_path / f"cache-{plain}"), "--out", str(out), "-q")
        assert result.code == 0, result.stderr
        records.append(json.loads((out / "result.json").read_text()))
    kernel, plain = records
    assert kernel["metrics"] == plain["metrics"]
    assert kernel["counts"] == plain["counts"]
    assert kernel["provenance"]["checkpoint_sha256"] == plain["provenance"]["checkpoint_sha256"]
