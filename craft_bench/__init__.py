"""craft-bench: a benchmark harness for preference-aligned text-to-image diffusion models.

The Python API (``craft_bench.run``, ``compare``, ``load``, ``leaderboard``, ``Result``, ``Comparison``) lives in
``craft_bench.python_api`` and is imported on first use, so ``import craft_bench`` and ``craft-bench --help`` import
nothing heavy.
"""

from typing import Any

from craft_bench.version import __version__

API = ("run", "compare", "load", "leaderboard", "Result", "Comparison")
__all__ = ["__version__", *API]


def __getattr__(name: str) -> Any:
    if name in API:
        from craft_bench import python_api

        return getattr(python_api, name)
    raise AttributeError(f"module 'craft_bench' has no attribute '{name}'")
