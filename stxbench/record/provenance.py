"""Where a number came from: versions, machine, code, checkpoint."""

from __future__ import annotations

import datetime as dt
import functools
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

import torch

import stxbench


def git_commit() -> str | None:
    """The commit of the stxbench checkout this code runs from, if it is one (``+dirty`` when
    tracked files differ from it)."""
    root = Path(stxbench.__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10,
        )
        return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        return None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu: {platform.processor() or platform.machine()}"


def now_utc() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def cpu_model() -> str:
    """The CPU's model name where the system says it (Linux), else the machine type: CPUs of
    other kinds take other instruction paths, and give other low bits."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Processor", "cpu model") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def numerics_device(device: torch.device) -> str:
    """The device as far as it decides the bits of a result: the GPU model and CUDA version,
    or the CPU model."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return f"{device.type}: {cpu_model()}"


#: the vector extensions libraries dispatch on, as far as a CPU kind names them
KIND_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile")


@dataclass(frozen=True)
class CpuKind:
    """What kind of CPU this is, as far as it can decide kernels: vendor, family and model, and
    the vector extensions libraries dispatch on. Linux only; elsewhere only ``name`` (the
    machine type) is known."""

    name: str
    vendor: str | None = None
    family: str | None = None
    model: str | None = None
    flags: tuple[str, ...] = ()

    def __str__(self) -> str:
        """``GenuineIntel 6/143 Intel(R) Xeon(R) ...; avx2 fma avx512f amx_tile``."""
        if self.vendor is None:
            return self.name
        return f"{self.vendor} {self.family}/{self.model} {self.name}; {' '.join(self.flags) or 'no avx2'}"


@functools.cache
def this_cpu() -> CpuKind:
    """The `CpuKind` of the machine this process runs on (read once)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if not key.strip() and fields:
                    break  # the first processor's block is enough
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        return CpuKind(platform.processor() or platform.machine())
    flags = set(fields.get("flags", "").split())
    return CpuKind(fields.get("model name", platform.machine()), vendor=fields.get("vendor_id", "?"),
                   family=fields.get("cpu family", "?"), model=fields.get("model", "?"),
                   flags=tuple(f for f in KIND_FLAGS if f in flags))


def cpu_kind() -> str:
    """`this_cpu` as records and receipts write it."""
    return str(this_cpu())
