"""How a run executes, as opposed to what it computes: precision, data loading, processes.

One process runs a run unless ``torchrun`` started it: then every process trains its shard of
each global batch under `DistributedDataParallel` (gloo on CPUs, NCCL on GPUs), rank 0 alone
evaluates, writes the dense cache and the record, and the others wait for it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from stxbench.run.errors import UsageError

Precision = Literal["fp32", "bf16"]


def derive_seed(*parts: int) -> int:
    """An independent seed for a tuple of integers (run seed, stage, epoch, rank...)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 1)


@dataclass(frozen=True)
class Execution:
    precision: Precision = "fp32"
    workers: int = 0  # DataLoader workers for datasets that are not in-memory tensors
    pin_memory: bool = False
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self, device: torch.device):
        """bf16 autocast for forward passes (no loss scaling needed: bf16 has fp32's range)."""
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")


# -- process group ----------------------------------------------------------------------------


def torchrun_env() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) when torchrun started this process with more than one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    return int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0"))


def resolve_precision(precision: str, device: str) -> Precision:
    if precision == "auto":
        return "bf16" if device.startswith("cuda") else "fp32"
    if precision in ("fp32", "bf16"):
        return precision  # type: ignore[return-value]
    raise UsageError(f"--precision {precision}: valid: auto (bf16 on CUDA, fp32 on CPU), fp32, bf16")


def resolve_workers(workers: int | None, device: str, world_size: int) -> int:
    """DataLoader workers: 0 on CPUs (the cores train), up to 8 per process on GPUs."""
    if workers is not None:
        return workers
    if not device.startswith("cuda"):
        return 0
    return max(1, min(8, (os.cpu_count() or 1) // world_size))


def check_distributed(batch_sizes: Sequence[int], train_samples: int | None, world_size: int) -> None:
    """Every global batch must split evenly over the processes."""
    for batch_size in batch_sizes:
        if batch_size % world_size:
            raise UsageError(
                f"batch size {batch_size} does not split over {world_size} processes; "
                "choose a process count that divides every stage's batch size"
            )
        if train_samples is not None and train_samples < batch_size:
            raise UsageError(
                f"{train_samples} training samples are fewer than one global batch of {batch_size}"
            )


@contextlib.contextmanager
def process_group(device: str) -> Iterator[tuple[int, int, int] | None]:
    """Join torchrun's process group for the duration of a run (nothing for one process)."""
    env = torchrun_env()
    if env is None or dist.is_initialized():
        yield env if dist.is_initialized() else None
        return
    rank, world, local_rank = env
    if device.startswith("cuda"):
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    try:
        yield env
    finally:
        dist.destroy_process_group()


def process_device(device: str, execution: Execution) -> torch.device:
    """Each process of a CUDA run takes the GPU of its local rank."""
    if execution.distributed and device.startswith("cuda:"):
        raise UsageError(f"--device {device} under torchrun: use --device cuda (each process takes its local GPU)")
    if execution.distributed and device == "cuda":
        return torch.device("cuda", execution.local_rank)
    return torch.device(device)


# -- collectives (no-ops for one process) -----------------------------------------------------


def all_reduce_sums(values: Sequence[float], execution: Execution, device: torch.device) -> list[float]:
    if not execution.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast_flag(flag: bool, execution: Execution, device: torch.device) -> bool:
    if not execution.distributed:
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def broadcast_state(model: nn.Module, execution: Execution) -> None:
    """Give every process rank 0's parameters and buffers (BatchNorm statistics differ per
    process after data-parallel training; after a cache hit only rank 0 has read the file)."""
    if not execution.distributed:
        return
    with torch.no_grad():
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, src=0)


def barrier(execution: Execution) -> None:
    if execution.distributed:
        dist.barrier()


def wrap_data_parallel(model: nn.Module, execution: Execution, device: torch.device) -> nn.Module:
    if not execution.distributed:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


# -- GPU settings -----------------------------------------------------------------------------


def configure_cuda(device: torch.device) -> None:
    """Fixed input shapes: let cuDNN pick the fastest convolution algorithms."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.deterministic = False


def cudnn_settings(device: torch.device) -> dict[str, object] | None:
    if device.type != "cuda":
        return None
    cudnn = torch.backends.cudnn
    return {
        "version": cudnn.version(),
        "enabled": cudnn.enabled,
        "benchmark": cudnn.benchmark,
        "deterministic": cudnn.deterministic,
        "allow_tf32": cudnn.allow_tf32,
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
    }
