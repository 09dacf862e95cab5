"""stxbench: a benchmark suite for efficient spiking Transformers."""

__version__ = "0.1.0"
