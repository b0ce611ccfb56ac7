"""Image preprocessing families, in one place, so the composite scorer resizes each image once per family.

Two families cover the official scorers:

- ``PadToSquare`` -- HPS v2's validation transform (HPSv2 ``src/open_clip/transform.py``:
  ``image_transform(..., resize_longest_max=True)``): RGB, ToTensor, resize the *tensor* so its longest
  side is ``size`` (bicubic), pad to a centred square with 0, OpenAI mean/std. No centre crop.
- ``ResizeCenterCrop`` -- OpenAI CLIP's ``_transform`` (openai/CLIP ``clip/clip.py``), which ImageReward
  (``ImageReward/ImageReward.py``) and the LAION aesthetic predictor (through ``clip.load``) also use:
  PIL bicubic resize of the shortest side, centre crop, RGB, ToTensor, OpenAI mean/std.

PickScore uses its own transformers image processor; ``ProcessorFamily`` wraps it so it caches alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from PIL import Image

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def to_rgb(image: "Image.Image") -> "Image.Image":
    return image if image.mode == "RGB" else image.convert("RGB")


@dataclass(frozen=True)
class PadToSquare:
    """HPS v2: longest side -> ``size`` (bicubic on the [0,1] tensor), centred zero padding, normalise."""

    size: int = 224
    mean: tuple[float, ...] = OPENAI_MEAN
    std: tuple[float, ...] = OPENAI_STD

    @property
    def key(self) -> str:
        return f"pad-square-{self.size}-{self.mean}-{self.std}"

    def one(self, image: "Image.Image") -> "torch.Tensor":
        import torchvision.transforms.functional as F
        from torchvision.transforms import InterpolationMode

        x = F.to_tensor(to_rgb(image))
        h, w = x.shape[1:]
        scale = self.size / float(max(h, w))
        if scale != 1.0:
            nh, nw = round(h * scale), round(w * scale)
            x = F.resize(x, [nh, nw], InterpolationMode.BICUBIC)
        else:
            nh, nw = h, w
        # HPSv2 pads only when it resized; an image whose longest side is already ``size`` but is not
        # square would reach its ViT non-square and fail there, so it is padded here too.
        pad_h, pad_w = self.size - nh, self.size - nw
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2], fill=0)
        return F.normalize(x, self.mean, self.std)

    def __call__(self, images: Sequence["Image.Image"]) -> "torch.Tensor":
        import torch

        return torch.stack([self.one(im) for im in images])


@dataclass(frozen=True)
class ResizeCenterCrop:
    """OpenAI CLIP / ImageReward / LAION AES: PIL bicubic resize of the shortest side, centre crop, normalise."""

    size: int = 224
    mean: tuple[float, ...] = OPENAI_MEAN
    std: tuple[float, ...] = OPENAI_STD

    @property
    def key(self) -> str:
        return f"center-crop-{self.size}-{self.mean}-{self.std}"

    def one(self, image: "Image.Image") -> "torch.Tensor":
        import torchvision.transforms.functional as F
        from torchvision.transforms import InterpolationMode

        image = F.resize(image, self.size, InterpolationMode.BICUBIC)
        image = F.center_crop(image, [self.size, self.size])
        return F.normalize(F.to_tensor(to_rgb(image)), self.mean, self.std)

    def __call__(self, images: Sequence["Image.Image"]) -> "torch.Tensor":
        import torch

        return torch.stack([self.one(im) for im in images])


@dataclass(frozen=True)
class ProcessorFamily:
    """A transformers image processor (PickScore), keyed by where it came from."""

    processor: Any
    origin: str

    @property
    def key(self) -> str:
        return f"processor-{self.origin}"

    def __call__(self, images: Sequence["Image.Image"]) -> "torch.Tensor":
        return self.processor(images=list(images), return_tensors="pt")["pixel_values"]
