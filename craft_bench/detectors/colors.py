"""GenEval's colour classifier: zero-shot CLIP ViT-L-14 (OpenAI weights) on each object's masked crop.

Facts from the official evaluator (djghosh13/geneval ``evaluation/evaluate_images.py``: ``ImageCrops``,
``color_classification``, ``load_models``) and the zero-shot code it calls (LAION-AI/CLIP_benchmark
``clip_benchmark/metrics/zeroshot_classification.py``: ``zero_shot_classifier``, ``run_classification``):

* model: open_clip ``ViT-L-14`` with ``pretrained="openai"`` (QuickGELU; here the same weights through
  ``rewards.openai_clip``, shared with AES and CLIP score) and its validation transform: bicubic resize of the
  shortest side to 224, centre crop, OpenAI mean/std (``rewards.preprocess.ResizeCenterCrop``);
* crop: the RGB image composited over a plain ``#999`` image through the object's mask
  (``Image.composite(image, blank, Image.fromarray(mask))``), then ``crop(box[:4])``; an object without a mask
  is cropped from the unmasked image;
* classes: the ten GenEval colours; templates ``"a photo of a {c} {object}"``, ``"a photo of a {c}-colored
  {object}"``, ``"a photo of a {c} object"`` (object = the class name);
* classifier: per colour, each template's text embedding L2-normalised, averaged, re-normalised; prediction:
  argmax of ``100 * normalise(image embedding) @ classifier``.

The official run uses fp16 autocast on CUDA (CLIP_benchmark's ``amp=True``); so does this one on CUDA, fp32 elsewhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from craft_bench.api import Detection
from craft_bench.suites.geneval_rules import COLORS

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from PIL import Image

TEMPLATES = ("a photo of a {c} {obj}", "a photo of a {c}-colored {obj}", "a photo of a {c} object")
BACKGROUND = "#999"
OPTION = "--set suite.color_weights=PATH"


def masked_crop(image: "Image.Image", det: Detection, background: str = BACKGROUND) -> "Image.Image":
    """The official crop: the object's mask composites the image over ``background``, then the box is cut out."""
    from PIL import Image

    image = image.convert("RGB")
    if det.mask is not None:
        import numpy as np

        mask = np.asarray(det.mask, dtype=bool)
        if mask.shape != (image.height, image.width):
            raise ValueError(f"mask of shape {mask.shape} for an image of {image.height}x{image.width}")
        image = Image.composite(image, Image.new("RGB", image.size, color=background), Image.fromarray(mask))
    return image.crop(tuple(det.box[:4]))


def check_weights(source: str = "") -> None:
    """The classifier's CLIP weights are there: a local path, or the hub file cached / downloadable -- or one line."""
    from craft_bench.rewards.common import hub_file, resolve_source
    from craft_bench.rewards.openai_clip import CLIP_L14_ENV, CLIP_L14_FILE, CLIP_L14_HUB

    src = resolve_source("geneval colour classifier", CLIP_L14_ENV, source, CLIP_L14_HUB, OPTION)
    if not src.local:
        hub_file(src, CLIP_L14_FILE)


class ClipColorClassifier:
    """Zero-shot colour of each detected object, as GenEval's ``color_classification``."""

    def __init__(self, model: Any, image_size: int, device: str) -> None:
        import open_clip

        from craft_bench.rewards.preprocess import ResizeCenterCrop

        self.model = model.to(device).eval()
        self.device = device
        self.preprocess = ResizeCenterCrop(image_size)
        self.tokenize = open_clip.tokenize
        self._classifiers: dict[str, "torch.Tensor"] = {}

    @classmethod
    def load(cls, source: str | None = None, device: str = "cpu") -> "ClipColorClassifier":
        """``source``: OpenAI CLIP ViT-L/14 weights (file or folder); default ``$CRAFT_BENCH_CLIP_L14``, else the
        hub."""
        from craft_bench.rewards.openai_clip import load_openai_clip

        model, image_size = load_openai_clip("geneval colour classifier", source, option=OPTION)
        return cls(model, image_size, device)

    def _autocast(self) -> Any:
        import torch

        from craft_bench.rewards.common import inference

        return inference(self.device, torch.float16 if self.device.startswith("cuda") else None)

    def classifier(self, classname: str) -> "torch.Tensor":
        """[embed, 10]: the colour embeddings for one object class (cached per class, as the official code does)."""
        import torch.nn.functional as F

        if classname not in self._classifiers:
            columns = []
            with self._autocast():
                for color in COLORS:
                    texts = [t.format(c=color, obj=classname) for t in TEMPLATES]
                    emb = F.normalize(
                        self.model.encode_text(self.tokenize(texts).to(self.device)).float(), dim=-1
                    ).mean(dim=0)
                    columns.append(emb / emb.norm())
            import torch

            self._classifiers[classname] = torch.stack(columns, dim=1)
        return self._classifiers[classname]

    def logits(self, image: "Image.Image", detections: Sequence[Detection], classname: str) -> "torch.Tensor":
        """[N, 10] zero-shot logits of each detection's masked crop."""
        import torch.nn.functional as F

        weights = self.classifier(classname)
        pixels = self.preprocess([masked_crop(image, d) for d in detections]).to(self.device)
        with self._autocast():
            feats = F.normalize(self.model.encode_image(pixels).float(), dim=-1)
            return (100.0 * feats @ weights).float().cpu()

    def classify(self, image: "Image.Image", detections: Sequence[Detection], classname: str) -> list[str]:
        if not detections:
            return []
        return [COLORS[i] for i in self.logits(image, detections, classname).argmax(1).tolist()]
