"""The torch backend's fused LIF-family kernel: the whole time loop in one compiled kernel.

`FusedLIFFamilyNeuron` computes exactly what the plain loop (`LIFFamilyNeuron`) computes, bit
for bit: the same spikes, the same charged potential ``v_seq``, the same gradients for the
input and the learnables. It gets there by running the plain loop's own floating-point
operations, in the same order, inside kernels that ``torch.compile`` fuses (C++ through inductor
on a CPU, Triton on CUDA):

* forward: one kernel reads ``X[0..T-1]`` and writes the spikes (and ``H`` when ``store_v_seq``
  is set); the membrane potential never leaves registers;
* backward: one kernel recomputes the forward from ``X`` (cheaper than storing ``H``, the reset
  masks and the charge terms, as autograd does for the plain loop) and runs the reverse-time loop,
  writing the input's gradient. The only tensor saved between the two is the input itself (T
  floats per neuron; the plain loop saves two to three times that);
* the learnables' gradients: the kernel also writes what autograd reduces at each step (the
  per-step products ``dL/dH * (X - (V - V_reset))`` for the decay, ``-dL/d(H - theta)`` for the
  threshold), and they are reduced with ATen's ``sum_to_size``, step by step in reverse time, as
  autograd reduces them for the plain loop. Measured against reducing inside the kernel: ATen's
  reduction is 2.3x faster on one CPU thread for sLIF (inductor writes the same intermediates
  anyway, its loop order for a per-channel reduction differs from the pointwise one) and it is
  bit-identical, where inductor's summation order drifts by about 3e-7 relative.

Where the kernel does not run, the plain loop does (same results): while a
``TorchDispatchMode`` is active (op counting sees every eager op, as before), while
``torch.compile`` traces the module (it compiles the plain loop), for inputs that are not float32
(under bf16 autocast the plain loop's mixed-dtype rounding is kept as it is), on devices other
than CPU and CUDA, and in a process where compiling failed once (no C++ compiler, no Triton):
that prints one warning line. The sigmoid surrogate's gradients differ by up to ~1.4e-7
(relative): inductor's vectorised ``exp`` and the scalar ``exp`` ATen uses for a tensor's last
few elements differ in the last bit.

Shapes: every dimension but time is dynamic, so one graph per kernel serves every batch size and
channel count, and for LIF and PLIF (nothing per channel: the input is flattened, the threshold
is an input) every site; time is unrolled (one graph per T). Each kernel configuration (fixed or
learnable decay, tau, V_reset, surrogate and alpha, the part: forward with or without ``H``,
backward for the gradients needed) is its own function to dynamo, so configurations never count
against one another's recompile limit. Kernels are cached in ``$TORCHINDUCTOR_CACHE_DIR``.
"""

from __future__ import annotations

import math
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.autograd.function import once_differentiable
from torch.utils._python_dispatch import _get_current_dispatch_mode


from stxbench.api import NeuronSite, NeuronSpec, Surrogate, compile_errors, kernel_cache_for_this_cpu, lif, one_line
from stxbench_backend_torch import LIFFamilyNeuron

#: why this process runs the plain loop instead of the kernel; None while the kernel works
fallback: str | None = None


@dataclass(frozen=True)
class Kernel:
    """What a compiled kernel bakes in as constants (the threshold is an input: one kernel serves
    the token and the attention neurons)."""

    fixed_decay: bool  # k = 1/tau (a division, as in the plain loop), else k = sigmoid(w), an input
    tau: float
    v_reset: float
    surrogate: str
    alpha: float

    def name(self, part: str) -> str:
        decay = "tau" if self.fixed_decay else "k"
        return f"lif_{part}_{decay}_{self.surrogate}"


