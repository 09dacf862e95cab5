"""Broken plugins for the containment cases of bad_input.py (and the tests): each is a module
source that `write` puts into a folder, to be loaded with ``-p NAME``."""

from __future__ import annotations

import textwrap
from pathlib import Path

_BACKEND = """
import torch
from torch import nn
from stxbench.api import Backend, hookimpl


class Neuron(nn.Module):
    calls = 0

    def __init__(self, spec, site):
        super().__init__()
        self.site = site

    def forward(self, x):
        Neuron.calls += 1
        spikes = (x >= self.site.v_threshold).to(x.dtype)
        return {output}


class Broken(Backend):
    name = "{name}"
    summary = "a backend whose neurons break the contract"

    def make_neuron(self, spec, site, surrogate):
        return Neuron(spec, site)


@hookimpl
def stxbench_add_backends():
    return [Broken()]
"""

#: backend plugins: module name -> what their neurons return instead of spikes
BAD_OUTPUTS = {
    "bi_nan": "torch.full_like(x, float('nan'))",
    "bi_inf": "spikes + float('inf')",
    "bi_shape": "spikes[0]",
    "bi_dtype": "spikes.double()",
    "bi_half": "spikes * 0.5",
    "bi_tuple": "(spikes, x)",
    "bi_late_nan": "spikes if Neuron.calls < 40 else spikes * float('nan')",
}

SOURCES = {
    "bi_exit_import": "import sys\nsys.exit(0)\n",
    "bi_kbd_import": "raise KeyboardInterrupt\n",
    "bi_exit_hook": """
        import sys
        from stxbench.api import hookimpl

        @hookimpl
        def stxbench_add_backends():
            sys.exit(3)
        """,
    "bi_bad_signature": """
        from stxbench.api import hookimpl

        @hookimpl
        def stxbench_add_backends(unknown_argument):
            return []
        """,
    "bi_exit_check": """
        import sys
        from stxbench.api import hookimpl
        from stxbench_backend_torch import TorchBackend

        class Exiting(TorchBackend):
            name = "bi-exit-check"
            summary = "calls sys.exit() when checked"

            def check_available(self):
                sys.exit(0)

        @hookimpl
        def stxbench_add_backends():
            return [Exiting()]
        """,
    "bi_exit_pruner": """
        import sys
        from stxbench.api import Pruner, hookimpl

        class Exiting(Pruner):
            name = "bi-exit"
            summary = "calls sys.exit() when it prunes"

            def prune(self, model, params):
                sys.exit(0)

        @hookimpl
        def stxbench_add_pruners():
            return [Exiting()]
        """,
    "bi_base_pruner": """
        from stxbench.api import Pruner, hookimpl

        class Stop(BaseException):
            pass

        class Stopping(Pruner):
            name = "bi-base"
            summary = "raises a BaseException that is not an Exception"

            def prune(self, model, params):
                raise Stop("pruning abandoned")

        @hookimpl
        def stxbench_add_pruners():
            return [Stopping()]
        """,
    "bi_stopper": """
        from stxbench.api import hookimpl

        @hookimpl
        def stxbench_epoch_end(stage, epoch, metrics):
            if stage == "dense" and epoch == 1:
                raise KeyboardInterrupt  # stops the run as Ctrl-C does, checkpoint kept
        """,
    "bi_exit_observer": """
        import sys
        from stxbench.api import hookimpl

        @hookimpl
        def stxbench_epoch_end(stage, epoch, metrics):
            sys.exit(0)
        """,
}
for _module, _output in BAD_OUTPUTS.items():
    SOURCES[_module] = _BACKEND.replace("{output}", _output).replace("{name}", _module.replace("_", "-"))


def write(folder: Path, name: str) -> Path:
    path = Path(folder) / f"{name}.py"
    path.write_text(textwrap.dedent(SOURCES[name]))
    return path
