"""Backend ``torch-loop``: the torch backend's plain loop (`LIFFamilyNeuron`) as a backend of its
own, for tests that compare the fused kernel with it or that need neurons which do not compile
themselves. A plugin: ``stxbench -p plain_loop_backend run --backend torch-loop``."""

from stxbench_backend_torch import LIFFamilyNeuron, TorchBackend
from stxbench_neuron_lif import LIFFamily

from stxbench.api import lif
from stxbench.host.hookspecs import hookimpl


class PlainLoopBackend(TorchBackend):
    name = "torch-loop"
    summary = "the torch backend's plain loop"

    def make_neuron(self, spec, site, surrogate):
        self.check_neuron(spec, surrogate)
        return LIFFamilyNeuron(spec, site, surrogate)


@hookimpl
def stxbench_add_backends():
    return [PlainLoopBackend()]


class PlainLoopFamily(LIFFamily):
    """The lif family with the torch backend's plain loop as its reference: what `stxbench.neurons.parity`
    holds the fused kernel to (the kernel must equal the loop it replaces bit for bit)."""

    Reference = LIFFamilyNeuron

    def ties(self, module, spec, site):
        if module.v_seq is None:
            return None
        return int((module.v_seq == lif.threshold(module, spec, site)).sum())


PLAIN_LOOP = PlainLoopFamily()
