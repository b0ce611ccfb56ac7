"""`craft-bench bench`: how fast craft-bench generates and trains, against plain diffusers, in one run.

Models: ``mini`` (shipped), a local diffusers folder, or ``sdxl-random`` / ``sd15-random``: the SDXL base 1.0 and
SD 1.5 architectures built from their public configs (numbers below) with random weights, so nothing is
downloaded and speed is that of the real architecture.

Measured (methodology: warm-up first, then the median of repeats, the device synchronised around each timing):
- ``unet``: one UNet call on the CFG batch (2 x batch latents) at the resolution: seconds, FLOPs counted from the
  model's config (``torch.utils.flop_counter`` over a copy on the meta device: every matmul, convolution and
  attention product, no weights touched), achieved TFLOP/s and MFU against the device's dense peak;
- ``generate``: images/s with CFG at ``steps`` through craft-bench's own path (``generate.generate``: batches across
  prompts, PNG encoding in a background thread, the run's speed settings) and through a plain default diffusers
  call (``pipe(prompt, num_inference_steps=steps)``, one prompt at a time, the PNG saved), with the peak memory of
  each; the ratio of the two is the figure;
- ``train``: the shared trainer's LoRA step time with cached latents and text embeddings vs the same step encoding
  them every step, as diffusers' ``train_text_to_image_lora_sdxl.py`` does (``TrainConfig.cache_encodings``).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from craft_bench.errors import UserError

# Public configs. SDXL: stabilityai/stable-diffusion-xl-base-1.0 (unet/, vae/, text_encoder/, text_encoder_2/,
# scheduler/ config.json on the hub; the same numbers as Stability-AI/generative-models
# configs/inference/sd_xl_base.yaml: model_channels 320, channel_mult [1, 2, 4], transformer_depth [1, 2, 10],
# num_head_channels 64, context_dim 2048, adm_in_channels 2816). The UNet has 2,567,463,684 parameters.
SDXL_UNET = dict(
    sample_size=128,
    in_channels=4,
    out_channels=4,
    layers_per_block=2,
    block_out_channels=(320, 640, 1280),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    attention_head_dim=(5, 10, 20),
    transformer_layers_per_block=(1, 2, 10),
    cross_attention_dim=2048,
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,
    norm_num_groups=32,
)
SDXL_VAE = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    layers_per_block=2,
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    norm_num_groups=32,
    sample_size=1024,
    scaling_factor=0.13025,
    force_upcast=True,
)
# text_encoder: CLIP ViT-L/14's text tower; text_encoder_2: OpenCLIP ViT-bigG/14's (with its projection).
CLIP_L = dict(
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    hidden_act="quick_gelu",
    projection_dim=768,
)
CLIP_BIGG = dict(
    hidden_size=1280,
    intermediate_size=5120,
    num_hidden_layers=32,
    num_attention_heads=20,
    hidden_act="gelu",
    projection_dim=1280,
)
SDXL_SCHEDULER = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    steps_offset=1,
    timestep_spacing="leading",
    prediction_type="epsilon",
)
# SD 1.5: stable-diffusion-v1-5/stable-diffusion-v1-5 (the CompVis v1 config: model_channels 320, channel_mult
# [1, 2, 4, 4], num_heads 8, context_dim 768). The UNet has 859,520,964 parameters.
SD15_UNET = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    attention_head_dim=8,
    cross_attention_dim=768,
    norm_num_groups=32,
)
SD15_VAE = {**SDXL_VAE, "sample_size": 512, "scaling_factor": 0.18215, "force_upcast": True}
SD15_SCHEDULER = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    steps_offset=1,
    skip_prk_steps=True,
    set_alpha_to_one=False,
)
RANDOM_MODELS = {"sdxl-random": "sdxl", "sd15-random": "sd15"}
DEFAULT_BATCH = {"sdxl-random": 4, "sd15-random": 8, "mini": 16}  # prompts per generation batch (others: 8)

# Dense peak TFLOP/s per device name fragment and dtype (vendor data sheets; SXM parts, no sparsity).
PEAK_TFLOPS = {
    "H200": {"bfloat16": 989.4, "float16": 989.4, "float32": 66.9},
    "H100": {"bfloat16": 989.4, "float16": 989.4, "float32": 66.9},
    "A100": {"bfloat16": 312.0, "float16": 312.0, "float32": 19.5},
    "L40S": {"bfloat16": 362.05, "float16": 362.05, "float32": 91.6},
}


@dataclasses.dataclass
class BenchConfig:
    model: str = "mini"
    device: str = "cpu"
    dtype: str | None = None
    resolution: int | None = None  # default: the model's native resolution
    steps: int = 30
    batch: int | None = None  # default: DEFAULT_BATCH of the model
    images: int = 16
    repeats: int = 5  # UNet calls timed
    train_steps: int = 8  # per mode, after warm-up
    train_batch: int = 4
    lora_rank: int = 4
    warmup: int = 2
    channels_last: bool = False
    compile: bool = False
    peak_tflops: float | None = None
    parts: tuple[str, ...] = ("unet", "generate", "train")


# --------------------------------------------------------------------------- models


def random_components(kind: str, device: str, dtype: str, work: Path) -> tuple[Any, str]:
    """A pipeline of the ``kind`` architecture (``sdxl-random`` or ``sd15-random``) with random weights, built on
    ``device`` from the public configs above; the tokenizers are CLIP's real BPE, rebuilt offline."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        PNDMScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from craft_bench.mini.tokenizer import build_tokenizers
    from craft_bench.models import torch_dtype

    family = RANDOM_MODELS[kind]

    def text(spec):
        return CLIPTextConfig(
            vocab_size=49408,
            max_position_embeddings=77,
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=49407,
            **spec,
        )

    tok, tok2 = build_tokenizers(work / "vocab")
    torch.manual_seed(0)
    with torch.device(device):
        if family == "sdxl":
            parts = dict(
                unet=UNet2DConditionModel(**SDXL_UNET),
                vae=AutoencoderKL(**SDXL_VAE),
                text_encoder=CLIPTextModel(text(CLIP_L)),
                text_encoder_2=CLIPTextModelWithProjection(text(CLIP_BIGG)),
            )
        else:
            parts = dict(
                unet=UNet2DConditionModel(**SD15_UNET),
                vae=AutoencoderKL(**SD15_VAE),
                text_encoder=CLIPTextModel(text(CLIP_L)),
            )
    for m in parts.values():
        m.to(torch_dtype(dtype)).eval()
    if family == "sdxl":
        pipe = StableDiffusionXLPipeline(
            tokenizer=tok,
            tokenizer_2=tok2,
            scheduler=EulerDiscreteScheduler(**SDXL_SCHEDULER),
            add_watermarker=False,
            **parts,
        )
    else:
        pipe = StableDiffusionPipeline(
            tokenizer=tok,
            scheduler=PNDMScheduler(**SD15_SCHEDULER),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
            **parts,
        )
    pipe.set_progress_bar_config(disable=True)
    return pipe, family


