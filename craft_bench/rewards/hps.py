"""HPS v2.1 / v2.0: Human Preference Score, an open_clip ViT-H-14 fine-tuned on human preferences.

Reimplemented from the official scorer (tgxs002/HPSv2, ``hpsv2/img_score.py``) on maintained open_clip
instead of the ``hpsv2`` package and its vendored open_clip fork:

- model: open_clip ``ViT-H-14`` (GELU, not QuickGELU), weights from ``xswu/HPSv2`` ->
  ``HPS_v2.1_compressed.pt`` (v2.1) or ``HPS_v2_compressed.pt`` (v2.0), a dict with ``state_dict``;
- images: ``PadToSquare(224)`` (the fork's ``ResizeMaxSize`` validation transform);
- text: the open_clip tokenizer, 77 tokens;
- score: cosine of the L2-normalised image and text features (``diag(image_features @ text_features.T)``),
  in [-1, 1]; the HPSv2 benchmark reports it x100, which suites do with ``MetricDef.scale``.

On CUDA the official scorer runs fp32 weights under fp16 autocast; so does this one unless ``dtype`` says
otherwise. Unlike the official function it loads the checkpoint once and scores batches, encoding each
distinct prompt once.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, ClassVar

from craft_bench.errors import UserError
from craft_bench.rewards.base import PixelReward, unique_prompts
from craft_bench.rewards.common import (
    hub_file,
    inference,
    load_state_dict_file,
    load_strict,
    resolve_device,
    resolve_dtype,
    resolve_source,
    skip_weight_init,
    unwrap_state_dict,
)
from craft_bench.rewards.preprocess import PadToSquare

if TYPE_CHECKING:  # pragma: no cover
    import torch

HUB_REPO = "xswu/HPSv2"
CHECKPOINTS = {"v2.1": "HPS_v2.1_compressed.pt", "v2.0": "HPS_v2_compressed.pt"}


def build_open_clip(arch: str) -> Any:
    """An open_clip model by config name, or from a JSON config file (a tiny architecture in tests)."""
    import open_clip

    name = arch
    if arch.endswith(".json"):
        if not os.path.isfile(arch):
            raise UserError(f"open_clip config '{arch}' not found")
        open_clip.add_model_config(arch)
        name = os.path.splitext(os.path.basename(arch))[0]
    if open_clip.get_model_config(name) is None:
        raise UserError(f"unknown open_clip architecture '{arch}' (an open_clip model name or a config .json)")
    with skip_weight_init():
        model = open_clip.create_model(name, pretrained=None, precision="fp32", device="cpu")
    return model, name


class HPS(PixelReward):
    """HPS v2.1 (open_clip ViT-H-14 + HPS_v2.1_compressed.pt); v2.0 by ``version="v2.0"``."""

    name: ClassVar[str] = "hps"
    description: ClassVar[str] = (
        "HPS v2.1 human preference score (open_clip ViT-H-14; cosine, x100 in suites); v2.0 by option"
    )
    higher_is_better: ClassVar[bool] = True
    env: ClassVar[str] = "CRAFT_BENCH_HPS"

    def __init__(
        self, model: Any, tokenizer: Any, device: str, autocast: Any, batch_size: int = 16, image_size: int = 224
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.device = device
        self.autocast = autocast
        self.batch_size = batch_size
        self.preprocessor = PadToSquare(image_size)

    @classmethod
    def load(
        cls,
        source: str | None = None,
        device: str = "cpu",
        dtype: str | None = None,
        *,
        version: str = "v2.1",
        arch: str = "ViT-H-14",
        batch_size: int = 16,
    ) -> "HPS":
        """``source``: a checkpoint file, a folder holding it, or a hub repo (default xswu/HPSv2).

        ``arch`` names the open_clip architecture (or a config .json); only tests change it.
        """
        import open_clip

        if version not in CHECKPOINTS:
            raise UserError(f"hps: unknown version '{version}' (known: {', '.join(CHECKPOINTS)})")
        filename = CHECKPOINTS[version]
        src = resolve_source(cls.name, cls.env, source, HUB_REPO)
        if not src.local:
            path = hub_file(src, filename)
        elif os.path.isdir(src.value):
            path = os.path.join(src.value, filename)
            if not os.path.isfile(path):
                raise UserError(f"hps: folder '{src.value}' has no {filename}; {src.hint()}")
        else:
            path = src.value
        device = resolve_device(device)
        model, name = build_open_clip(arch)
        load_strict(model, unwrap_state_dict(load_state_dict_file(path)), f"hps ({path})")
        model.to(device)
        autocast = resolve_dtype(dtype, device, gpu_default="float16")
        image_size = model.visual.image_size
        image_size = image_size[0] if isinstance(image_size, (tuple, list)) else image_size
        return cls(model, open_clip.get_tokenizer(name), device, autocast, batch_size, int(image_size))

    def score_pixels(self, pixels: "torch.Tensor", prompts: list[str]) -> "torch.Tensor":
        distinct, index = unique_prompts(prompts)
        with inference(self.device, self.autocast):
            image = self.model.encode_image(pixels.to(self.device), normalize=True)
            text = self.model.encode_text(self.tokenizer(distinct).to(self.device), normalize=True)
            scores = (image.float() * text.float()[index]).sum(-1)
        return scores.float().cpu()
