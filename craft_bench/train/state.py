"""Training state as safetensors: optimizer state <-> a flat tensor dict plus JSON-able param groups.

The one place every recipe and the shared trainer serialise optimizer state, so resuming never needs
pickle (``torch.save``) and checkpoints stay loadable with safetensors alone.
"""

from __future__ import annotations

from typing import Any


def optimizer_tensors(opt: Any, prefix: str = "") -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``({f"{prefix}{param_id}.{key}": tensor}, param_groups)`` of ``opt.state_dict()``."""
    import torch

    sd = opt.state_dict()
    tensors = {}
    for pid, st in sd["state"].items():
        for key, value in st.items():
            tensors[f"{prefix}{pid}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    return tensors, sd["param_groups"]


def load_optimizer(opt: Any, tensors: dict[str, Any], param_groups: list[dict[str, Any]], prefix: str = "") -> None:
    """Inverse of ``optimizer_tensors``; keys without ``prefix`` (e.g. model weights) are ignored."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith(prefix):
            pid, key = name[len(prefix) :].split(".", 1)
            state.setdefault(int(pid), {})[key] = value
    opt.load_state_dict({"state": state, "param_groups": param_groups})
