"""The torch backend's fused kernel against its plain loop on one device (``stxbench parity``
runs on the CPU): every neuron and surrogate, parity's two sites, inputs and parameter settings.

    python benchmarks/kernel_check.py                  # on the CPU
    python benchmarks/kernel_check.py --device cuda    # Triton kernels against eager CUDA ops

Prints, per neuron and surrogate, the spikes that differ, max |dV| / max(1, |V|), and the largest
relative gradient differences (input, learnables), as parity measures them; exits 1 when a row
is outside parity's tolerances (spikes identical, |dV| <= 1e-6, gradients <= 1e-5).
"""

from __future__ import annotations

import argparse
import sys

import torch
from stxbench_backend_torch import LIFFamilyNeuron, TorchBackend
from tabulate import tabulate

from stxbench_neuron_lif import LIFFamily

from stxbench.neurons import parity
from stxbench.api import SURROGATE_DEFAULT_ALPHA, Surrogate
from stxbench.host.plugin_host import PluginHost


def compare(spec, surrogate, site, shape, kind, setting, seed, device) -> dict:
    generator = torch.Generator().manual_seed(seed)
    plain = LIFFamilyNeuron(spec, site, surrogate)
    kernel = TorchBackend().make_neuron(spec, site, surrogate)
    family = LIFFamily()
    by_meaning = [parity.parameters_by_meaning(m, family.meanings) for m in (plain, kernel)]
    if setting == "trained":  # the same random values on both, by meaning (as stxbench.neurons.parity does)
        with torch.no_grad():
            for meaning, p in by_meaning[0].items():
                value = family.parity_value(meaning, p.detach().clone(), site, generator)
                p.copy_(value)
                by_meaning[1][meaning].copy_(value)
    x = parity.make_input(kind, shape, generator).to(device)
    weights = torch.randn(shape, generator=generator).to(device)
    results = []
    for module in (plain, kernel):
        module.to(device).store_v_seq = True
        xin = x.clone().requires_grad_(True)
        spikes = module(xin)
        (spikes * weights).sum().backward()
        results.append((spikes.detach(), module.v_seq.detach(), xin.grad,
                        {m: p.grad for m, p in parity.parameters_by_meaning(module, family.meanings).items()}))
    (s0, v0, g0, p0), (s1, v1, g1, p1) = results
    return {
        "spikes": int((s0 != s1).sum()),
        "dv": ((v1 - v0).abs() / v0.abs().clamp_min(1.0)).max().item(),
        "grad_x": parity.relative_difference(g1, g0),
        "grad_p": max((parity.relative_difference(p1[m], p0[m]) for m in p0), default=0.0),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--neurons", nargs="+", default=["lif", "plif", "slif"])
    p.add_argument("--surrogates", nargs="+", default=list(SURROGATE_DEFAULT_ALPHA), choices=list(SURROGATE_DEFAULT_ALPHA))
    args = p.parse_args()
    import stxbench_backend_torch.fused as fused

    host = PluginHost()
    rows, failed = [], False
    for name in args.neurons:
        spec = host.neuron(name)
        for surrogate_name in args.surrogates:
            surrogate = Surrogate(surrogate_name)
            worst = {"spikes": 0, "dv": 0.0, "grad_x": 0.0, "grad_p": 0.0}
            for site_index, (site, shape) in enumerate(parity.SITES):
                for kind_index, kind in enumerate(parity.INPUTS):
                    for setting_index, setting in enumerate(parity.SETTINGS):
                        seed = 100 * site_index + 10 * kind_index + setting_index
                        found = compare(spec, surrogate, site, shape, kind, setting, seed, args.device)
                        worst = {k: (worst[k] + found[k] if k == "spikes" else max(worst[k], found[k])) for k in worst}
            ok = (worst["spikes"] == 0 and worst["dv"] <= parity.V_TOLERANCE
                  and max(worst["grad_x"], worst["grad_p"]) <= parity.GRAD_TOLERANCE)
            failed |= not ok
            rows.append([name, surrogate_name, worst["spikes"], f"{worst['dv']:.1e}", f"{worst['grad_x']:.1e}",
                         f"{worst['grad_p']:.1e}", "PASS" if ok else "FAIL"])
    print(f"fused kernel vs plain loop on {args.device} (torch {torch.__version__}); kernel fallback: {fused.fallback}")
    print(tabulate(rows, headers=["neuron", "surrogate", "spikes differing", "max |dV|", "grad input (rel)",
                                  "grad params (rel)", "result"], disable_numparse=True))
    sys.exit(1 if failed or fused.fallback else 0)


if __name__ == "__main__":
    main()
