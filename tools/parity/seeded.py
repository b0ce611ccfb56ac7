"""Seeded weights and fixed images shared by the parity scripts (official venv) and the parity tests.

Only torch, numpy and Pillow are imported, so the same file runs beside the official packages and beside
craft-bench. A checkpoint is described by its keys, shapes and dtypes (stored in the fixture); the values
come from ``torch.Generator().manual_seed(seed + i)`` for the i-th key in sorted order, so both sides
rebuild identical weights without shipping them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

_NORM_HINTS = ("norm", "ln_", "LayerNorm", "layer_norm")


def describe(state_dict: dict[str, torch.Tensor]) -> list[list[Any]]:
    """[[key, shape, dtype]] in sorted key order: what a fixture stores instead of the weights."""
    return [[k, list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in sorted(state_dict.items())]


def seeded_state_dict(spec: list[list[Any]], seed: int) -> dict[str, torch.Tensor]:
    """Deterministic, well-scaled values for every key of ``spec`` (see ``describe``)."""
    out: dict[str, torch.Tensor] = {}
    for i, (key, shape, dtype) in enumerate(sorted(spec, key=lambda s: s[0])):
        dt = getattr(torch, dtype)
        if not dt.is_floating_point:
            n = shape[-1] if shape else 1
            out[key] = torch.arange(n, dtype=dt).expand(*shape).clone() if shape else torch.tensor(0, dtype=dt)
            continue
        g = torch.Generator().manual_seed(seed + i)
        x = torch.randn(tuple(shape), generator=g, dtype=torch.float32)
        if len(shape) == 0:
            x = 2.0 + 0.1 * x  # logit_scale-like scalars
        elif len(shape) == 1:
            is_norm_weight = key.endswith("weight") and any(h in key for h in _NORM_HINTS)
            x = 1.0 + 0.1 * x if is_norm_weight else 0.1 * x
        else:
            fan_in = shape[-1] if len(shape) <= 3 else math.prod(shape[1:])
            x = x / math.sqrt(fan_in)
        out[key] = x.to(dt)
    return out


def fixed_images(seed: int = 0) -> list[Image.Image]:
    """Small images of several sizes and aspect ratios (exercising resize, crop and padding)."""
    rng = np.random.default_rng(seed)
    sizes = [(96, 64), (64, 96), (80, 80), (300, 120), (50, 200)]
    images = []
    for i, (w, h) in enumerate(sizes):
        base = rng.integers(0, 256, size=(h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
        big = Image.fromarray(base).resize((w, h), Image.BILINEAR)  # smooth structure, not pure noise
        noise = rng.integers(-20, 21, size=(h, w, 3))
        arr = np.clip(np.asarray(big, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
        images.append(Image.fromarray(arr, "RGB"))
    return images


PROMPTS = [
    "a red cube on a wooden table",
    "a photo of a cat",
    "an astronaut riding a horse on the moon, highly detailed digital art",
    "a cat",
    "two dogs and three birds in a green park at sunset, oil painting in the style of an old master, very "
    "long prompt that goes past thirty five tokens for sure",
]


def save_images(images: list[Image.Image], folder: Path, prefix: str) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, im in enumerate(images):
        name = f"{prefix}_{i}.png"
        im.save(folder / name)
        names.append(name)
    return names


def load_images(folder: Path, names: list[str]) -> list[Image.Image]:
    images = []
    for name in names:
        with Image.open(folder / name) as im:
            images.append(im.convert("RGB"))
    return images
