"""Backend ``spikingjelly``: neurons on spikingjelly 2's ``activation_based`` nodes, multi-step.

LIF runs on ``neuron.LIFNode`` and PLIF on ``neuron.ParametricLIFNode`` (spikingjelly's own
kernels: its CPU loop here, its CUDA/triton kernels on a GPU); any other LIF-family neuron (sLIF:
per-channel decay and threshold) on a ``neuron.SimpleBaseNode`` subclass, spikingjelly's way of
defining custom dynamics. spikingjelly already fires on ``>=``; the reset is made hard and
detached (``detach_reset=True``), and the node's state is reset before every call.

Fastest path per device: on a CPU ``stxbench run`` compiles the nodes (``--compile`` is this
backend's default there; ``--no-compile`` runs spikingjelly's eager loops); on CUDA spikingjelly
picks its own kernels for LIF and PLIF (a native CUDA build, else Triton, else PyTorch;
``SJ_LIF_CUDA_IMPLEMENTATION`` / ``SJ_PLIF_CUDA_IMPLEMENTATION`` force one).

The library is imported only when a neuron is built, so ``stxbench list`` stays fast and shows a
missing library instead of failing.
"""

from __future__ import annotations

from torch import nn

from stxbench.api import Backend, NeuronSite, NeuronSpec, Surrogate, hookimpl


class SpikingjellyBackend(Backend):
    name = "spikingjelly"
    summary = "spikingjelly 2: LIFNode, ParametricLIFNode, SimpleBaseNode for sLIF (multi-step)"
    library = "spikingjelly"
    extra = "spikingjelly"
    families = ("lif",)

    def compile_by_default(self, device_type: str) -> bool:
        # On a CPU spikingjelly's only kernels are its PyTorch loops; its operators are
        # written for torch.compile (they trace to their reference and inductor fuses them), which
        # makes a neuron layer 5-7x faster there. On CUDA it picks its own CUDA or Triton kernels.
        return device_type == "cpu"

    def make_neuron(self, spec: NeuronSpec, site: NeuronSite, surrogate: Surrogate) -> nn.Module:
        self.check_available()
        self.check_neuron(spec, surrogate)
        from stxbench_backend_spikingjelly.nodes import build

        return build(spec, site, surrogate)


@hookimpl
def stxbench_add_backends():
    return [SpikingjellyBackend()]