def load_bench_model(cfg: BenchConfig, work: Path) -> tuple[Any, str, Path | None, int]:
    """(pipeline, family, folder or None, native resolution) for ``cfg.model``."""
    from craft_bench.models import load_pipeline, resolve_model

    if cfg.model in RANDOM_MODELS:
        pipe, family = random_components(cfg.model, cfg.device, _dtype(cfg), work)
        native = pipe.unet.config.sample_size * pipe.vae_scale_factor
        return pipe, family, None, native
    spec, sampler, folder = resolve_model(cfg.model)
    return load_pipeline(folder, spec.family, cfg.device, _dtype(cfg)), spec.family, folder, sampler.height


def _dtype(cfg: BenchConfig) -> str:
    return cfg.dtype or ("float16" if cfg.device.startswith("cuda") else "float32")


# --------------------------------------------------------------------------- measuring


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


class PeakMemory:
    """Peak memory over a ``with`` block: CUDA's max allocated, else the resident set sampled every 5 ms."""

    def __init__(self, device: str) -> None:
        self.device, self.peak, self._stop = device, 0, threading.Event()

    def __enter__(self) -> "PeakMemory":
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _rss(self) -> int:
        try:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            return 0

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            self._stop.wait(0.005)

    def __exit__(self, *exc: Any) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            self.peak = int(torch.cuda.max_memory_allocated())
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self._rss())


