"""The shape every built-in reward shares: preprocess images with a named family, then score pixel batches.

Splitting ``score`` into ``preprocessor`` + ``score_pixels`` is what lets the composite scorer resize each
image once per preprocessing family and hand the same pixels to every reward of that family.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

from craft_bench.api import Reward
from craft_bench.rewards.common import batches

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from PIL import Image


class PixelReward(Reward):
    """A reward whose images go through ``self.preprocessor`` (an object with ``key`` and ``__call__``)."""

    env: ClassVar[str] = ""
    preprocessor: Any
    device: str = "cpu"
    batch_size: int = 16

    def score(self, images: Sequence["Image.Image"], prompts: Sequence[str]) -> "torch.Tensor":
        import torch

        if len(images) != len(prompts):
            raise ValueError(f"{self.name}: {len(images)} images but {len(prompts)} prompts")
        out = [
            self.score_pixels(self.preprocessor(images[s]), list(prompts[s]))
            for s in batches(len(images), self.batch_size)
        ]
        return torch.cat(out) if out else torch.zeros(0)

    @abstractmethod
    def score_pixels(self, pixels: "torch.Tensor", prompts: list[str]) -> "torch.Tensor":
        """Scores of one preprocessed batch: float32 CPU tensor [N]."""


def unique_prompts(prompts: Sequence[str]) -> tuple[list[str], list[int]]:
    """Distinct prompts and, per input, its index among them: a suite's images share prompts."""
    order: dict[str, int] = {}
    index = [order.setdefault(p, len(order)) for p in prompts]
    return list(order), index


def pooled(output: Any) -> "torch.Tensor":
    """transformers 5 returns a ModelOutput from get_*_features; older versions a tensor."""
    return output if hasattr(output, "shape") else output.pooler_output
