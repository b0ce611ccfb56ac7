"""ImageReward v1.0 (THUDM/ImageReward) on transformers' maintained BLIP modules.

The official package (``image-reward``) vendors BLIP's ViT and BERT ("med") and does not import beside
transformers 5. Its model is, in ``ImageReward/ImageReward.py``:

- image: ``Resize(224, bicubic)``, ``CenterCrop(224)``, RGB, OpenAI mean/std (``ResizeCenterCrop``);
- ``blip.visual_encoder``: BLIP's ViT-L/16 (timm layout, LayerNorm eps 1e-6, all tokens out);
- ``blip.text_encoder``: BERT with cross-attention to the image tokens in every layer, prompt tokenised by
  ``bert-base-uncased`` (+ BLIP's ``[DEC]``/``[ENC]`` tokens), padded/truncated to 35 tokens;
- ``mlp``: 768-1024-128-64-16-1 on the [CLS] output; reward = (r - 0.16717362830052426) / 1.0333394966054072.

Here ``blip.visual_encoder.*`` is renamed onto ``BlipVisionModel`` and ``blip.text_encoder.*`` loads into
``BlipTextModel`` (config ``is_decoder=True`` builds the cross-attention; forward runs bidirectionally, as
the official multimodal mode does). The ViT's shape is read from the checkpoint (heads = width / 64, as in
BLIP's ViT-B and ViT-L), the text encoder's from ``med_config.json``, so tests load tiny models through
the same code. The official scorer runs fp32 on every device; so does this by default.
"""

from __future__ import annotations

import json
import os
import re
from typing import TYPE_CHECKING, Any, ClassVar

from craft_bench.errors import UserError
from craft_bench.rewards.aes import aesthetic_mlp
from craft_bench.rewards.base import PixelReward, unique_prompts
from craft_bench.rewards.common import (
    hub_file,
    hub_reachable,
    inference,
    load_state_dict_file,
    load_strict,
    pretrained_error,
    resolve_device,
    resolve_dtype,
    resolve_source,
    skip_weight_init,
    unwrap_state_dict,
)
from craft_bench.rewards.preprocess import ResizeCenterCrop

if TYPE_CHECKING:  # pragma: no cover
    import torch

HUB_REPO = "THUDM/ImageReward"
CHECKPOINT = "ImageReward.pt"
MED_CONFIG = "med_config.json"
TOKENIZER_HUB = "google-bert/bert-base-uncased"
TOKENIZER_ENV = "CRAFT_BENCH_IMAGEREWARD_TOKENIZER"
REWARD_MEAN = 0.16717362830052426
REWARD_STD = 1.0333394966054072
MAX_TOKENS = 35

_VISION_RENAMES = [
    (r"^cls_token$", "embeddings.class_embedding"),
    (r"^pos_embed$", "embeddings.position_embedding"),
    (r"^patch_embed\.proj\.", "embeddings.patch_embedding."),
    (r"^blocks\.(\d+)\.norm1\.", r"encoder.layers.\1.layer_norm1."),
    (r"^blocks\.(\d+)\.norm2\.", r"encoder.layers.\1.layer_norm2."),
    (r"^blocks\.(\d+)\.attn\.qkv\.", r"encoder.layers.\1.self_attn.qkv."),
    (r"^blocks\.(\d+)\.attn\.proj\.", r"encoder.layers.\1.self_attn.projection."),
    (r"^blocks\.(\d+)\.mlp\.", r"encoder.layers.\1.mlp."),
    (r"^norm\.", "post_layernorm."),
]