def timed(fn: Callable[[], Any], device: str, repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        out.append(time.perf_counter() - t)
    return out


def unet_inputs(
    unet: Any, batch: int, latent: int, family: str, device: str | None = None, dtype: Any = None
) -> tuple[Any, ...]:
    """(sample, timestep, kwargs) of one UNet call on ``batch`` latents of ``latent`` x ``latent``."""
    import torch

    c = unet.config
    kw: dict[str, Any] = {"device": device, "dtype": dtype}
    x = torch.randn(batch, c.in_channels, latent, latent, **kw)
    t = torch.full((batch,), 999, device=device, dtype=torch.long)
    cond = {"encoder_hidden_states": torch.randn(batch, 77, c.cross_attention_dim, **kw)}
    if c.addition_embed_type == "text_time":
        pooled = c.projection_class_embeddings_input_dim - 6 * c.addition_time_embed_dim
        cond["added_cond_kwargs"] = {
            "text_embeds": torch.randn(batch, pooled, **kw),
            "time_ids": torch.randn(batch, 6, **kw),
        }
    return x, t, cond


def unet_flops(config: Any, batch: int, latent: int, family: str) -> int:
    """FLOPs of one UNet call, counted from its config on the meta device (no memory, no weights)."""
    import torch
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(dict(config))
        x, t, cond = unet_inputs(unet, batch, latent, family, device="meta")
        with FlopCounterMode(display=False) as counter:
            unet(x, t, **cond)
    return int(counter.get_total_flops())


def peak_tflops(device: str, dtype: str, given: float | None) -> tuple[float | None, str]:
    if given:
        return given, "--peak-tflops"
    if device.startswith("cuda"):
        import torch

        name = torch.cuda.get_device_name(torch.device(device))
        for part, table in PEAK_TFLOPS.items():
            if part in name:
                return table.get(dtype), f"{part} data sheet (dense {dtype})"
    return None, "unknown for this device (pass --peak-tflops)"


def bench_unet(pipe: Any, family: str, cfg: BenchConfig, resolution: int) -> dict[str, Any]:
    import torch

    unet = pipe.unet
    latent = resolution // pipe.vae_scale_factor
    batch = 2 * cfg.batch  # classifier-free guidance: the conditional and unconditional halves in one call
    x, t, cond = unet_inputs(unet, batch, latent, family, device=cfg.device, dtype=unet.dtype)
    with torch.inference_mode():
        times = timed(lambda: unet(x, t, **cond), cfg.device, cfg.repeats, cfg.warmup)
    flops = unet_flops(unet.config, batch, latent, family)
    step = statistics.median(times)
    peak, source = peak_tflops(cfg.device, _dtype(cfg), cfg.peak_tflops)
    achieved = flops / step / 1e12
    return {
        "params": sum(p.numel() for p in unet.parameters()),
        "batch": batch,
        "latent": latent,
        "step_s": step,
        "step_s_min": min(times),
        "step_s_max": max(times),
        "flops": flops,
        "tflops_per_s": achieved,
        "peak_tflops": peak,
        "peak_source": source,
        "mfu": achieved / peak if peak else None,
        "attention": type(next(iter(unet.attn_processors.values()))).__name__ if unet.attn_processors else None,
    }


def bench_generate(pipe: Any, family: str, cfg: BenchConfig, resolution: int, work: Path) -> dict[str, Any]:
    """craft-bench's generation path vs a plain diffusers call, equal steps, resolution, guidance and prompts."""
    import io

    import torch

    from craft_bench.api import Checkpoint, PromptItem
    from craft_bench.generate import generate, plan
    from craft_bench.models import apply_speed_settings
    from craft_bench.spec import ModelSpec, SamplerSpec
    from craft_bench.store import Store

    guidance = 5.0 if family == "sdxl" else 7.5
    prompts = [
        f"a photo of {n} {c} objects on a table"
        for n, c in zip(["two", "three", "four", "five"] * 64, ["red", "blue", "green", "pink"] * 64)
    ]
    n = cfg.images

    # Plain diffusers, the way its docs call it: one prompt per call, a PIL image back, saved as PNG.
    def plain_one(i: int) -> None:
        image = pipe(
            prompts[i % len(prompts)],
            num_inference_steps=cfg.steps,
            guidance_scale=guidance,
            height=resolution,
            width=resolution,
            generator=torch.Generator("cpu").manual_seed(i),
        ).images[0]
        image.save(io.BytesIO(), format="PNG")

    plain_one(0)  # warm-up
    with PeakMemory(cfg.device) as plain_mem:
        _sync(cfg.device)
        t = time.perf_counter()
        for i in range(n):
            plain_one(i + 1)
        _sync(cfg.device)
        plain_s = time.perf_counter() - t

    sampler = SamplerSpec(
        steps=cfg.steps,
        guidance_scale=guidance,
        height=resolution,
        width=resolution,
        batch_size=cfg.batch,
        channels_last=cfg.channels_last,
        compile=cfg.compile,
    )
    apply_speed_settings(pipe, sampler)
    model = ModelSpec(name="bench", source="bench", family=family, digest="bench")
    store = Store(work / "store")

    def ours(tag: str, count: int) -> float:
        items = [PromptItem(f"{tag}-{i}", prompts[i % len(prompts)]) for i in range(count)]
        requests = plan(items, Checkpoint(model=model), sampler, 0, _dtype(cfg))
        return generate(requests, store, lambda: pipe, sampler, progress=False).seconds

    ours("warmup", cfg.batch)
    with PeakMemory(cfg.device) as ours_mem:
        ours_s = ours("timed", n)
    plain_rate, ours_rate = n / plain_s, n / ours_s
    return {
        "images": n,
        "steps": cfg.steps,
        "guidance_scale": guidance,
        "resolution": resolution,
        "plain": {"images_per_s": plain_rate, "seconds": plain_s, "batch": 1, "peak_memory_bytes": plain_mem.peak},
        "craft_bench": {
            "images_per_s": ours_rate,
            "seconds": ours_s,
            "batch": cfg.batch,
            "peak_memory_bytes": ours_mem.peak,
            "channels_last": cfg.channels_last,
            "compile": cfg.compile,
        },
        "speedup": ours_rate / plain_rate,
    }


def train_step_times(
    folder: Path, family: str, device: str, steps: int, batch: int, lora_rank: int, warmup: int, work: Path
) -> dict[str, Any]:
    """The shared trainer's step time with cached encodings vs encodings computed every step (the way diffusers'
    training scripts do), same examples and seeds; the first ``warmup`` steps of each are not counted."""
    import numpy as np
    from PIL import Image

    from craft_bench.mini.scenes import random_scene, render
    from craft_bench.train.diffusion import TrainConfig, denoising_error, fit, resolved

    rng = np.random.default_rng(0)
    examples = []
    for i in range(max(16, batch)):
        path = work / "train-images" / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(render(random_scene(rng))).save(path)
        examples.append({"image": str(path), "prompt": f"a photo of scene {i}"})

    def loss(b: dict[str, Any], model: Any) -> tuple[Any, dict[str, float]]:
        return denoising_error(model, b["image"], b).mean(), {}

    out: dict[str, Any] = {"batch": batch, "lora_rank": lora_rank, "steps": steps}
    for mode in ("cached", "per_step"):
        settings = resolved(
            TrainConfig(
                lr=1e-5,
                steps=steps + warmup,
                batch_size=batch,
                lora_rank=lora_rank,
                ckpt_every=10_000,
                cache_encodings=mode == "cached",
            ),
            {},
        )
        r = fit(
            examples,
            loss,
            base_dir=folder,
            family=family,
            results_root=work / "train-res",
            work_dir=work / f"w-{mode}",
            out_dir=work / f"o-{mode}",
            settings=settings,
            seed=0,
            device=device,
            progress=False,
        )
        times = r.loop.step_times[warmup:]
        out[mode] = {
            "median_step_s": statistics.median(times),
            "min_step_s": min(times),
            "max_step_s": max(times),
            "encode_s": r.encode_s,
            "peak_memory_bytes": r.loop.peak_memory_bytes,
        }
    out["speedup"] = out["per_step"]["median_step_s"] / out["cached"]["median_step_s"]
    return out


def host() -> dict[str, Any]:
    import torch

    return {
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "load_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def run_bench(cfg: BenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    from craft_bench.models import resolve_device
    from craft_bench.runner import _device_name
    from craft_bench.version import versions

    cfg.device = resolve_device(cfg.device)
    cfg.batch = cfg.batch or DEFAULT_BATCH.get(cfg.model, 8)
    if cfg.model in RANDOM_MODELS and cfg.device == "cpu":
        if cfg.resolution is None:
            raise UserError(
                f"--model {cfg.model} on the CPU: its native resolution (1024 px for SDXL, 512 for SD1.5) with "
                f"{cfg.steps} steps takes hours here; pass --resolution (e.g. 256) and small "
                "--steps/--images, or use --model mini"
            )
        if "train" in cfg.parts:
            raise UserError(
                f"--model {cfg.model} on the CPU: the trainer benchmark needs a GPU (the fp32 model alone is "
                "3-10 GB); pass --parts unet,generate, or use --model mini"
            )
    unknown = set(cfg.parts) - {"unet", "generate", "train"}
    if unknown:
        raise UserError(f"--parts {','.join(sorted(unknown))}: choose from unet, generate, train")
    for name in ("steps", "batch", "images", "repeats", "train_steps", "train_batch"):
        if getattr(cfg, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} {getattr(cfg, name)}: give a positive number")
    work = Path(tempfile.mkdtemp(prefix="craft-bench-bench-"))
    result: dict[str, Any] = {
        "model": cfg.model,
        "device": _device_name(cfg.device),
        "dtype": _dtype(cfg),
        "versions": versions(),
        "config": dataclasses.asdict(cfg),
    }
    result["host"] = host()
    pipe, family, folder, native = load_bench_model(cfg, work)
    resolution = cfg.resolution or native
    factor = pipe.vae_scale_factor
    if resolution % max(8, factor):
        raise UserError(f"--resolution {resolution}: give a multiple of {max(8, factor)}")
    result.update(family=family, resolution=resolution, native_resolution=native)
    if "unet" in cfg.parts:
        result["unet"] = u = bench_unet(pipe, family, cfg, resolution)
        mfu = f", MFU {u['mfu']:.1%}" if u["mfu"] is not None else ""
        log(
            f"UNet ({u['params'] / 1e6:.1f}M params, batch {u['batch']} at {u['latent']}x{u['latent']} latents): "
            f"{u['step_s'] * 1e3:.1f} ms/call, {u['flops'] / 1e12:.3f} TFLOP/call, {u['tflops_per_s']:.2f} TFLOP/s{mfu}"
        )
    if "generate" in cfg.parts:
        result["generate"] = g = bench_generate(pipe, family, cfg, resolution, work)
        log(
            f"generation, {g['images']} images at {resolution}px, {cfg.steps} steps, CFG "
            f"{g['guidance_scale']}: craft-bench "
            f"{g['craft_bench']['images_per_s']:.3f} img/s (batch {cfg.batch}, peak "
            f"{g['craft_bench']['peak_memory_bytes'] / 2**30:.2f} GiB) "
            f"vs plain diffusers {g['plain']['images_per_s']:.3f} img/s (peak "
            f"{g['plain']['peak_memory_bytes'] / 2**30:.2f} GiB): "
            f"{g['speedup']:.2f}x"
        )
    if "train" in cfg.parts:
        del pipe
        if folder is None:  # a random model: the trainer loads from a folder, as it does for real weights
            folder = work / "model"
            pipe, _ = random_components(cfg.model, cfg.device, "float32", work)
            pipe.save_pretrained(folder)
            del pipe
        result["train"] = t = train_step_times(
            folder, family, cfg.device, cfg.train_steps, cfg.train_batch, cfg.lora_rank, cfg.warmup, work
        )
        log(
            f"trainer, LoRA rank {cfg.lora_rank}, batch {cfg.train_batch}: cached encodings "
            f"{t['cached']['median_step_s'] * 1e3:.1f} "
            f"ms/step vs encoded every step (diffusers' scripts) {t['per_step']['median_step_s'] * 1e3:.1f} "
            f"ms/step: {t['speedup']:.2f}x"
        )
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    return result
