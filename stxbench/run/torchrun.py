"""``stxbench run --nproc N``: check everything once, then start N processes with torchrun."""

from __future__ import annotations

import subprocess
import sys

from stxbench.data.splits import load_splits
from stxbench.run.errors import UsageError
from stxbench.run.processes import check_distributed
from stxbench.host.plugin_host import PluginHost
from stxbench.run.config import RunConfig
from stxbench.run.config import usable_cpus


def check_before_launch(config: RunConfig, host: PluginHost, nproc: int) -> None:
    """What every process would refuse, refused here once, as one line: the data folder, the
    split of every global batch over ``nproc`` processes, the device."""
    cpus = usable_cpus()
    if nproc < 2:
        raise UsageError(f"--nproc must be >= 2 (1 is a plain run), got {nproc}")
    if config.device.startswith("cuda:"):
        raise UsageError("--nproc with --device cuda:N: use --device cuda (each process takes its local GPU)")
    if config.device == "cuda":
        import torch

        if torch.cuda.device_count() < nproc:
            raise UsageError(f"--nproc {nproc}: only {torch.cuda.device_count()} CUDA device(s) here")
    proto = config.protocol
    splits = load_splits(proto, host, config.data_root)
    check_distributed([proto.train.batch_size, proto.finetune.batch_size], len(splits.train), nproc)
    if config.device == "cpu" and nproc > cpus:
        raise UsageError(f"--nproc {nproc} on the CPU: valid 2..{cpus} (the CPUs this process may use)")


def torchrun_command(nproc: int, plugins: tuple[str, ...], run_args: list[str]) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc-per-node N -m stxbench ...``: a
    single machine, a free rendezvous port chosen by torchrun."""
    plugin_args = [arg for name in plugins for arg in ("-p", name)]
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
        "-m", "stxbench", *plugin_args, "run", *run_args,
    ]


def launch(nproc: int, plugins: tuple[str, ...], run_args: list[str]) -> int:
    """Run torchrun in the foreground and return its exit status."""
    return subprocess.call(torchrun_command(nproc, plugins, run_args))
