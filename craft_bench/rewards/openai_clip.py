"""OpenAI CLIP (ViT-L/14 by default) on open_clip, for the LAION aesthetic predictor and CLIP score.

The official scorers run ``clip.load("ViT-L/14")`` from openai/CLIP. Its weights exist in two layouts with
the same key names: OpenAI's state dict (``visual.conv1.weight``, ``transformer.resblocks.N...``) and
open_clip's ``open_clip_model.safetensors`` on the hub (``timm/vit_large_patch14_clip_224.openai``). The
architecture is read off the tensors' shapes, as openai/CLIP ``clip/model.py: build_model`` does (heads =
width / 64, QuickGELU), so a tiny test model and ViT-L/14 load through the same code.
"""

from __future__ import annotations

import os
from typing import Any

from craft_bench.errors import UserError
from craft_bench.rewards.common import (
    WeightSource,
    hub_file,
    load_state_dict_file,
    load_strict,
    resolve_source,
    skip_weight_init,
    unwrap_state_dict,
)

CLIP_L14_HUB = "timm/vit_large_patch14_clip_224.openai"
CLIP_L14_FILE = "open_clip_model.safetensors"
CLIP_L14_ENV = "CRAFT_BENCH_CLIP_L14"
_FILES = (CLIP_L14_FILE, "open_clip_pytorch_model.bin", "ViT-L-14.safetensors", "ViT-L-14.pt")


def clip_checkpoint_path(src: WeightSource) -> str:
    if not src.local:
        return hub_file(src, CLIP_L14_FILE)
    if os.path.isdir(src.value):
        for name in _FILES:
            if os.path.isfile(os.path.join(src.value, name)):
                return os.path.join(src.value, name)
        raise UserError(f"{src.reward}: folder '{src.value}' has none of {', '.join(_FILES)}; {src.hint()}")
    return src.value


def build_from_state_dict(state_dict: dict[str, Any], what: str) -> Any:
    """An fp32 open_clip ``CLIP`` whose shape is inferred from OpenAI-layout weights, weights loaded strictly."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    sd = {k: v for k, v in state_dict.items() if k not in ("input_resolution", "context_length", "vocab_size")}
    if "visual.proj" not in sd or "visual.conv1.weight" not in sd:
        raise UserError(f"{what}: not an OpenAI CLIP ViT checkpoint (no visual.proj / visual.conv1.weight)")
    conv = sd["visual.conv1.weight"]
    grid = round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    vision = CLIPVisionCfg(
        layers=sum(1 for k in sd if k.startswith("visual.") and k.endswith(".attn.in_proj_weight")),
        width=conv.shape[0],
        head_width=64,
        patch_size=conv.shape[-1],
        image_size=conv.shape[-1] * grid,
    )
    text = CLIPTextCfg(
        context_length=sd["positional_embedding"].shape[0],
        vocab_size=sd["token_embedding.weight"].shape[0],
        width=sd["ln_final.weight"].shape[0],
        heads=sd["ln_final.weight"].shape[0] // 64,
        layers=len({k.split(".")[2] for k in sd if k.startswith("transformer.resblocks.")}),
    )
    with skip_weight_init():
        model = CLIP(sd["text_projection"].shape[1], vision_cfg=vision, text_cfg=text, quick_gelu=True)
    load_strict(model, {k: v.float() for k, v in sd.items()}, what)
    return model.eval()


def load_openai_clip(reward: str, source: str | None, env: str = CLIP_L14_ENV, option: str = "") -> Any:
    """(model, image_size) of the OpenAI CLIP at ``source`` / ``$env`` / the hub default (``option``: how the
    caller takes a path, for the error message)."""
    src = resolve_source(reward, env, source, CLIP_L14_HUB, option)
    path = clip_checkpoint_path(src)
    model = build_from_state_dict(unwrap_state_dict(load_state_dict_file(path)), f"{reward} CLIP ({path})")
    return model, int(
        model.visual.image_size[0] if isinstance(model.visual.image_size, (tuple, list)) else model.visual.image_size
    )
