"""stxbench: a benchmark suite for efficient spiking Transformers."""

from stxbench.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = ["hookimpl", "__version__"]
