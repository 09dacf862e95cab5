"""``--compile``: neuron layers run through ``torch.compile``, for training and evaluation.

What is compiled is the forward of every neuron module a backend builds (``NeuronSlot.impl``):
its per-time-step loop of small elementwise ops is where eager PyTorch loses its time, and
inductor fuses the whole loop (forward, and backward through AOTAutograd) into a few kernels.
Convolutions, linears and BatchNorm stay eager: they are single ATen kernels already. Compiling
the whole Spikformer instead was measured on digits: 257 s of compilation for a train step 10 %
faster than with compiled neurons, and results no longer equal to eager (BatchNorm fused).

What stays eager, on purpose:

* ``NeuronSlot`` itself, so its forward hooks (firing rates) see every slot's output;
* every call made while a ``TorchDispatchMode`` is active, so op counting sees each eager op;
* a neuron module whose class says ``compiles_itself = True`` (the torch backend's fused
  kernel, `stxbench_backend_torch.fused`) is left as it is: it is compiled already, and
  compiling its caller again would only trace it twice. If its own compilation failed, it warned
  once and the record's ``fallback`` gives its ``kernel_fallback`` reason;
* nothing is compiled ahead of time: a forward pre-hook on each slot compiles whatever ``impl``
  the slot holds when it runs, so neurons rebuilt by the stage-3 swap or by channel pruning
  (`NeuronSlot.rebuild`) are compiled too.

Shapes: every dimension but time is marked dynamic, so one graph serves every batch size (the
last, partial evaluation batch included) and channel count: a LIF Spikformer compiles 6 graphs
(stem / token / attention neurons, with and without grad). Graph breaks are allowed (norse's
cell cannot be traced whole; its pieces are still compiled). dynamo gives up on a function after
``recompile_limit`` graphs and then *silently* runs it eager; here that limit is raised to
`RECOMPILE_LIMIT` and hitting it raises, like any other failure to compile (inductor finds no
C++ compiler, dynamo cannot trace a backend's code): the run goes on eager from that call,
prints one warning line and records the reason (``provenance.execution.compile.fallback``). Compiled
and eager neurons compute the same spikes, so only speed is lost.

Same results: compiled LIF and PLIF train bit-identically to eager on the CPU (a test checks
predictions, losses and the record). Neurons with per-channel learnables (sLIF) give the same
forward values, but their parameter gradients are sums over batch, tokens and time that inductor
adds in another order, so training drifts in the last bits, as with another ``--threads``.

Compiled kernels are cached in ``$TORCHINDUCTOR_CACHE_DIR``, by default ``<stxbench cache
dir>/inductor``, so a second run of the same shapes compiles in seconds instead of a minute.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.utils._python_dispatch import _get_current_dispatch_mode

from stxbench.data.contract import DataSplits
from stxbench.run.errors import one_line
from stxbench.neurons.kernel_cache import LEAF, compile_errors, kernel_cache_for_this_cpu
from stxbench.models.base import SpikingModel
from stxbench.record.schema import CompileInfo
from stxbench.run.training import dataset_head

#: graphs one neuron forward may compile before that counts as a failure (dynamo's default: 8)
RECOMPILE_LIMIT = 64
CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"
_RECOMPILE_LOG = logging.getLogger("torch._dynamo.convert_frame")
_DYNAMO_SETTINGS = dict(
    recompile_limit=RECOMPILE_LIMIT,
    fail_on_recompile_limit_hit=True,
    force_parameter_static_shapes=False,  # per-channel learnables of any width share a graph
)
_cache_dir_we_set: str | None = None


def use_cache_dir(stxbench_cache: Path) -> str:
    """Point inductor's kernel cache under the stxbench cache, unless the user chose one; apart
    for each CPU capability (`stxbench.neurons.kernel_cache`)."""
    global _cache_dir_we_set
    current = os.environ.get(CACHE_ENV)
    if current is not None and Path(current).name.startswith(LEAF):
        current = str(Path(current).parent)
    if current is None or current == _cache_dir_we_set:
        current = _cache_dir_we_set = str((Path(stxbench_cache) / "inductor").absolute())
    os.environ[CACHE_ENV] = current
    return kernel_cache_for_this_cpu()


def _graphs_compiled() -> int:
    return torch._dynamo.utils.counters["stats"]["unique_graphs"]


class NeuronCompiler:
    """Compiles the neuron modules of one model, and keeps what the record reports about it."""

    def __init__(self, warn: Callable[[str], None] = lambda line: None):
        self.warn = warn
        self.fallback: str | None = None  # why the run went on eager, if it did
        self.seconds = 0.0  # wall time of the calls that compiled a graph
        self.graphs = 0
        self.slots: list[nn.Module] = []

    def attach(self, model: SpikingModel) -> NeuronCompiler:
        self.slots = [slot for _, slot in model.neuron_slots()]
        for slot in self.slots:
            slot.register_forward_pre_hook(self._compile_impl)
        return self

    def _compile_impl(self, slot: nn.Module, args) -> None:
        impl = slot.impl
        if getattr(impl, "compiles_itself", False):
            return  # a backend's own compiled kernel (the torch backend's): compiled already
        if not isinstance(impl.__dict__.get("forward"), CompiledForward):
            impl.forward = CompiledForward(impl.forward, self, type(impl).__name__)

    def fail(self, where: str, exc: BaseException) -> None:
        if self.fallback is None:
            reason = re.split(r" (?:Set TORCHDYNAMO_VERBOSE|Explanation:|Hint:|from user code:)", one_line(exc))[0]
            if type(exc).__name__ == "FailOnRecompileLimitHit":
                limit = _DYNAMO_SETTINGS["recompile_limit"]
                reason = f"more than {limit} graphs of one forward (torch's recompile limit, past which it runs eager silently)"
            self.fallback = f"{where}: {reason[:300]}"
            self.warn(f"torch.compile failed on neuron {self.fallback}; running eager from here "
                      "(same results, slower)")

    def info(self) -> CompileInfo:
        fallback = self.fallback
        for slot in self.slots:  # a kernel that compiles itself warned on its own when it failed
            reason = getattr(slot.impl, "kernel_fallback", None)
            if fallback is None and reason:
                fallback = f"{type(slot.impl).__name__}: {reason}"
        return CompileInfo(target="neurons", fallback=fallback, graphs=self.graphs,
                           compile_s=round(self.seconds, 3))


class CompiledForward:
    """A neuron module's forward, compiled; eager under a dispatch mode or after a failure."""

    def __init__(self, eager: Callable, compiler: NeuronCompiler, name: str):
        self.eager = eager
        self.compiler = compiler
        self.name = name
        kernel_cache_for_this_cpu()  # inductor's cache key misses the CPU pin's ISA
        self.compiled = torch.compile(eager)
        self.errors = compile_errors()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        compiler = self.compiler
        if compiler.fallback is not None or _get_current_dispatch_mode() is not None:
            return self.eager(x)
        for dim in range(1, x.dim()):  # time stays static: the loop over it is unrolled
            torch._dynamo.maybe_mark_dynamic(x, dim)
        graphs = _graphs_compiled()
        start = time.perf_counter()
        level = _RECOMPILE_LOG.level
        _RECOMPILE_LOG.setLevel(logging.ERROR)  # the limit's log lines: `fail` says it in one
        try:
            with torch._dynamo.config.patch(**_DYNAMO_SETTINGS):
                out = self.compiled(x)
        except self.errors as exc:
            compiler.fail(self.name, exc)
            return self.eager(x)
        finally:
            _RECOMPILE_LOG.setLevel(level)
        if _graphs_compiled() > graphs:
            compiler.graphs += _graphs_compiled() - graphs
            compiler.seconds += time.perf_counter() - start
        return out


def compile_neurons(model: SpikingModel, cache_dir: Path, warn: Callable[[str], None]) -> NeuronCompiler:
    """Compile ``model``'s neuron layers from now on (see the module docstring)."""
    use_cache_dir(cache_dir)
    return NeuronCompiler(warn).attach(model)


def first_batch(splits: DataSplits, batch_size: int) -> DataSplits:
    """``splits`` with the test split cut to its first batch: evaluating it compiles the
    evaluation graphs before an evaluation is timed."""
    return dataclasses.replace(splits, test=dataset_head(splits.test, batch_size))
