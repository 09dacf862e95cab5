#!/usr/bin/env python3
"""Fingerprint single CPU kernels under a CPU pin, to find which one differs between two
machines (docs/numerics.md, "Adding your CPU kind"). From the project root:

    python benchmarks/numerics_probe.py > probe.txt       # under portable-v2, the current pin
    python benchmarks/numerics_probe.py --pin portable-v1 # the pin before IEEE sqrt
    python benchmarks/numerics_probe.py --native          # no pin: this machine's own kernels

and diff the output against docs/numerics/probe-*.txt (made on other CPU kinds).
Inputs come from numpy's PCG64 (identical on every machine); each line is one op, the sha256 of
its output bytes (and of its gradients where it has them). The script re-executes itself with
the pin's environment, one thread.
"""
import hashlib
import os
import platform
import sys

PIN = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE,STRICT", "OMP_NUM_THREADS": "1",
       "MKL_NUM_THREADS": "1"}
NATIVE = "--native" in sys.argv  # no pin: what this machine does by default (one thread)
PIN_ID = sys.argv[sys.argv.index("--pin") + 1] if "--pin" in sys.argv else "portable-v2"
if NATIVE:
    PIN = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
if any(os.environ.get(k) != v for k, v in PIN.items()):
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **PIN})

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(1)
torch.backends.mkldnn.enabled = NATIVE
if not NATIVE:
    from stxbench.run.cpu_pin import PINS

    if PINS[PIN_ID].ieee_sqrt:
        from stxbench.run.cpu_pin import install_ieee_sqrt

        install_ieee_sqrt()
rng = np.random.Generator(np.random.PCG64(1234))


def t(*shape, scale=1.0):
    return torch.from_numpy(rng.standard_normal(shape).astype(np.float32) * scale)


def h(*tensors):
    d = hashlib.sha256()
    for x in tensors:
        d.update(x.detach().contiguous().numpy().tobytes())
    return d.hexdigest()[:12]


def grads(fn, *inputs):
    xs = [x.clone().requires_grad_(True) for x in inputs]
    y = fn(*xs)
    y.backward(torch.ones_like(y) if y.dim() else None)
    return h(y, *[x.grad for x in xs])


cpu = "?"
try:
    cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
except Exception:
    pass
print(f"# cpu: {cpu} | {platform.machine()} | torch {torch.__version__} | numpy {np.__version__}")
print(f"# {'no pin (--native)' if NATIVE else 'pin ' + PIN_ID}; mkl_cbwr env {os.environ.get('MKL_CBWR')}; mkldnn {torch.backends.mkldnn.enabled}")
print(f"# aten capability: {torch.backends.cpu.get_cpu_capability()}")
rows = []
a, b = t(64, 96), t(96, 80)
rows.append(("mm 64x96@96x80", grads(torch.mm, a, b)))
a, b = t(1024, 64), t(64, 256)
rows.append(("mm 1024x64@64x256", grads(torch.mm, a, b)))
bias, x, w = t(256), t(512, 64), t(256, 64)
rows.append(("linear 512x64 -> 256", grads(F.linear, x, w, bias)))
q, k = t(32, 16, 64), t(32, 64, 16)
rows.append(("bmm 32x16x64 @ 32x64x16", grads(torch.bmm, q, k)))
spikes = (t(32, 16, 64) > 0.5).float()
rows.append(("bmm binary spikes", grads(torch.bmm, spikes, k)))
img, cw = t(16, 3, 14, 14), t(32, 3, 3, 3)
rows.append(("conv2d 3->32 3x3", grads(lambda i, w: F.conv2d(i, w, padding=1), img, cw)))
img2, cw2 = t(16, 32, 8, 8), t(64, 32, 3, 3)
rows.append(("conv2d 32->64 3x3", grads(lambda i, w: F.conv2d(i, w, padding=1), img2, cw2)))
c1 = t(16, 64, 8, 8)
rows.append(("conv1d-as-1x1 64->64", grads(lambda i, w: F.conv2d(i, w), c1, t(64, 64, 1, 1))))
bn_x, g, be = t(64, 32, 8, 8), t(32), t(32)
rows.append(("batch_norm train", grads(lambda x, g, b: F.batch_norm(x, None, None, g, b, training=True), bn_x, g, be)))
rows.append(("batch_norm1d train", grads(lambda x, g, b: F.batch_norm(x, None, None, g, b, training=True), t(512, 32), g, be)))
rows.append(("layer_norm", grads(lambda x: F.layer_norm(x, (64,)), t(128, 64))))
rows.append(("max_pool2d", grads(lambda x: F.max_pool2d(x, 3, 2, 1), t(16, 32, 14, 14))))
logits, target = t(256, 10), torch.from_numpy(rng.integers(0, 10, 256))
rows.append(("cross_entropy", grads(lambda z: F.cross_entropy(z, target), logits)))
rows.append(("softmax", grads(lambda z: z.softmax(-1), t(64, 100))))
rows.append(("sigmoid", grads(torch.sigmoid, t(4096))))
rows.append(("atan", grads(torch.atan, t(4096))))
rows.append(("exp", grads(torch.exp, t(4096))))
rows.append(("sum 1e6", h(t(1_000_000).sum())))
rows.append(("mean dim", h(t(64, 4096).mean(0))))
u, s, vh = torch.linalg.svd(t(256, 64), full_matrices=False)
rows.append(("svd 256x64 singular values", h(s)))
rows.append(("svd 256x64 U,Vh (sign-fixed)", h((u * torch.sign(u[0])), (vh * torch.sign(u[0])[:, None]))))
w0 = t(256, 64)
rows.append(("quantile/topk |w|", h(torch.kthvalue(w0.abs().flatten(), 1000).values)))
p = torch.nn.Parameter(t(256, 64))
opt = torch.optim.AdamW([p], lr=1e-3, weight_decay=0.01)
for _ in range(5):
    p.grad = t(256, 64)
    opt.step()
rows.append(("AdamW 5 steps (foreach default)", h(p)))
p2 = torch.nn.Parameter(t(256, 64))
opt2 = torch.optim.AdamW([p2], lr=1e-3, weight_decay=0.01, foreach=False)
for _ in range(5):
    p2.grad = t(256, 64)
    opt2.step()
rows.append(("AdamW 5 steps (for loop)", h(p2)))

# The project's torch-backend neurons (fused kernel on CPU through inductor), where importable.
try:
    import warnings
    warnings.filterwarnings("ignore")
    from stxbench.api import NeuronSite, Surrogate
    from stxbench.host.plugin_host import PluginHost
    host = PluginHost()
    backend = host.backend("torch")
    x = t(4, 16, 512, scale=1.5) + 0.5
    for name in ("lif", "plif", "slif"):
        for sur in ("atan", "superspike"):
            m = backend.make_neuron(host.neuron(name), NeuronSite("probe", channels=512, channel_dim=-1), Surrogate(sur))
            xi = x.clone().requires_grad_(True)
            y = m(xi)
            (y * t(*y.shape)).sum().backward()
            rows.append((f"torch backend {name} {sur}", h(y, xi.grad, *[q.grad for q in m.parameters() if q.grad is not None])))
except Exception as e:  # noqa: BLE001
    rows.append(("torch backend neurons", f"not run: {type(e).__name__}: {e}"))

w = max(len(r[0]) for r in rows)
for name, val in rows:
    print(f"{name:<{w}}  {val}")
