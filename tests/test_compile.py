"""``--compile``: compiled neuron layers compute what eager ones do; failures fall back, recorded.

The torch backend's neurons compile themselves (its fused kernel), so ``--compile`` leaves them
alone; what ``--compile`` itself compiles is tested on the plain loop, as the ``torch-loop``
backend of the test plugin ``plain_loop_backend``. Compilation costs seconds per graph, so the
compiled runs here share one kernel cache (the first compiles the tiny model's 6 graphs, about
25 s in a fresh cache; the others load them).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import stxbench_backend_torch.fused as fused
import torch
from conftest import TINY_PROTOCOL
from plain_loop_backend import PlainLoopBackend

from stxbench.neurons.compile import CompiledForward, compile_neurons
from stxbench.host.plugin_host import PluginHost
from stxbench.run.protocol import load_protocol
from stxbench.run.resolve import resolve
from stxbench.run.context import Run, build_model
from stxbench.run.config import RunOptions
from stxbench.run.training import NullReporter, StageHooks, evaluate, train_stage

TINY_GRAPHS = 6  # stem, token and attention neurons (threshold 0.5), with and without grad


@pytest.fixture(scope="module")
def protocols(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("protocols")
    paths = {"eager": folder / "tiny.toml", "compiled": folder / "tiny-compiled.toml"}
    paths["eager"].write_text(TINY_PROTOCOL.format(dense_epochs=2))
    paths["compiled"].write_text("compile = true\n" + TINY_PROTOCOL.format(dense_epochs=2))
    return paths


@pytest.fixture(scope="module", autouse=True)
def kernel_cache():
    """torch's own default kernel cache (``/tmp/torchinductor_$USER``) rather than one under each
    test's stxbench cache: later test sessions load the kernels instead of compiling them."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())
        yield


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Each test traces its graphs anew (graph counts are per process), from the kernel cache."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.fixture(scope="module")
def eager_record(protocols, tmp_path_factory) -> dict:
    from conftest import run_cli

    out = tmp_path_factory.mktemp("eager")
    result = run_cli("run", "--protocol", str(protocols["eager"]), "--cache-dir", str(out / "cache"),
                     "--out", str(out / "run"), "-q")
    assert result.code == 0, result.stderr
    record = json.loads((out / "run" / "result.json").read_text())
    record["cache"] = out / "cache"
    return record


def same_results(a: dict, b: dict) -> None:
    assert a["metrics"] == b["metrics"]  # accuracy, correct, firing rate of every layer, ...
    assert a["counts"] == b["counts"]
    assert a["protocol"]["sha256"] == b["protocol"]["sha256"]
    if a["config"]["backend"] == b["config"]["backend"]:  # torch.save names its records after the file,
        assert a["provenance"]["checkpoint_sha256"] == b["provenance"]["checkpoint_sha256"]  # which names the backend


def same_weights(cache_a: Path, cache_b: Path) -> None:
    (a,), (b,) = ((cache / "dense").glob("*.pt") for cache in (cache_a, cache_b))
    state_a, state_b = (torch.load(path, weights_only=True) for path in (a, b))
    assert state_a.keys() == state_b.keys()
    assert all(torch.equal(state_a[key], state_b[key]) for key in state_a)


