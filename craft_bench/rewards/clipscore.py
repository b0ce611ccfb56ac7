"""CLIP score (Hessel et al. 2021) with OpenAI CLIP ViT-L/14: ``max(100 * cos(image, text), 0)``.

The same definition as torchmetrics' ``CLIPScore`` (whose model download fails offline), on the
OpenAI CLIP loaded by ``craft_bench.rewards.openai_clip``: ``clip.load`` preprocessing (bicubic resize,
centre crop) and the CLIP BPE tokenizer, truncated to the context length.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from craft_bench.rewards.base import PixelReward, unique_prompts
from craft_bench.rewards.common import inference, resolve_device, resolve_dtype
from craft_bench.rewards.openai_clip import load_openai_clip
from craft_bench.rewards.preprocess import ResizeCenterCrop

if TYPE_CHECKING:  # pragma: no cover
    import torch


class ClipScore(PixelReward):
    """CLIP score with OpenAI CLIP ViT-L/14 (0-100)."""

    name: ClassVar[str] = "clip"
    description: ClassVar[str] = "CLIP score with OpenAI CLIP ViT-L/14: max(100 cos, 0)"
    higher_is_better: ClassVar[bool] = True
    env: ClassVar[str] = "CRAFT_BENCH_CLIP"

    def __init__(self, model: Any, device: str, dtype: Any, batch_size: int = 16, image_size: int = 224) -> None:
        import open_clip

        self.model = model.eval()
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.preprocessor = ResizeCenterCrop(image_size)
        self.context_length = int(model.positional_embedding.shape[0])
        self.tokenize = open_clip.tokenize

    @classmethod
    def load(
        cls, source: str | None = None, device: str = "cpu", dtype: str | None = None, *, batch_size: int = 16
    ) -> "ClipScore":
        """``source``: OpenAI CLIP weights (OpenAI or open_clip layout; file or folder); default the hub copy."""
        device = resolve_device(device)
        model, image_size = load_openai_clip(cls.name, source, env=cls.env)
        dtype_ = resolve_dtype(dtype, device, gpu_default="float16")
        return cls(model.to(device, dtype_), device, dtype_, batch_size, image_size)

    def score_pixels(self, pixels: "torch.Tensor", prompts: list[str]) -> "torch.Tensor":
        distinct, index = unique_prompts(prompts)
        with inference(self.device):
            image = self.model.encode_image(pixels.to(self.device, self.dtype), normalize=True).float()
            tokens = self.tokenize(distinct, context_length=self.context_length).to(self.device)
            text = self.model.encode_text(tokens, normalize=True).float()
            return (100.0 * (image * text[index]).sum(-1)).clamp(min=0).cpu()
