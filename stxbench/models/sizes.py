"""Model sizes as model plugins name them (``DEPTH-WIDTH``, as in ``spikformer-4-384``), and the
limits every model family of stxbench holds them to. Plugins import these through `stxbench.api`."""

from __future__ import annotations

from stxbench.run.errors import UsageError

#: far beyond any published size (8-768, 10-512), short of sizes no machine holds
MAX_DEPTH = 64
MIN_WIDTH = 8
MAX_WIDTH = 4096
#: hidden units per width in the MLP blocks (published: 4)
MAX_MLP_RATIO = 16


def parse_size(family: str, size: str, example: str) -> tuple[int, int]:
    """``(depth, width)`` of ``size`` (``"4-384"``) for a model of ``family``; a `UsageError`
    naming ``example`` (``"spikformer-4-384"``) when it is not ``DEPTH-WIDTH`` within the limits."""
    try:
        depth, dim = (int(p) for p in size.split("-"))
    except ValueError:
        raise UsageError(f"{family} size '{size}' must be DEPTH-WIDTH, e.g. {example}") from None
    if not (1 <= depth <= MAX_DEPTH and MIN_WIDTH <= dim <= MAX_WIDTH):
        raise UsageError(f"{family}-{size}: depth must be in 1..{MAX_DEPTH} and width in {MIN_WIDTH}..{MAX_WIDTH}")
    return depth, dim