def test_protocol_default_compiles_and_equals_eager(cli, protocols, eager_record, tmp_path):
    """The plain loop compiled by --compile equals the torch backend's kernel run eager."""
    result = cli("-p", "plain_loop_backend", "run", "--protocol", str(protocols["compiled"]), "--backend", "torch-loop",
                 "--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path / "run"), "-q")
    assert result.code == 0, result.stderr
    assert result.stderr == ""
    record = json.loads((tmp_path / "run" / "result.json").read_text())
    info = record["provenance"]["execution"]["compile"]
    assert info["target"] == "neurons" and info["fallback"] is None
    assert info["graphs"] == TINY_GRAPHS  # nothing recompiled per batch, stage or evaluation
    assert eager_record["provenance"]["execution"]["compile"] is None
    # the dense model trained compiled has the same weights, and everything after it is the same
    same_results(record, eager_record)
    same_weights(tmp_path / "c", eager_record["cache"])


def test_no_compile_flag_overrides_protocol_default(cli, protocols, eager_record, tmp_path):
    result = cli("run", "--protocol", str(protocols["compiled"]), "--no-compile", "--cache-dir",
                 str(tmp_path / "c"), "--out", str(tmp_path / "run"), "-q")
    assert result.code == 0, result.stderr
    record = json.loads((tmp_path / "run" / "result.json").read_text())
    assert record["provenance"]["execution"]["compile"] is None
    same_results(record, eager_record)


def test_compile_is_not_part_of_the_protocol_hash(protocols):
    eager, compiled = (load_protocol(str(protocols[k])) for k in ("eager", "compiled"))
    assert (eager.compile, compiled.compile) == (False, True)
    assert eager.sha256() == compiled.sha256()
    assert eager.dense_key(0, "torch") == compiled.dense_key(0, "torch")


class StepLosses(NullReporter):
    def __init__(self):
        self.losses: list[float] = []

    def advance(self, loss):
        self.losses.append(loss)



def test_compiled_training_and_predictions_bit_identical(protocols, tmp_path):
    host = PluginHost(())
    config = resolve(host, protocol=str(protocols["eager"]), neuron="lif", pruner="none", backend="torch",
                     seed=0, settings=[], out_dir=tmp_path, options=RunOptions(device="cpu", cache_dir=tmp_path))
    splits = host.dataset("digits").load(None)
    proto = config.protocol
    warnings = []
    runs = {}
    for compiled in (False, True):
        run = Run(config, host, torch.device("cpu"), splits, PlainLoopBackend(), config.surrogate,
                  NullReporter(), warnings.append)
        model = build_model(run)
        compiler = compile_neurons(model, tmp_path, warnings.append) if compiled else None
        losses = StepLosses()
        train_stage(model, splits, proto.train, name="dense", seed=0, device=run.device,
                    hooks=StageHooks(reporter=losses))
        full = evaluate(model, splits, 360, run.device)
        graphs = compiler.graphs if compiler else 0
        partial = evaluate(model, splits, 100, run.device)  # batches of 100, 100, 100, 60
        if compiler:
            assert compiler.graphs == graphs == TINY_GRAPHS  # other batch sizes: no recompile
            assert all(isinstance(slot.impl.__dict__.get("forward"), CompiledForward)
                       for _, slot in model.neuron_slots())
        runs[compiled] = (losses.losses, full.predictions, partial.predictions)
    assert warnings == []
    (eager_losses, eager_full, eager_partial), (losses, full, partial) = runs[False], runs[True]
    assert len(losses) == 2 * (1437 // 32)
    assert losses == eager_losses
    assert torch.equal(full, eager_full) and torch.equal(partial, eager_partial)
    assert torch.equal(full, partial)


def test_rebuilt_neurons_are_compiled_when_they_run(tmp_path):
    """The stage-3 swap and channel pruning rebuild ``slot.impl``; the next forward compiles the
    new module (run under the force_eager stance: the wiring is tested here, not inductor)."""
    from stxbench_neuron_slif import SLIF
    from tiny_models import factory, tiny_model

    from stxbench_pruner_dsp import DSP, DSPParams

    model = tiny_model(backend=PlainLoopBackend())
    compile_neurons(model, tmp_path, lambda line: None)
    model.swap_neurons(factory(SLIF, PlainLoopBackend()))
    DSP().prune(model, DSPParams(method="channels", keep=0.5))
    fc1 = model.get_submodule(model.hidden_layers()[0].neuron)
    with torch.compiler.set_stance("force_eager"), torch.no_grad():
        model.eval()(torch.rand(3, 1, 8, 8))
    assert fc1.site.channels == fc1.impl.theta.shape[0] == 32  # 64 hidden units, half kept
    for name, slot in model.neuron_slots():
        assert isinstance(slot.impl.__dict__.get("forward"), CompiledForward), name


def test_recompile_limit_is_a_recorded_fallback_not_a_silent_one(monkeypatch, tmp_path):
    """torch runs a function eager, silently, once it has compiled it recompile_limit times;
    here that becomes the recorded fallback (a limit of 2 is hit by the third neuron kind)."""
    import stxbench.neurons.compile
    from tiny_models import tiny_model

    monkeypatch.setitem(stxbench.neurons.compile._DYNAMO_SETTINGS, "recompile_limit", 2)
    model = tiny_model(backend=PlainLoopBackend()).eval()
    warnings = []
    compiler = compile_neurons(model, tmp_path, warnings.append)
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        out = model(x)
        assert torch.equal(out, model(x))
    reason = ("LIFFamilyNeuron: more than 2 graphs of one forward (torch's recompile limit, past "
              "which it runs eager silently)")
    assert (compiler.graphs, compiler.fallback) == (2, reason)
    assert warnings == [f"torch.compile failed on neuron {reason}; running eager from here (same results, slower)"]
    assert compiler.info().model_dump() == {"target": "neurons", "fallback": reason, "graphs": 2,
                                            "compile_s": round(compiler.seconds, 3)}
    with torch.compiler.set_stance("force_eager"), torch.no_grad():
        assert torch.equal(out, model(x))


def test_compile_failure_falls_back_with_one_recorded_warning(cli, protocols, eager_record, tmp_path, no_cxx):
    """No working C++ compiler (as on a machine without one): the run warns once, finishes
    eager with the eager results, and records why."""
    result = cli("-p", "plain_loop_backend", "run", "--protocol", str(protocols["eager"]), "--backend", "torch-loop",
                 "--compile", "--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path / "run"), "-q")
    assert result.code == 0, result.stderr
    note, *lines = result.stderr.strip().splitlines()
    assert note.startswith("note: no compiled kernels in "), note  # the empty kernel cache, said before it compiles
    assert len(lines) == 1, lines
    assert lines[0].startswith("warning: torch.compile failed on neuron LIFFamilyNeuron: InductorError: "
                               "InvalidCxxCompiler")
    assert lines[0].endswith("running eager from here (same results, slower)")
    record = json.loads((tmp_path / "run" / "result.json").read_text())
    info = record["provenance"]["execution"]["compile"]
    assert info["fallback"].startswith("LIFFamilyNeuron: InductorError: InvalidCxxCompiler: No working C++ compiler")
    assert info["graphs"] == 0
    same_results(record, eager_record)


def test_compile_leaves_the_fused_kernel_alone_and_records_its_fallback(cli, protocols, eager_record, tmp_path,
                                                                        monkeypatch, no_cxx):
    """The torch backend's kernel is compiled already: --compile wraps none of its neurons. When
    the kernel cannot compile (no C++ compiler), it warns once, the run goes on with the plain
    loop (same results) and the record says why."""
    monkeypatch.setattr(fused, "fallback", None)
    fused._compiled.clear()
    result = cli("run", "--protocol", str(protocols["eager"]), "--compile", "--cache-dir",
                 str(tmp_path / "c"), "--out", str(tmp_path / "run"), "-q")
    fused._compiled.clear()
    assert result.code == 0, result.stderr
    note, *lines = result.stderr.strip().splitlines()
    assert note.startswith("note: no compiled kernels in "), note  # the empty kernel cache, said before it compiles
    assert len(lines) == 1, lines
    assert lines[0].startswith("warning: torch backend: the fused neuron kernel did not compile (InductorError: "
                               "InvalidCxxCompiler")
    record = json.loads((tmp_path / "run" / "result.json").read_text())
    info = record["provenance"]["execution"]["compile"]
    assert info["fallback"].startswith("FusedLIFFamilyNeuron: InductorError: InvalidCxxCompiler: No working C++ compiler")
    assert info["graphs"] == 0
    same_results(record, eager_record)


def test_fused_neurons_are_not_wrapped(tmp_path):
    from tiny_models import tiny_model

    model = tiny_model()
    compiler = compile_neurons(model, tmp_path, lambda line: None)
    with torch.compiler.set_stance("force_eager"), torch.no_grad():
        model.eval()(torch.rand(3, 1, 8, 8))
    assert compiler.graphs == 0 and compiler.info().fallback is None
    for name, slot in model.neuron_slots():
        assert slot.impl.compiles_itself and "forward" not in slot.impl.__dict__, name
