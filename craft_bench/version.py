"""craft-bench's version, and the versions of everything a result was made with (recorded in results.json, sweep
and bench files, model cards)."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

__version__ = "0.1.0"


def versions() -> dict[str, str]:
    """The versions a result was made with: Python, craft-bench and the libraries that change numbers, and the
    git commit of a source checkout."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("craft-bench", "torch", "diffusers", "transformers", "peft", "open_clip_torch", "numpy", "scipy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    try:
        here = Path(__file__).resolve().parent
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        if commit.returncode == 0:
            out["git_commit"] = commit.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return out
