"""The mini world's base model: a tiny Stable Diffusion XL, built from configs and shipped trained.

Every component is the stock diffusers/transformers class SDXL uses (UNet2DConditionModel with the
``text_time`` addition embedding, AutoencoderKL, CLIPTextModel + CLIPTextModelWithProjection, the real
CLIP BPE tokenizers), only small: a 64x64 image, a 16x16x4 latent, text encoders of width 64. So the
shipped folder loads with ``StableDiffusionXLPipeline.from_pretrained`` exactly as SDXL's does, and every
method and suite exercises the code paths it would on the real model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from craft_bench.models import ModelPreset
from craft_bench.spec import SamplerSpec

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
BASE_DIR = WEIGHTS_DIR / "base"

IMAGE_SIZE = 64
LATENT_CHANNELS = 4
TEXT_WIDTH = 64  # hidden size of each text encoder; cross-attention width is the two concatenated
TIME_EMBED = 32  # addition_time_embed_dim: SDXL embeds 6 size/crop numbers this wide each
TIME_IDS = (IMAGE_SIZE, IMAGE_SIZE, 0, 0, IMAGE_SIZE, IMAGE_SIZE)  # original size, crop top-left, target size

# Default evaluation sampler: the folder's Euler scheduler (trailing timesteps) in 10 steps, guidance 5,
# batch 16. On the first release's model 10 steps scored as 12 within noise; DPM-Solver++ in 6 steps was 1.5x
# faster but significantly worse (docs/mini.md). With the shipped UNet this is 12.6 images/s on 2 CPU cores.
SAMPLER = SamplerSpec(
    steps=10, guidance_scale=5.0, height=IMAGE_SIZE, width=IMAGE_SIZE, scheduler="default", batch_size=16
)

MINI = ModelPreset(
    name="mini",
    family="sdxl",
    description="the embedded mini world's tiny SDXL-architecture model (64x64, offline, CPU, shipped weights)",
    local_dir=str(BASE_DIR),
    sampler=SAMPLER,
    missing_hint="reinstall craft-bench, or retrain them with `craft-bench mini train all` (docs/mini.md)",
)


def vae_config() -> dict[str, Any]:
    """AutoencoderKL with three levels (64 -> 16 px) and a 4-channel latent, ~1M parameters."""
    return dict(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=32,
        sample_size=IMAGE_SIZE,
        scaling_factor=1.0,  # set from the trained encoder's latent spread (see train.py)
        force_upcast=False,
    )


def unet_config() -> dict[str, Any]:
    """UNet2DConditionModel in SDXL's layout: a plain level, then two cross-attention levels."""
    return dict(
        sample_size=IMAGE_SIZE // 4,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        # Narrower than PLATFORM.md's (64, 128, 128): 0.58x the forward cost, for >= 10 images/s on 2 CPU cores
        # at nearly the same GenEval-mini quality (0.464 vs 0.481) after 6000 steps (docs/mini.md, "Throughput").
        block_out_channels=(48, 64, 128),
        layers_per_block=1,
        transformer_layers_per_block=1,
        attention_head_dim=(2, 2, 4),  # number of heads per level (diffusers' historical name)
        cross_attention_dim=2 * TEXT_WIDTH,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=TIME_EMBED,
        projection_class_embeddings_input_dim=len(TIME_IDS) * TIME_EMBED + TEXT_WIDTH,
        norm_num_groups=16,  # divides every width above (and the skip concatenations in the up path)
    )


def text_encoder_config(projection: bool) -> dict[str, Any]:
    """A 3-layer CLIP text transformer over the full 49408-token CLIP vocabulary."""
    from craft_bench.mini.tokenizer import MAX_LENGTH, VOCAB_SIZE

    return dict(
        vocab_size=VOCAB_SIZE,
        hidden_size=TEXT_WIDTH,
        intermediate_size=4 * TEXT_WIDTH,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=MAX_LENGTH,
        hidden_act="gelu" if projection else "quick_gelu",  # as SDXL's OpenCLIP-G / OpenAI-L encoders
        projection_dim=TEXT_WIDTH,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407 if not projection else 0,
    )


def scheduler_config() -> dict[str, Any]:
    """SDXL's noise schedule (scaled-linear betas 0.00085..0.012 over 1000 steps), Euler, trailing timesteps."""
    return dict(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="epsilon",
        timestep_spacing="trailing",
        steps_offset=1,
    )


def build_vae(seed: int = 0) -> Any:
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(**vae_config())


def build_unet(seed: int = 0) -> Any:
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(**unet_config())


def build_text_encoders(seed: int = 0) -> tuple[Any, Any]:
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    te1 = CLIPTextModel(CLIPTextConfig(**text_encoder_config(projection=False)))
    te2 = CLIPTextModelWithProjection(CLIPTextConfig(**text_encoder_config(projection=True)))
    return te1, te2


def build_scheduler() -> Any:
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(**scheduler_config())


def assemble_pipeline(
    vae: Any, unet: Any, text_encoder: Any, text_encoder_2: Any, tokenizer: Any, tokenizer_2: Any
) -> Any:
    """A stock StableDiffusionXLPipeline from the mini components (no watermarker: 64 px images)."""
    from diffusers import StableDiffusionXLPipeline

    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=build_scheduler(),
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )


def build_pipeline(seed: int = 0, work_dir: str | Path | None = None) -> Any:
    """A randomly initialised mini pipeline (``work_dir`` receives the tokenizer files)."""
    import tempfile

    from craft_bench.mini.tokenizer import build_tokenizers

    tok1, tok2 = build_tokenizers(work_dir or tempfile.mkdtemp(prefix="mini-tok-"))
    te1, te2 = build_text_encoders(seed + 2)
    return assemble_pipeline(build_vae(seed), build_unet(seed + 1), te1, te2, tok1, tok2)


def encode_prompts(text_encoder: Any, text_encoder_2: Any, ids_1: Any, ids_2: Any) -> tuple[Any, Any]:
    """(prompt_embeds, pooled_embeds) from token ids, as StableDiffusionXLPipeline.encode_prompt computes them.

    SDXL conditions on the penultimate hidden states of both encoders, concatenated, and on the second
    encoder's projected end-of-text embedding.
    """
    import torch

    out1 = text_encoder(ids_1, output_hidden_states=True)
    out2 = text_encoder_2(ids_2, output_hidden_states=True)
    embeds = torch.cat([out1.hidden_states[-2], out2.hidden_states[-2]], dim=-1)
    return embeds, out2.text_embeds


def time_ids(batch: int, dtype: Any = None, device: Any = None) -> Any:
    import torch

    return torch.tensor([TIME_IDS], dtype=dtype or torch.float32, device=device).repeat(batch, 1)