def surrogate_grad(name: str, alpha: float, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """d spike / dx times ``grad``: the expressions of `stxbench_backend_torch._Spike`, in its order."""
    if name == "atan":
        a = alpha / 2
        ax = math.pi * a * x
        return a / (1 + ax * ax) * grad
    if name == "sigmoid":
        s = (x * alpha).sigmoid()
        return grad * (1.0 - s) * s * alpha
    return alpha * grad / torch.pow(torch.abs(x) + 1.0, 2)


def _forward_body(kernel: Kernel, store_h: bool) -> Callable:
    tau, v_reset = kernel.tau, kernel.v_reset

    def forward(x, k, theta):
        v = torch.full_like(x[0], v_reset)
        spikes, hs = [], []
        for t in range(x.shape[0]):
            h = lif.charge(v, x[t], v_reset, tau, k)
            s = (h - theta >= 0).to(h - theta)  # the plain loop's spike(): (x >= 0).to(x)
            v = h * (1.0 - s) + v_reset * s
            spikes.append(s)
            hs.append(h)
        return torch.stack(spikes), (torch.stack(hs) if store_h else None)

    return forward


def _backward_body(kernel: Kernel, need_k: bool, need_theta: bool) -> Callable:
    tau, v_reset = kernel.tau, kernel.v_reset
    name, alpha = kernel.surrogate, kernel.alpha

    def backward(grad, x, k, theta):
        steps = x.shape[0]
        v = torch.full_like(x[0], v_reset)
        hs, resets, terms = [], [], []
        for t in range(steps):  # the forward again: H, the reset mask and the charge term
            term = x[t] - (v - v_reset)
            h = v + term / tau if k is None else v + term * k
            s = (h - theta >= 0).to(h - theta)
            v = h * (1.0 - s) + v_reset * s
            hs.append(h)
            resets.append(1.0 - s)
            terms.append(term)
        grad_x, grad_k_steps, grad_theta_steps = [None] * steps, [None] * steps, [None] * steps
        grad_v = None  # dL/dV[t], from step t + 1
        for t in reversed(range(steps)):
            grad_spike = surrogate_grad(name, alpha, hs[t] - theta, grad[t])
            grad_h = grad_spike if grad_v is None else grad_spike + grad_v * resets[t]
            grad_term = grad_h / tau if k is None else grad_h * k
            grad_x[t] = grad_term.to(x.dtype)
            grad_v = grad_h + (-grad_term)
            if need_k:
                grad_k_steps[t] = grad_h * terms[t]
            if need_theta:
                grad_theta_steps[t] = -grad_spike
        return (torch.stack(grad_x), torch.stack(grad_k_steps) if need_k else None,
                torch.stack(grad_theta_steps) if need_theta else None)

    return backward


_compiled: dict[tuple, Callable] = {}


def _compiled_body(kernel: Kernel, part: str, make: Callable[[], Callable]) -> Callable:
    """``torch.compile`` of the body ``make()`` builds, one per kernel and part: each gets a code
    object of its own, because dynamo counts recompilations per code object."""
    fn = _compiled.get((kernel, part))
    if fn is None:
        body = make()
        name = kernel.name(part)
        code = body.__code__.replace(co_name=name)
        body = types.FunctionType(code, body.__globals__, name, body.__defaults__, body.__closure__)
        kernel_cache_for_this_cpu()  # inductor's cache key misses the CPU pin's ISA
        fn = _compiled[(kernel, part)] = torch.compile(body)
    return fn


def _mark_dynamic(*tensors: torch.Tensor | None, skip_first: bool) -> None:
    for tensor in tensors:
        if tensor is not None:
            for dim in range(1 if skip_first else 0, tensor.dim()):
                torch._dynamo.maybe_mark_dynamic(tensor, dim)


def _run(fn: Callable, grad: torch.Tensor | None, x: torch.Tensor, k, theta):
    # detached: dynamo guards on requires_grad and on a view's base, and would compile the same
    # kernel again for the training and the evaluation forward, and for each way x was viewed
    grad, x, k, theta = (t.detach() if t is not None else None for t in (grad, x, k, theta))
    _mark_dynamic(grad, x, skip_first=True)  # time stays static: its loop is unrolled
    _mark_dynamic(k, theta, skip_first=False)
    return fn(x, k, theta) if grad is None else fn(grad, x, k, theta)


def _run_forward(kernel: Kernel, store_h: bool, x, k, theta):
    fn = _compiled_body(kernel, "forward_h" if store_h else "forward", lambda: _forward_body(kernel, store_h))
    return _run(fn, None, x, k, theta)


def _sum_steps(steps: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reduce each step's gradient to ``like``'s shape and add them up in reverse time, exactly as
    autograd does for the plain loop (sum_to_size, then the cast to the parameter's dtype)."""
    total = None
    for t in reversed(range(steps.shape[0])):
        step = steps[t].sum_to_size(like.shape).to(like.dtype)
        total = step if total is None else total + step
    return total


class _FusedLIF(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, k, theta, kernel: Kernel, store_h: bool):
        spikes, h = _run_forward(kernel, store_h, x, k, theta)
        ctx.save_for_backward(x, k, theta)
        ctx.kernel = kernel
        if h is not None:
            ctx.mark_non_differentiable(h)
        return spikes, h

    @staticmethod
    @once_differentiable
    def backward(ctx, grad, _grad_h):
        x, k, theta = ctx.saved_tensors
        kernel = ctx.kernel
        need_k = ctx.needs_input_grad[1]
        need_theta = ctx.needs_input_grad[2]
        part = ("backward", "backward_theta", "backward_k", "backward_k_theta")[2 * need_k + need_theta]
        fn = _compiled_body(kernel, part, lambda: _backward_body(kernel, need_k, need_theta))
        if any(grad.stride()):  # a loss like spikes.sum() hands down one value broadcast (all strides 0)
            grad = grad.contiguous()
        try:
            grad_x, grad_k_steps, grad_theta_steps = _run(fn, grad, x, k, theta)
        except _compile_errors() as exc:  # the forward compiled, the backward did not
            _give_up(exc)
            grad_x, grad_k_steps, grad_theta_steps = _backward_body(kernel, need_k, need_theta)(grad, x, k, theta)
        grad_k = _sum_steps(grad_k_steps, k) if need_k else None
        grad_theta = _sum_steps(grad_theta_steps, theta) if need_theta else None
        return grad_x, grad_k, grad_theta, None, None


def _compile_errors() -> tuple[type[BaseException], ...]:
    return compile_errors()


def _give_up(exc: BaseException) -> None:
    """Run the plain loop from now on, in this process; say so once."""
    global fallback
    if fallback is None:
        fallback = one_line(exc).split(" Set TORCHDYNAMO_VERBOSE")[0][:300]
        print(f"warning: torch backend: the fused neuron kernel did not compile ({fallback}); running the "
              "plain loop from here (same results, slower)", file=sys.stderr)


def kernel_applies(x: torch.Tensor, *params: torch.Tensor | None) -> bool:
    """Whether the kernel runs for ``x`` here and now (else the plain loop does)."""
    if fallback is not None or torch.compiler.is_compiling() or _get_current_dispatch_mode() is not None:
        return False
    if x.dtype != torch.float32 or x.dim() < 2 or x.numel() == 0:
        return False
    if any(p is not None and p.dtype != torch.float32 for p in params):
        return False
    if x.device.type == "cuda":
        from torch.utils._triton import has_triton

        return has_triton()
    return x.device.type == "cpu"


class FusedLIFFamilyNeuron(LIFFamilyNeuron):
    """`LIFFamilyNeuron` on the fused kernel: same learnables, state dict, results."""

    #: `stxbench.neurons.compile` leaves modules that compile themselves alone (no double compilation)
    compiles_itself = True

    def __init__(self, spec: NeuronSpec, site: NeuronSite, surrogate: Surrogate):
        super().__init__(spec, site, surrogate)
        self.kernel = Kernel(spec.decay == "fixed", float(spec.tau), float(spec.v_reset), surrogate.name,
                             float(surrogate.alpha))

    @property
    def kernel_fallback(self) -> str | None:
        """Why this process runs the plain loop instead of the kernel (None: it does not)."""
        return fallback

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = lif.decay(self, self.spec)
        theta = lif.threshold(self, self.spec, self.site)
        if not kernel_applies(x, k, theta if isinstance(theta, torch.Tensor) else None):
            return super().forward(x)
        if not isinstance(theta, torch.Tensor):  # `h - theta` in float32 either way: same bits
            theta = torch.full((), theta, dtype=x.dtype, device=x.device)
        shape = x.shape
        if (k is None or k.dim() == 0) and theta.dim() == 0:
            x = x.reshape(shape[0], -1)  # nothing per channel: one graph for every site
        x = x.contiguous()
        try:
            if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, k, theta)):
                spikes, h = _FusedLIF.apply(x, k, theta, self.kernel, self.store_v_seq)
            else:
                spikes, h = _run_forward(self.kernel, self.store_v_seq, x, k, theta)
        except _compile_errors() as exc:
            _give_up(exc)
            return super().forward(x.reshape(shape))
        if self.store_v_seq:
            self.v_seq = h.reshape(shape)
        return spikes.reshape(shape)
