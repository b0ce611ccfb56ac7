"""craft-bench: a benchmark harness for preference-aligned text-to-image diffusion models."""

__version__ = "0.1.0"
