"""Backend ``torch-loop``: the torch backend's plain loop (`LIFFamilyNeuron`) as a backend of its
own, for tests that compare the fused kernel with it or that need neurons which do not compile
themselves. A plugin: ``stxbench -p plain_loop_backend run --backend torch-loop``."""

from stxbench_backend_torch import LIFFamilyNeuron, TorchBackend

from stxbench.hookspecs import hookimpl


class PlainLoopBackend(TorchBackend):
    name = "torch-loop"
    summary = "the torch backend's plain loop"

    def make_neuron(self, spec, site, surrogate):
        self.check_neuron(spec, surrogate)
        return LIFFamilyNeuron(spec, site, surrogate)


@hookimpl
def stxbench_add_backends():
    return [PlainLoopBackend()]
