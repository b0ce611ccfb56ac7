"""PickScore v1 (yuvalkirstain/PickScore): a CLIP-H fine-tuned on Pick-a-Pic preferences.

The README's inference recipe, batched: a transformers ``CLIPModel`` (``yuvalkirstain/PickScore_v1``) with
the processor of ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K``; text padded and truncated at 77 tokens;
score = ``logit_scale.exp() * cos(image, text)``. ``probabilities`` gives the README's softmax over a
group of images for one prompt. The README runs fp32; so does this unless ``dtype`` says otherwise.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

from craft_bench.rewards.base import PixelReward, pooled, unique_prompts
from craft_bench.rewards.common import (
    hub_reachable,
    inference,
    pretrained_error,
    resolve_device,
    resolve_dtype,
    resolve_source,
)
from craft_bench.rewards.preprocess import ProcessorFamily

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from PIL import Image

MODEL_HUB = "yuvalkirstain/PickScore_v1"
PROCESSOR_HUB = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
PROCESSOR_ENV = "CRAFT_BENCH_PICKSCORE_PROCESSOR"


def _has_processor(folder: str) -> bool:
    return any(os.path.isfile(os.path.join(folder, f)) for f in ("processor_config.json", "preprocessor_config.json"))


class PickScore(PixelReward):
    """PickScore v1: logit_scale.exp() x cosine of CLIP-H image and text embeddings."""

    name: ClassVar[str] = "pickscore"
    description: ClassVar[str] = "PickScore v1 (yuvalkirstain/PickScore_v1; scaled cosine, ~18-23 for typical images)"
    higher_is_better: ClassVar[bool] = True
    env: ClassVar[str] = "CRAFT_BENCH_PICKSCORE"

    def __init__(
        self, model: Any, processor: Any, device: str, dtype: Any, batch_size: int = 16, origin: str = ""
    ) -> None:
        self.model = model.eval()
        self.processor = processor
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.preprocessor = ProcessorFamily(processor.image_processor, origin)

    @classmethod
    def load(
        cls,
        source: str | None = None,
        device: str = "cpu",
        dtype: str | None = None,
        *,
        processor: str | None = None,
        batch_size: int = 16,
    ) -> "PickScore":
        """``source``: the CLIPModel folder or hub id; ``processor``: the processor's (default: the
        model folder when it holds a processor config, else laion/CLIP-ViT-H-14-laion2B-s32B-b79K)."""
        from transformers import CLIPModel, CLIPProcessor

        src = resolve_source(cls.name, cls.env, source, MODEL_HUB)
        if processor is None and not os.environ.get(PROCESSOR_ENV) and src.local and _has_processor(src.value):
            processor = src.value
        psrc = resolve_source("pickscore.processor", PROCESSOR_ENV, processor, PROCESSOR_HUB)
        device = resolve_device(device)
        dtype_ = resolve_dtype(dtype, device)
        try:
            model = CLIPModel.from_pretrained(
                src.value, dtype=dtype_, local_files_only=src.local or not hub_reachable()
            )
        except OSError as exc:
            raise pretrained_error(src, "CLIPModel", exc) from None
        try:
            proc = CLIPProcessor.from_pretrained(psrc.value, local_files_only=psrc.local or not hub_reachable())
        except OSError as exc:
            raise pretrained_error(psrc, "CLIP processor", exc) from None
        return cls(model.to(device), proc, device, dtype_, batch_size, psrc.value)

    def score_pixels(self, pixels: "torch.Tensor", prompts: list[str]) -> "torch.Tensor":
        distinct, index = unique_prompts(prompts)
        text_inputs = self.processor.tokenizer(
            distinct, padding=True, truncation=True, max_length=77, return_tensors="pt"
        )
        with inference(self.device):
            image = pooled(self.model.get_image_features(pixel_values=pixels.to(self.device, self.dtype))).float()
            text = pooled(
                self.model.get_text_features(**{k: v.to(self.device) for k, v in text_inputs.items()})
            ).float()
            image = image / image.norm(dim=-1, keepdim=True)
            text = text / text.norm(dim=-1, keepdim=True)
            return (self.model.logit_scale.exp().float() * (image * text[index]).sum(-1)).cpu()

    def probabilities(self, images: Sequence["Image.Image"], prompt: str) -> "torch.Tensor":
        """The README's softmax over a group of candidate images for one prompt."""
        import torch

        return torch.softmax(self.score(images, [prompt] * len(images)), dim=-1)
