"""Shared by the backend tests: the three library backends (skipped where a library is missing)
and an sLIF spec defined here, so these tests do not depend on the sLIF neuron plugin."""

import importlib
import importlib.util

import pytest
from plain_loop_backend import PLAIN_LOOP, PlainLoopBackend  # noqa: F401  (re-exported for the tests)

from stxbench.api import NeuronSpec
from stxbench_neuron_lif import LIF
from stxbench_neuron_plif import PLIF

SLIF = NeuronSpec(
    name="slif", summary="sLIF as the paper-methods issue defines it (local copy for tests)",
    decay="channel", threshold="channel", tau=2.0,
)
NEURONS = [LIF, PLIF, SLIF]

# backend name -> (plugin module, class, import name of its library)
LIBRARY_BACKENDS = {
    "spikingjelly": ("stxbench_backend_spikingjelly", "SpikingjellyBackend", "spikingjelly"),
    "snntorch": ("stxbench_backend_snntorch", "SnntorchBackend", "snntorch"),
    "norse": ("stxbench_backend_norse", "NorseBackend", "norse"),
}


def missing(name):
    """The library a backend needs when it is not installed, else None."""
    library = LIBRARY_BACKENDS[name][2] if name in LIBRARY_BACKENDS else None
    return library if library is not None and importlib.util.find_spec(library) is None else None


def needs(*names):
    """Skip marker for a test that needs these backends' libraries."""
    absent = [m for m in map(missing, names) if m]
    return pytest.mark.skipif(bool(absent), reason=f"not installed: {', '.join(absent)}")


def backend_param(name):
    """A pytest param for one backend, skipped when its library is not installed."""
    return pytest.param(name, id=name, marks=needs(name))


def make_backend(name):
    if name == "torch":
        from stxbench_backend_torch import TorchBackend

        return TorchBackend()
    module, cls, _ = LIBRARY_BACKENDS[name]
    return getattr(importlib.import_module(module), cls)()


ALL_BACKENDS = [backend_param(n) for n in ("torch", *LIBRARY_BACKENDS)]
LIBRARY_BACKEND_PARAMS = [backend_param(n) for n in LIBRARY_BACKENDS]
