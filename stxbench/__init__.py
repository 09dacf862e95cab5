"""stxbench: a benchmark suite for efficient spiking Transformers.

Plugins import from `stxbench.api` only (``from stxbench.api import hookimpl``).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
