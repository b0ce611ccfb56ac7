"""LAION improved aesthetic predictor (christophschuhmann/improved-aesthetic-predictor).

Reimplemented from the official ``simple_inference.py``: OpenAI CLIP ViT-L/14 image embedding
(``clip.load`` preprocessing: bicubic resize, centre crop 224), L2-normalised (the script's numpy
``normalized``, a zero norm left as 1), then an MLP 768-1024-128-64-16-1 with dropout and no activations,
weights ``sac+logos+ava1-l14-linearMSE.pth`` (keys ``layers.{0,2,4,6,7}``). Prompts are ignored.
On CUDA ``clip.load`` gives fp16 CLIP weights while the MLP runs in fp32; so does this one by default.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, ClassVar

from craft_bench.errors import UserError
from craft_bench.rewards.base import PixelReward
from craft_bench.rewards.common import (
    hub_file,
    inference,
    load_state_dict_file,
    load_strict,
    resolve_device,
    resolve_dtype,
    resolve_source,
    unwrap_state_dict,
)
from craft_bench.rewards.openai_clip import load_openai_clip
from craft_bench.rewards.preprocess import ResizeCenterCrop

if TYPE_CHECKING:  # pragma: no cover
    import torch

MLP_HUB = "camenduru/improved-aesthetic-predictor"
MLP_FILE = "sac+logos+ava1-l14-linearMSE.pth"


def aesthetic_mlp(input_size: int = 768) -> "torch.nn.Module":
    """The predictor head: five linear layers, dropout between the first four, no non-linearity."""
    from torch import nn

    return nn.Sequential(
        nn.Linear(input_size, 1024),
        nn.Dropout(0.2),
        nn.Linear(1024, 128),
        nn.Dropout(0.2),
        nn.Linear(128, 64),
        nn.Dropout(0.1),
        nn.Linear(64, 16),
        nn.Linear(16, 1),
    )


class LaionAesthetic(PixelReward):
    """LAION improved aesthetic predictor (sac+logos+ava1-l14-linearMSE) on OpenAI CLIP ViT-L/14."""

    name: ClassVar[str] = "aes"
    description: ClassVar[str] = "LAION improved aesthetic predictor on CLIP ViT-L/14, 1-10 scale (prompt-free)"
    higher_is_better: ClassVar[bool] = True
    env: ClassVar[str] = "CRAFT_BENCH_AES"

    def __init__(
        self, clip: Any, mlp: Any, device: str, clip_dtype: Any, batch_size: int = 16, image_size: int = 224
    ) -> None:
        self.clip = clip.eval()
        self.mlp = mlp.eval()
        self.device = device
        self.clip_dtype = clip_dtype
        self.batch_size = batch_size
        self.preprocessor = ResizeCenterCrop(image_size)

    @classmethod
    def load(
        cls,
        source: str | None = None,
        device: str = "cpu",
        dtype: str | None = None,
        *,
        clip_source: str | None = None,
        batch_size: int = 16,
    ) -> "LaionAesthetic":
        """``source``: the MLP ``.pth`` (or a folder holding it); ``clip_source``: OpenAI CLIP ViT-L/14 weights."""
        src = resolve_source(cls.name, cls.env, source, MLP_HUB)
        if not src.local:
            path = hub_file(src, MLP_FILE)
        elif os.path.isdir(src.value):
            path = os.path.join(src.value, MLP_FILE)
            if not os.path.isfile(path):
                raise UserError(f"aes: folder '{src.value}' has no {MLP_FILE}; {src.hint()}")
        else:
            path = src.value
        device = resolve_device(device)
        clip, image_size = load_openai_clip("aes.clip", clip_source)
        sd = unwrap_state_dict(load_state_dict_file(path))
        sd = {k.removeprefix("layers."): v for k, v in sd.items()}
        width = clip.visual.proj.shape[1]
        mlp = aesthetic_mlp(width)
        load_strict(mlp, {k: v.float() for k, v in sd.items()}, f"aes ({path})")
        clip_dtype = resolve_dtype(dtype, device, gpu_default="float16")
        return cls(clip.to(device, clip_dtype), mlp.to(device), device, clip_dtype, batch_size, image_size)

    def embed(self, pixels: "torch.Tensor") -> "torch.Tensor":
        """L2-normalised CLIP image embeddings in float32 (a zero vector stays zero)."""
        with inference(self.device):
            features = self.clip.encode_image(pixels.to(self.device, self.clip_dtype)).float()
            norm = features.norm(dim=-1, keepdim=True)
            return features / norm.masked_fill(norm == 0, 1.0)

    def score_pixels(self, pixels: "torch.Tensor", prompts: list[str]) -> "torch.Tensor":
        with inference(self.device):
            return self.mlp(self.embed(pixels)).squeeze(-1).float().cpu()
