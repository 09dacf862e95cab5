"""The portable CPU pin (portable-v2) holds on every run path: IEEE square roots in place of MKL's,
and no other MKL vector-math op anywhere a built-in run goes.

Why: ATen sends ``sqrt``, ``exp``, ``log``, ``tanh``, ``atan``, ``erf``, the trigonometric ops and
``trunc`` of CPU tensors to MKL's vector-math library (VML), which chooses its code by CPU vendor
and model and ignores ``MKL_CBWR``. Its ``sqrt`` is not correctly rounded, and an AMD-made entry
re-ran on an Intel Xeon to other numbers through AdamW's square root (docs/numerics.md). The pin
replaces ``sqrt``; this audit records every ATen op of a training step, pruning included, for
each built-in model, neuron and backend, and fails on any VML op, so a new code path that would
make entries CPU-dependent is caught here rather than by a re-run on another machine.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from backends_util import needs
from stxbench.run import cpu_pin
from stxbench.api import Surrogate
from stxbench.host.plugin_host import PluginHost
from stxbench.run.protocol import StageSection
from stxbench.run.training import make_optimizer

#: ATen ops whose float CPU kernels call MKL's VML (found with gdb breakpoints on libtorch_cpu's
#: vms*/vmd* entry points; torch 2.13): their bits depend on the CPU's vendor and model.
#: ``trunc`` is exact whatever computes it; ``sqrt`` is replaced under the pin.
VML_OPS = {"acos", "asin", "atan", "cos", "erf", "erfc", "erfinv", "exp", "log", "log10", "log2",
           "sin", "tan", "tanh", "sqrt"}


def ieee_sqrt(a: np.ndarray) -> np.ndarray:
    return np.sqrt(a)  # SQRTPS / SQRTPD: exact by IEEE 754 on every x86-64 CPU


@pytest.fixture(scope="module")
def pinned_sqrt():
    cpu_pin.install_ieee_sqrt()
    return cpu_pin.PINS["portable-v2"]


def test_portable_v2_replaces_sqrt_and_records_it(pinned_sqrt):
    assert pinned_sqrt.ieee_sqrt and not cpu_pin.PINS["portable-v1"].ieee_sqrt
    assert cpu_pin.current()["ieee_sqrt"] is True
    assert cpu_pin.CURRENT == "portable-v2"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sqrt_is_ieee_in_every_form(pinned_sqrt, dtype):
    """MKL's sqrt differed from IEEE in 17 % of these float32 values (10,957 of 65,536)."""
    a = np.abs(np.random.default_rng(1).standard_normal(1 << 16)).astype(dtype)
    want = ieee_sqrt(a)
    x = torch.from_numpy(a.copy())
    assert np.array_equal(torch.sqrt(x).numpy(), want)
    assert np.array_equal(x.sqrt().numpy(), want)
    out = torch.empty(0, dtype=x.dtype)
    torch.sqrt(x, out=out)
    assert np.array_equal(out.numpy(), want)
    strided = torch.from_numpy(a.copy())
    strided[::2].sqrt_()  # in place, through a view: the other half untouched
    assert np.array_equal(strided.numpy()[::2], want[::2]) and np.array_equal(strided.numpy()[1::2], a[1::2])
    assert np.array_equal(torch.from_numpy(a.reshape(256, 256)).t().sqrt().numpy(), want.reshape(256, 256).T)


def test_sqrt_keeps_torch_semantics(pinned_sqrt):
    ints = torch.tensor([0, 1, 4, 9])
    assert torch.sqrt(ints).dtype == torch.float32 and torch.sqrt(ints).tolist() == [0.0, 1.0, 2.0, 3.0]
    special = torch.tensor([-1.0, 0.0, -0.0, float("inf")])
    got = torch.sqrt(special)
    assert torch.isnan(got[0]) and got[1:].tolist() == [0.0, -0.0, float("inf")]
    assert torch.signbit(got[2])
    half = torch.tensor([2.0, 3.0], dtype=torch.bfloat16)
    assert torch.sqrt(half).dtype == torch.bfloat16
    x = torch.tensor([4.0, 9.0], requires_grad=True)
    torch.sqrt(x).sum().backward()  # autograd's formula: 1 / (2 sqrt(x))
    assert x.grad.tolist() == [0.25, pytest.approx(1 / 6)]


