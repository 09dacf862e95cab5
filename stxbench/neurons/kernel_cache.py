"""Compiled kernels: where inductor keeps them (apart for each CPU capability a process runs),
and what a failure to compile raises.

torch 2.13's inductor picks its vector ISA from ``ATEN_CPU_CAPABILITY`` (the CPU pin sets it to
``avx2``, `stxbench.run.cpu_pin`) but leaves it out of its cache key: a kernel compiled by an unpinned
process (AVX-512 here) and loaded by a pinned one returned non-spikes (2.4e-38) for the torch
backend's fused neurons. Every compile goes through `kernel_cache_for_this_cpu` first, which
puts the kernels of a pinned process in an ``aten-<capability>`` sub-folder of the cache.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"
LEAF = "aten-"


def kernel_cache_for_this_cpu() -> str:
    """Set inductor's cache folder (``$TORCHINDUCTOR_CACHE_DIR``, or inductor's default) to its
    sub-folder for this process's ``ATEN_CPU_CAPABILITY`` (itself when none is set); returns it."""
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    folder = Path(cache_dir())
    if folder.name.startswith(LEAF):
        folder = folder.parent
    capability = os.environ.get("ATEN_CPU_CAPABILITY")
    wanted = str(folder / f"{LEAF}{capability}" if capability else folder)
    os.environ[CACHE_ENV] = wanted
    return wanted


def compile_errors() -> tuple[type[BaseException], ...]:
    """What a failure to compile raises (imported late: torch._dynamo takes a second to import,
    which every CLI command would pay)."""
    from torch._dynamo import exc as dynamo_exc
    from torch._inductor.exc import InductorError

    return dynamo_exc.TorchDynamoException, dynamo_exc.FailOnRecompileLimitHit, InductorError