def split_checkpoint(state_dict: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """ImageReward.pt -> (BlipVisionModel, BlipTextModel, MLP) state dicts.

    Keys the scorer never uses (``blip.vision_proj``, ``blip.text_proj``, BERT's ``position_ids``
    buffer) are dropped, as the official ``load_state_dict(strict=False)`` tolerates them.
    """
    vision, text, mlp = {}, {}, {}
    for key, value in state_dict.items():
        if key.startswith("blip.visual_encoder."):
            k = key[len("blip.visual_encoder.") :]
            for pattern, repl in _VISION_RENAMES:
                if re.match(pattern, k):
                    vision[re.sub(pattern, repl, k)] = value
                    break
            else:
                raise UserError(f"imagereward: unexpected vision key '{key}' in checkpoint")
        elif key.startswith("blip.text_encoder."):
            k = key[len("blip.text_encoder.") :]
            if not k.endswith("position_ids"):
                text[k] = value
        elif key.startswith("mlp.layers."):
            mlp[key[len("mlp.layers.") :]] = value
    if not vision or not text or not mlp:
        raise UserError("imagereward: checkpoint lacks blip.visual_encoder / blip.text_encoder / mlp weights")
    return vision, text, mlp


def vision_config(vision: dict[str, Any], eps: float = 1e-6) -> Any:
    """BlipVisionConfig read off the ViT weights' shapes (BLIP's ViTs use 64-wide heads)."""
    from transformers import BlipVisionConfig

    patch = vision["embeddings.patch_embedding.weight"]
    width, patch_size = patch.shape[0], patch.shape[-1]
    grid = round((vision["embeddings.position_embedding"].shape[1] - 1) ** 0.5)
    return BlipVisionConfig(
        hidden_size=width,
        intermediate_size=vision["encoder.layers.0.mlp.fc1.weight"].shape[0],
        num_hidden_layers=len({k.split(".")[2] for k in vision if k.startswith("encoder.layers.")}),
        num_attention_heads=max(1, width // 64),
        image_size=patch_size * grid,
        patch_size=patch_size,
        hidden_act="gelu",
        layer_norm_eps=eps,
        attention_dropout=0.0,
    )


def text_config(med: dict[str, Any], encoder_width: int) -> Any:
    """BlipTextConfig from BLIP's ``med_config.json`` (a BertConfig with cross-attention)."""
    from transformers import BlipTextConfig

    return BlipTextConfig(
        vocab_size=med["vocab_size"],
        hidden_size=med["hidden_size"],
        encoder_hidden_size=encoder_width,
        intermediate_size=med["intermediate_size"],
        num_hidden_layers=med["num_hidden_layers"],
        num_attention_heads=med["num_attention_heads"],
        max_position_embeddings=med["max_position_embeddings"],
        hidden_act=med.get("hidden_act", "gelu"),
        layer_norm_eps=med.get("layer_norm_eps", 1e-12),
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=med.get("pad_token_id", 0),
        bos_token_id=None,  # only generation uses it; the scorer never does
        is_decoder=True,
    )


def blip_tokenizer(source: str, local: bool) -> Any:
    """bert-base-uncased plus BLIP's two added tokens (``[DEC]`` as bos, ``[ENC]``), as BLIP's init_tokenizer."""
    from transformers import BertTokenizer

    tok = BertTokenizer.from_pretrained(source, local_files_only=local or not hub_reachable())
    tok.add_special_tokens({"bos_token": "[DEC]"})
    tok.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    return tok


class ImageReward(PixelReward):
    """ImageReward v1.0: BLIP ViT-L + cross-attention BERT + MLP, normalised reward."""

    name: ClassVar[str] = "imagereward"
    description: ClassVar[str] = "ImageReward v1.0 (BLIP + MLP head), standardised reward"
    higher_is_better: ClassVar[bool] = True
    env: ClassVar[str] = "CRAFT_BENCH_IMAGEREWARD"

    def __init__(
        self,
        vision: Any,
        text: Any,
        mlp: Any,
        tokenizer: Any,
        device: str,
        dtype: Any,
        batch_size: int = 16,
        image_size: int = 224,
    ) -> None:
        self.vision = vision.eval()
        self.text = text.eval()
        self.mlp = mlp.eval()
        self.tokenizer = tokenizer
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.preprocessor = ResizeCenterCrop(image_size)

    @classmethod
    def load(
        cls,
        source: str | None = None,
        device: str = "cpu",
        dtype: str | None = None,
        *,
        tokenizer: str | None = None,
        batch_size: int = 16,
    ) -> "ImageReward":
        """``source``: a folder with ImageReward.pt + med_config.json, the .pt itself (med_config.json beside
        it), or a hub repo (default THUDM/ImageReward). ``tokenizer``: a BERT tokenizer folder or hub id
        (default: the source folder when it holds vocab.txt, else bert-base-uncased)."""
        from transformers import BlipTextModel, BlipVisionModel

        src = resolve_source(cls.name, cls.env, source, HUB_REPO)
        if not src.local:
            ckpt_path, med_path = hub_file(src, CHECKPOINT), hub_file(src, MED_CONFIG)
        else:
            folder = src.value if os.path.isdir(src.value) else os.path.dirname(src.value)
            ckpt_path = os.path.join(src.value, CHECKPOINT) if os.path.isdir(src.value) else src.value
            med_path = os.path.join(folder, MED_CONFIG)
            for path in (ckpt_path, med_path):
                if not os.path.isfile(path):
                    raise UserError(
                        f"imagereward: '{path}' not found (need {CHECKPOINT} and {MED_CONFIG} together); {src.hint()}"
                    )
            if (
                tokenizer is None
                and not os.environ.get(TOKENIZER_ENV)
                and os.path.isfile(os.path.join(folder, "vocab.txt"))
            ):
                tokenizer = folder
        tsrc = resolve_source("imagereward.tokenizer", TOKENIZER_ENV, tokenizer, TOKENIZER_HUB)
        try:
            tok = blip_tokenizer(tsrc.value, tsrc.local)
        except OSError as exc:
            raise pretrained_error(tsrc, "BERT tokenizer", exc) from None

        with open(med_path) as f:
            med = json.load(f)
        vision_sd, text_sd, mlp_sd = split_checkpoint(unwrap_state_dict(load_state_dict_file(ckpt_path)))
        vcfg = vision_config(vision_sd)
        with skip_weight_init():
            vision = BlipVisionModel(vcfg)
            text = BlipTextModel(text_config(med, vcfg.hidden_size), add_pooling_layer=False)
        what = f"imagereward ({ckpt_path})"
        load_strict(vision, vision_sd, what)
        load_strict(text, {k: v for k, v in text_sd.items()}, what)
        mlp = aesthetic_mlp(med["hidden_size"])
        load_strict(mlp, mlp_sd, what)
        device = resolve_device(device)
        dtype_ = resolve_dtype(dtype, device)
        return cls(
            vision.to(device, dtype_),
            text.to(device, dtype_),
            mlp.to(device),
            tok,
            device,
            dtype_,
            batch_size,
            vcfg.image_size,
        )

    def score_pixels(self, pixels: "torch.Tensor", prompts: list[str]) -> "torch.Tensor":
        distinct, index = unique_prompts(prompts)
        tokens = self.tokenizer(
            distinct, padding="max_length", truncation=True, max_length=MAX_TOKENS, return_tensors="pt"
        )
        ids = tokens.input_ids[index].to(self.device)
        mask = tokens.attention_mask[index].to(self.device)
        with inference(self.device):
            image_embeds = self.vision(pixel_values=pixels.to(self.device, self.dtype)).last_hidden_state
            out = self.text(input_ids=ids, attention_mask=mask, encoder_hidden_states=image_embeds, is_decoder=False)
            reward = self.mlp(out.last_hidden_state[:, 0, :].float()).squeeze(-1)
            return ((reward - REWARD_MEAN) / REWARD_STD).float().cpu()