def test_adamw_step_uses_ieee_sqrt(pinned_sqrt):
    """AdamW's denominator is the one MKL op on the training path: 5 steps of torch's AdamW equal,
    bit for bit, the same operations written out with numpy's IEEE square root."""
    rng = np.random.default_rng(7)
    w0 = rng.standard_normal((64, 32)).astype(np.float32)
    grads = [torch.from_numpy(rng.standard_normal((64, 32)).astype(np.float32)) for _ in range(5)]
    lr, wd, (beta1, beta2), eps = 1e-3, 0.01, (0.9, 0.999), 1e-8
    p = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    opt = torch.optim.AdamW([p], lr=lr, weight_decay=wd)
    param, m, v = torch.from_numpy(w0.copy()), torch.zeros(64, 32), torch.zeros(64, 32)
    for step, g in enumerate(grads, start=1):
        p.grad = g.clone()
        opt.step()
        param.mul_(1 - lr * wd)  # torch.optim.adam._single_tensor_adam, decoupled weight decay
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        denom = (torch.from_numpy(ieee_sqrt(v.numpy())) / (1 - beta2**step) ** 0.5).add_(eps)
        param.addcdiv_(m, denom, value=-(lr / (1 - beta1**step)))
    assert torch.equal(p.detach(), param)


class OpRecorder(TorchDispatchMode):
    """Names every ATen op that runs on a floating-point CPU tensor (``exp_`` counts as ``exp``)."""

    def __init__(self):
        super().__init__()
        self.ops: dict[str, str] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__.rstrip("_")
        tensors = [a for a in (*args, *(kwargs or {}).values()) if isinstance(a, torch.Tensor)]
        if any(t.device.type == "cpu" and t.is_floating_point() for t in tensors):
            self.ops.setdefault(name, str(func))
            if name == "pow" and len(args) > 1 and not isinstance(args[1], torch.Tensor) and abs(args[1]) == 0.5:
                self.ops.setdefault("sqrt", f"{func} with exponent {args[1]}")  # ATen sends it to MKL's sqrt
        return func(*args, **(kwargs or {}))


def test_the_recorder_sees_vml_ops():
    """The audit can fail: it names exp, and a square root spelled as pow(x, 0.5)."""
    with OpRecorder() as recorder:
        torch.exp(torch.rand(3))
        torch.rand(3).pow(0.5)
    assert {"exp", "sqrt", "pow"} <= set(recorder.ops)


BACKENDS = ["torch", pytest.param("spikingjelly", marks=needs("spikingjelly")),
            pytest.param("snntorch", marks=needs("snntorch")), pytest.param("norse", marks=needs("norse"))]


@pytest.fixture(scope="module")
def host():
    return PluginHost()


def _train_step_ops(host, model_name: str, neuron: str, backend_name: str, pruner: str | None) -> dict[str, str]:
    backend, spec = host.backend(backend_name), host.neuron(neuron)
    surrogate = Surrogate("superspike" if backend_name == "norse" else "atan", None)
    family, size = model_name.split("-", 1)
    torch.manual_seed(0)
    model = host.model_family(family).build(
        size, input_shape=(1, 8, 8), num_classes=10, T=2, options={"pools": 2} if family == "spikformer" else {},
        make_neuron=lambda site: backend.make_neuron(spec, site, surrogate))
    x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    stage = StageSection(epochs=1, batch_size=4, lr=1e-3, weight_decay=0.01)
    with OpRecorder() as recorder:
        if pruner is not None:
            p = host.pruner(pruner)
            params = p.Params(**({"keep": 0.5, "method": "svd"} if pruner == "dsp" else {"sparsity": 0.5}))
            p.prune(model, params)
        optimizer = make_optimizer(model, stage)
        loss = torch.nn.functional.cross_entropy(model(x), y, label_smoothing=0.1)
        loss.backward()
        optimizer.step()
        if pruner is not None:
            host.pruner(pruner).finalize(model)
    return recorder.ops


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("neuron", ["lif", "plif", "slif"])
def test_no_cpu_dependent_kernel_on_a_training_step(host, pinned_sqrt, neuron, backend):
    """Every built-in model, neuron and backend: dense step, and a step after L1P and DSP."""
    for model_name, pruner in (("spikformer-1-16", None), ("spikformer-1-16", "l1p"), ("spikformer-1-16", "dsp"),
                               ("sdt-1-16", None)):
        ops = _train_step_ops(host, model_name, neuron, backend, pruner)
        assert "convolution" in ops or "mm" in ops or "addmm" in ops  # the recorder saw the model
        vml = {name: how for name, how in ops.items() if name in VML_OPS - {"sqrt"}}
        assert not vml, f"{model_name} {neuron} {backend} {pruner}: MKL vector-math ops {vml}"
        assert "sqrt" in ops  # AdamW's denominator, which the pin makes IEEE
