"""Fine-tuning a diffusers text-to-image model: the model facade a method's loss sees, the cached encodings,
and the one place that turns a method's training examples into a trained checkpoint (``fit``).

A trainable method supplies examples (dicts with image paths, prompts and per-example numbers such as an
advantage) and a loss over a batch; it never writes a loop, an optimiser, a seed rule or a checkpoint format:

- conditioning exactly as diffusers' training scripts build it: SDXL = the penultimate hidden states of both
  text encoders concatenated, the pooled (projected) embedding of text_encoder_2 and add_time_ids (original
  size, crop corner, target size); SD1.5 = the last hidden state of its encoder. Epsilon or v-prediction
  targets from the scheduler config;
- VAE latents (the posterior mean x scaling factor) and text embeddings are computed once per example and cached
  content-addressed under ``<results>/cache/``; the VAE and text encoders leave the device before the first step;
- the noise, timesteps and conditioning-dropout draws of step s come from (seed, s) for the whole global batch,
  so one process and N processes (each taking its share) train on the same numbers;
- LoRA through peft (saved so that plain ``pipe.load_lora_weights(dir)`` loads it) or the full UNet (saved as a
  diffusers ``unet/`` folder).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from craft_bench.errors import UserError
from craft_bench.spec import setting
from craft_bench.train.loop import LoopResult, LoopSpec, Schedule, Task, run_task
from craft_bench.train.trackers import Tracking, batch_fields, check_report_to

DEFAULT_LORA_TARGETS = "to_q,to_k,to_v,to_out.0"


@dataclass(frozen=True)
class TrainConfig:
    """The training settings every trainable method has (its Config inherits them, so ``--set method.lr=...``
    works for all). ``None`` means: the method's preset for the model's world, else the world's own training preset
    (``train.method.settings_for``; docs/methods.md)."""

    lr: float | None = setting(None, "learning rate (AdamW)")
    steps: int | None = setting(None, "optimisation steps")
    batch_size: int | None = setting(None, "global batch (examples per step, over all processes and accumulation)")
    grad_accum: int = setting(1, "gradient accumulation steps (the batch is split into this many parts)")
    lora_rank: int | None = setting(None, "LoRA rank; 0 = fine-tune the whole UNet")
    lora_alpha: float | None = setting(None, "LoRA alpha (default: the rank)")
    lora_targets: str = setting(DEFAULT_LORA_TARGETS, "comma-separated UNet module names that get LoRA adapters")
    optimizer: str = setting("adamw", "adamw, adafactor (transformers) or adamw8bit (bitsandbytes, CUDA)")
    schedule: str = setting("constant", "learning-rate schedule after warmup: constant or cosine")
    warmup: int = setting(0, "linear warmup steps")
    weight_decay: float = setting(1e-2, "AdamW weight decay (diffusers' training scripts: 1e-2)")
    max_grad_norm: float = setting(1.0, "gradient-norm clipping (0: off)")
    ema_decay: float = setting(0.0, "EMA of the trained weights (0: off; the EMA weights are what is saved)")
    snr_gamma: float = setting(0.0, "min-SNR-gamma loss weighting (Hang et al. 2023; 0: off, 5 is their value)")
    cond_dropout: float = setting(0.0, "share of examples trained with empty conditioning (keeps the CFG branch)")
    timestep_min: float = setting(
        0.0,
        "train on timesteps from this share of the schedule (0: all; 0.5: the noisier half, "
        "where layout and composition are decided)",
        omit_default=True,
    )
    gradient_checkpointing: bool = setting(False, "recompute UNet activations in the backward pass (less memory)")
    mixed_precision: str = setting("auto", "no, bf16, fp16 or auto (bf16 on CUDA, none on CPU)")
    ckpt_every: int = setting(50, "checkpoint every N steps (a killed run resumes from the last one)")
    latents: str = setting(
        "encode",
        "training latents of generated images: encode (VAE mean of the PNG, as for any image) or "
        "sampled (the latents the sampler produced, kept by the pool's generation)",
        omit_default=True,
    )
    cache_encodings: bool = setting(
        True,
        "encode latents and prompts once (cached); false: every step, as "
        "diffusers' training scripts do (kept for benchmarks)",
        omit_default=True,
    )
    report_to: str = setting(
        "none",
        "send the per-step training numbers to tensorboard or wandb (accelerate's trackers; "
        "logs/ beside the weights; pip install 'craft-bench[track]'), or none",
        identity=False,
    )

    def __post_init__(self) -> None:
        for name in ("lr", "steps", "batch_size"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise ValueError(f"{name} must be positive, got {v}")
        if self.lr is not None and not np.isfinite(self.lr):
            raise ValueError(f"lr must be a finite number, got {self.lr}")
        if self.grad_accum < 1 or self.ckpt_every < 1 or self.warmup < 0:
            raise ValueError("grad_accum and ckpt_every must be >= 1 and warmup >= 0")
        if not 0.0 <= self.timestep_min < 1.0:
            raise ValueError("timestep_min must be in [0, 1)")
        if self.lora_rank is not None and self.lora_rank < 0:
            raise ValueError("lora_rank must be >= 0 (0 = full fine-tuning)")
        if self.schedule not in ("constant", "cosine"):
            raise ValueError("schedule must be constant or cosine")
        if not 0.0 <= self.cond_dropout < 1.0:
            raise ValueError("cond_dropout must be in [0, 1)")
        if self.mixed_precision not in ("auto", "no", "bf16", "fp16"):
            raise ValueError("mixed_precision must be auto, no, bf16 or fp16")
        if self.latents not in ("encode", "sampled"):
            raise ValueError("latents must be encode or sampled")
        if self.latents == "sampled" and not self.cache_encodings:
            raise ValueError("latents=sampled reads stored latents; it needs cache_encodings=true")
        check_report_to(self.report_to)


TRAIN_FIELDS = tuple(f.name for f in fields(TrainConfig))


def resolved(config: Any, presets: dict[str, Any]) -> dict[str, Any]:
    """The training settings of ``config`` with every ``None`` replaced by ``presets``' value."""
    out = {}
    for name in TRAIN_FIELDS:
        v = getattr(config, name)
        out[name] = presets.get(name) if v is None else v
    if out["lora_alpha"] is None:
        out["lora_alpha"] = float(out["lora_rank"] or 1)
    missing = [k for k in ("lr", "steps", "batch_size", "lora_rank") if out[k] is None]
    if missing:
        raise ValueError(f"no preset for {', '.join(missing)}")
    return out


# --------------------------------------------------------------------------- the model facade


# --------------------------------------------------------------------------- the diffusion math, written once
# Every method's loss and every mini training recipe uses these (on a ``DiffusionModel`` through its methods
# ``noisy``, ``target``, ``snr_weights`` and ``denoise``). ``alphas_cumprod`` is the scheduler's cumulative
# product of alphas (a_t), ``t`` a batch of integer timesteps, latents [B, C, H, W].


def forward_noise(latents: Any, noise: Any, alphas_cumprod: Any, t: Any) -> Any:
    """The forward process at timesteps ``t``: x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps."""
    ac = alphas_cumprod[t].view(-1, 1, 1, 1)
    return ac.sqrt() * latents + (1 - ac).sqrt() * noise


def implied_noise(noisy: Any, latents: Any, alphas_cumprod: Any, t: Any) -> Any:
    """The noise that takes ``latents`` to ``noisy`` at ``t`` (the forward process solved for eps; SmPO's inverted
    noise): (x_t - sqrt(a_t) x0) / sqrt(1 - a_t)."""
    ac = alphas_cumprod[t].view(-1, 1, 1, 1)
    return (noisy - ac.sqrt() * latents) / (1 - ac).sqrt()


def prediction_target(latents: Any, noise: Any, alphas_cumprod: Any, t: Any, prediction_type: str = "epsilon") -> Any:
    """What the UNet is trained to predict: eps, or v = sqrt(a_t) eps - sqrt(1 - a_t) x0 for v-prediction."""
    if prediction_type == "epsilon":
        return noise
    ac = alphas_cumprod[t].view(-1, 1, 1, 1)
    return ac.sqrt() * noise - (1 - ac).sqrt() * latents


def min_snr_weights(alphas_cumprod: Any, t: Any, gamma: float, prediction_type: str = "epsilon") -> Any:
    """min-SNR-gamma weights (Hang et al. 2023), SNR = a_t / (1 - a_t): min(SNR, gamma) / SNR for epsilon targets,
    min(SNR, gamma) / (SNR + 1) for v-prediction; ones when gamma is 0."""
    import torch

    if not gamma:
        return torch.ones(len(t), device=t.device)
    snr = alphas_cumprod[t] / (1 - alphas_cumprod[t])
    capped = torch.clamp(snr, max=gamma)
    return capped / snr if prediction_type == "epsilon" else capped / (snr + 1)


def per_example_error(pred: Any, target: Any) -> Any:
    """Mean squared error of each example's prediction, in float32: [B, C, H, W] -> [B]."""
    return ((pred.float() - target.float()) ** 2).mean(dim=(1, 2, 3))


@dataclass
class Denoised:
    """One denoising pass: the per-example error, the prediction and the noisy input it was made from."""

    error: Any
    pred: Any
    noisy: Any


def denoise(model: Any, latents: Any, noise: Any, t: Any, cond: dict[str, Any]) -> Denoised:
    """``latents`` noised with ``noise`` at ``t``, predicted by ``model`` under ``cond``, scored against the target."""
    noisy = model.noisy(latents, noise, t)
    pred = model.predict(noisy, t, cond)
    return Denoised(per_example_error(pred, model.target(latents, noise, t)), pred, noisy)


class DiffusionModel:
    """A diffusers text-to-image model prepared for training, as a method's loss sees it.

    ``predict(noisy, t, cond)`` runs the trained UNet; ``with model.reference():`` runs the frozen starting
    weights instead (LoRA: the same UNet with its adapter disabled; full fine-tuning: a frozen copy)."""

    def __init__(
        self,
        folder: str | Path,
        family: str,
        device: str,
        lora_rank: int = 0,
        lora_alpha: float | None = None,
        lora_targets: str = DEFAULT_LORA_TARGETS,
        gradient_checkpointing: bool = False,
        needs_reference: bool = False,
        init_adapter: str | None = None,
        seed: int = 0,
    ) -> None:
        import torch
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

        from craft_bench.models import quiet_library_bars

        quiet_library_bars()
        self.folder, self.family, self.device = Path(folder), family, device
        self.scheduler = DDPMScheduler.from_pretrained(str(self.folder), subfolder="scheduler")
        self.prediction_type = self.scheduler.config.prediction_type
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise UserError(
                f"{folder}: training supports epsilon and v_prediction models, not '{self.prediction_type}'"
            )
        self.alphas_cumprod = self.scheduler.alphas_cumprod.to(device=device, dtype=torch.float32)
        unet_dir = (
            Path(init_adapter) / "unet"
            if init_adapter and (Path(init_adapter) / "unet" / "config.json").is_file()
            else self.folder / "unet"
        )
        self.unet = UNet2DConditionModel.from_pretrained(str(unet_dir), torch_dtype=torch.float32).to(device)
        self.vae = AutoencoderKL.from_pretrained(str(self.folder / "vae"), torch_dtype=torch.float32).to(device).eval()
        self.vae.requires_grad_(False)
        self.lora_rank = int(lora_rank)
        self.reference_unet = None
        if self.lora_rank > 0:
            from peft import LoraConfig

            self.unet.requires_grad_(False)
            with torch.random.fork_rng(devices=[]):  # the adapter's random init comes from the seed, nothing else
                torch.manual_seed(seed)
                self.unet.add_adapter(
                    LoraConfig(
                        r=self.lora_rank,
                        lora_alpha=lora_alpha or self.lora_rank,
                        init_lora_weights="gaussian",
                        target_modules=[t.strip() for t in lora_targets.split(",") if t.strip()],
                    )
                )
            if init_adapter and any(Path(init_adapter).glob("pytorch_lora_weights.*")):
                self._load_lora(init_adapter)
        elif needs_reference:
            self.reference_unet = copy.deepcopy(self.unet).requires_grad_(False).eval()
        if gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
        self.unet.train()
        self.trained_unet = self.unet  # what predict() calls; the loop may swap in a DDP wrapper
        self._encoders: tuple[Any, ...] | None = None
        self._use_reference = False

    # ---------------------------------------------------------------- conditioning
    def _text_encoders(self) -> tuple[Any, ...]:
        if self._encoders is None:
            import torch
            from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

            tok1 = CLIPTokenizer.from_pretrained(str(self.folder / "tokenizer"))
            te1 = (
                CLIPTextModel.from_pretrained(str(self.folder / "text_encoder"), torch_dtype=torch.float32)
                .to(self.device)
                .eval()
            )
            if self.family == "sdxl":
                tok2 = CLIPTokenizer.from_pretrained(str(self.folder / "tokenizer_2"))
                te2 = (
                    CLIPTextModelWithProjection.from_pretrained(
                        str(self.folder / "text_encoder_2"), torch_dtype=torch.float32
                    )
                    .to(self.device)
                    .eval()
                )
                self._encoders = (tok1, te1, tok2, te2)
            else:
                self._encoders = (tok1, te1)
        return self._encoders

    def encode_prompts(self, prompts: Sequence[str]) -> dict[str, Any]:
        """Per prompt: ``embeds`` [L, D] (and for SDXL ``pooled`` [P] and ``time_ids`` [6]), as the
        diffusers pipelines and training scripts condition the UNet."""
        import torch

        enc = self._text_encoders()

        def ids(tok: Any) -> Any:
            return tok(
                list(prompts),
                padding="max_length",
                max_length=tok.model_max_length,
                truncation=True,
                return_tensors="pt",
            ).input_ids.to(self.device)

        with torch.no_grad():
            if self.family == "sdxl":
                tok1, te1, tok2, te2 = enc
                out1 = te1(ids(tok1), output_hidden_states=True)
                out2 = te2(ids(tok2), output_hidden_states=True)
                embeds = torch.cat([out1.hidden_states[-2], out2.hidden_states[-2]], dim=-1)
                size = self.resolution()
                time_ids = torch.tensor([[size, size, 0, 0, size, size]], dtype=torch.float32).repeat(len(prompts), 1)
                return {"embeds": embeds.float().cpu(), "pooled": out2.text_embeds.float().cpu(), "time_ids": time_ids}
            tok1, te1 = enc
            return {"embeds": te1(ids(tok1))[0].float().cpu()}

    def empty_condition(self) -> dict[str, Any]:
        """The conditioning of the unconditional (CFG) branch: zeros for SDXL (the pipeline's
        ``force_zeros_for_empty_prompt``), the empty prompt's encoding for SD1.5."""
        import torch

        c = self.encode_prompts([""])
        if self.family == "sdxl":
            c = {k: (torch.zeros_like(v) if k != "time_ids" else v) for k, v in c.items()}
        return {k: v[0] for k, v in c.items()}

    def resolution(self) -> int:
        factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        size = self.unet.config.sample_size
        return int((size[0] if isinstance(size, (list, tuple)) else size) * factor)

    def encode_images(self, images: Sequence[Any]) -> Any:
        """VAE posterior means x scaling factor of PIL images (resized to the native resolution)."""
        import torch

        size = self.resolution()
        arrays = [
            np.asarray(im.convert("RGB").resize((size, size)) if im.size != (size, size) else im.convert("RGB"))
            for im in images
        ]
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).to(self.device)
        with torch.no_grad():
            mean = self.vae.encode(x).latent_dist.mean
        return (mean * self.vae.config.scaling_factor).float().cpu()

    def decode_images(self, latents: Any) -> np.ndarray:
        """uint8 images [B, H, W, 3] of latents, decoded and rounded as the pipelines' ``output_type="np"`` images are
        turned into PNGs (``generate.sample_arrays``)."""
        import torch

        cfg = self.vae.config
        z = latents.to(self.device, torch.float32)
        if getattr(cfg, "latents_mean", None) is not None and getattr(cfg, "latents_std", None) is not None:
            mean = torch.tensor(cfg.latents_mean, device=self.device).view(1, -1, 1, 1)
            std = torch.tensor(cfg.latents_std, device=self.device).view(1, -1, 1, 1)
            z = z * std / cfg.scaling_factor + mean
        else:
            z = z / cfg.scaling_factor
        with torch.no_grad():
            x = self.vae.decode(z).sample
        x = (x.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
        return (x * 255).round().astype(np.uint8)

    def release_text_encoders(self) -> None:
        """The text encoders leave: the prompts are encoded (the VAE stays, for decoding rollouts)."""
        import gc

        self._encoders = None
        gc.collect()

    def release_encoders(self) -> None:
        """The VAE and text encoders leave the device: the optimisation steps need only the UNet."""
        import torch

        self.release_text_encoders()
        self.vae.to("cpu")
        if str(self.device).startswith("cuda"):
            torch.cuda.empty_cache()

    # ---------------------------------------------------------------- diffusion (the math: module functions below)
    def noisy(self, latents: Any, noise: Any, t: Any) -> Any:
        return forward_noise(latents, noise, self.alphas_cumprod, t)

    def target(self, latents: Any, noise: Any, t: Any) -> Any:
        return prediction_target(latents, noise, self.alphas_cumprod, t, self.prediction_type)

    def snr_weights(self, t: Any, gamma: float) -> Any:
        return min_snr_weights(self.alphas_cumprod, t, gamma, self.prediction_type)

    def predict(self, noisy: Any, t: Any, cond: dict[str, Any]) -> Any:
        """The UNet's output for noisy latents at timesteps ``t`` under conditioning ``cond``."""
        unet = self.trained_unet
        if self._use_reference and self.reference_unet is not None:
            unet = self.reference_unet
        kwargs: dict[str, Any] = {"encoder_hidden_states": cond["embeds"]}
        if self.family == "sdxl":
            kwargs["added_cond_kwargs"] = {"text_embeds": cond["pooled"], "time_ids": cond["time_ids"]}
        return unet(noisy, t, **kwargs).sample

    def invert(self, latents: Any, t: Any, cond: dict[str, Any], steps: int, renoise: bool = False) -> Any:
        """DDIM inversion of clean ``latents`` towards per-example timesteps ``t`` with the current weights (no
        gradients): the inverse steps of a ``steps``-step schedule whose timesteps lie below t_i, taken with
        diffusers' ``DDIMInverseScheduler`` built from the model's own scheduler config (Song et al. 2021, eq. 13
        run backwards; its pixel-range ``clip_sample`` off: SDXL's and SD1.5's configs turn it off, and a latent
        is not an image). ``renoise``: each step's noise prediction is the mean of the predictions at the latent
        before and after a first inverse step (the correction SmPO's code applies, after ReNoise, Garibi et al.
        2024). Returns the latents at each example's last inverse timestep below t_i (``latents`` where none)."""
        import torch

        sched = self._inverse_scheduler(steps)
        x = latents.detach().clone()
        with torch.no_grad():
            for step_t in sched.timesteps.tolist():
                active = (t > step_t).nonzero().flatten()
                if len(active) == 0:
                    continue
                xa = x[active]
                ca = {k: v[active] for k, v in cond.items()}
                ta = torch.full((len(active),), int(step_t), device=x.device, dtype=torch.long)
                pred = self.predict(xa, ta, ca)
                if renoise:
                    once = sched.step(pred, int(step_t), xa).prev_sample
                    pred = (pred + self.predict(once, ta, ca)) / 2
                x[active] = sched.step(pred, int(step_t), xa).prev_sample.to(x.dtype)
        return x

    def _inverse_scheduler(self, steps: int) -> Any:
        from diffusers import DDIMInverseScheduler

        cached = getattr(self, "_inverse", None)
        if cached is None or cached.num_inference_steps != steps:
            cached = DDIMInverseScheduler.from_pretrained(str(self.folder), subfolder="scheduler", clip_sample=False)
            cached.set_timesteps(steps)
            self._inverse = cached
        return cached

    @contextlib.contextmanager
    def reference(self) -> Iterator[None]:
        """Run the starting weights (frozen, no gradients) for the ``with`` block."""
        import torch

        if self.lora_rank > 0:
            self.unet.disable_adapters()
        else:
            if self.reference_unet is None:
                raise RuntimeError("this method did not ask for a reference model (needs_reference = True)")
            self._use_reference = True
        try:
            with torch.no_grad():
                yield
        finally:
            if self.lora_rank > 0:
                self.unet.enable_adapters()
            self._use_reference = False

    # ---------------------------------------------------------------- weights
    def trainable_state(self) -> dict[str, Any]:
        if self.lora_rank > 0:
            return {k: v for k, v in self.unet.state_dict().items() if "lora_" in k}
        return self.unet.state_dict()

    def load_trainable_state(self, tensors: dict[str, Any]) -> None:
        self.unet.load_state_dict(tensors, strict=self.lora_rank == 0)

    def _load_lora(self, folder: str | Path) -> None:
        from diffusers.utils import convert_unet_state_dict_to_peft
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        sd = load_file(str(next(Path(folder).glob("pytorch_lora_weights.*"))))
        sd = {k[len("unet.") :]: v for k, v in sd.items() if k.startswith("unet.")}
        set_peft_model_state_dict(self.unet, convert_unet_state_dict_to_peft(sd))

    def save(self, out_dir: str | Path) -> list[str]:
        """LoRA: ``pytorch_lora_weights.safetensors`` in diffusers' layout; full: a ``unet/`` folder."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if self.lora_rank > 0:
            from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
            from diffusers.utils import convert_state_dict_to_diffusers
            from peft.utils import get_peft_model_state_dict

            layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(self.unet))
            cls = StableDiffusionXLPipeline if self.family == "sdxl" else StableDiffusionPipeline
            cls.save_lora_weights(str(out), unet_lora_layers=layers, safe_serialization=True)
            return ["pytorch_lora_weights.safetensors"]
        self.unet.save_pretrained(str(out / "unet"), safe_serialization=True)
        return ["unet/"]


# --------------------------------------------------------------------------- cached encodings


class EncodingCache:
    """Latents and text embeddings, content-addressed under ``<root>/cache/``: a latent's key covers the VAE
    weights and the image bytes, an embedding's the text encoders' weights and the prompt."""

    def __init__(self, root: str | Path, model: DiffusionModel) -> None:
        from craft_bench.models import weights_digest

        self.root = Path(root) / "cache"
        self.model = model
        self.vae_digest = weights_digest(model.folder / "vae")
        te = [model.folder / "text_encoder"] + ([model.folder / "text_encoder_2"] if model.family == "sdxl" else [])
        self.te_digest = hashlib.sha256("".join(weights_digest(p) for p in te).encode()).hexdigest()
        self.hits = self.misses = 0

    def _path(self, kind: str, key: str) -> Path:
        return self.root / kind / key[:2] / f"{key}.safetensors"

    def latents(self, image_paths: Sequence[str]) -> list[Any]:
        from PIL import Image

        from craft_bench.store import file_digest

        keys = [
            hashlib.sha256(json.dumps([self.vae_digest, file_digest(p), self.model.resolution()]).encode()).hexdigest()
            for p in image_paths
        ]
        return self._get(
            "latents",
            keys,
            lambda idx: self.model.encode_images([Image.open(image_paths[i]).convert("RGB") for i in idx]),
        )

    def embeddings(self, prompts: Sequence[str]) -> list[dict[str, Any]]:
        keys = [
            hashlib.sha256(json.dumps([self.te_digest, self.model.family, p]).encode()).hexdigest() for p in prompts
        ]
        return self._get("embeds", keys, lambda idx: _split_rows(self.model.encode_prompts([prompts[i] for i in idx])))

    def _get(self, kind: str, keys: Sequence[str], compute: Callable[[list[int]], Any], chunk: int = 64) -> list[Any]:
        """Cached values of ``keys``; the missing ones computed in chunks (first index of each key) and stored."""
        from safetensors.torch import load_file
        from safetensors.torch import save as to_bytes

        from craft_bench.store import atomic_write_bytes

        firsts: dict[str, int] = {}
        for i, k in enumerate(keys):
            if not self._path(kind, k).is_file():
                firsts.setdefault(k, i)
        todo = list(firsts.values())
        for start in range(0, len(todo), chunk):
            idx = todo[start : start + chunk]
            for i, value in zip(idx, compute(idx)):
                tensors = {"latents": value} if kind == "latents" else value
                atomic_write_bytes(self._path(kind, keys[i]), to_bytes({k: t.contiguous() for k, t in tensors.items()}))
        self.misses += len(todo)
        self.hits += len(set(keys)) - len(todo)
        out = []
        for k in keys:
            loaded = load_file(str(self._path(kind, k)))
            out.append(loaded["latents"] if kind == "latents" else loaded)
        return out


def _split_rows(batch: dict[str, Any]) -> list[dict[str, Any]]:
    n = next(iter(batch.values())).shape[0]
    return [{k: v[i] for k, v in batch.items()} for i in range(n)]


# --------------------------------------------------------------------------- the training task


def step_generator(seed: int, step: int) -> Any:
    """The torch CPU generator of step ``step``: the one source of its noise, timesteps and dropout draws."""
    import torch

    h = hashlib.sha256(f"craft-bench-train:{seed}:{step}".encode()).digest()
    return torch.Generator("cpu").manual_seed(int.from_bytes(h[:8], "little") & ((1 << 63) - 1))


@dataclass
class Encoded:
    """Training examples with their cached encodings: per image field a latent per example, the prompt's
    conditioning per example, and per-example numbers. Without caching (``paths``/``prompts`` set instead of
    ``latents``/``cond``) every step encodes its examples again."""

    latents: dict[str, Any] | None  # field -> tensor [N, C, H, W]
    cond: dict[str, Any] | None  # embeds [N, L, D], (pooled [N, P], time_ids [N, 6])
    numbers: dict[str, Any]  # field -> tensor [N]
    empty: dict[str, Any]  # the unconditional conditioning of one example
    paths: dict[str, list[str]] | None = None
    prompts: list[str] | None = None

    def __len__(self) -> int:
        return len(self.prompts) if self.prompts is not None else int(next(iter(self.cond.values())).shape[0])

    def rows(self, model: "DiffusionModel", idx: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """(latents, conditioning) of examples ``idx``: from the cache, or encoded now."""
        if self.latents is not None:
            return {k: v[idx] for k, v in self.latents.items()}, {k: v[idx] for k, v in self.cond.items()}
        from PIL import Image

        lat = {
            f: model.encode_images([Image.open(p[int(i)]).convert("RGB") for i in idx]) for f, p in self.paths.items()
        }
        return lat, model.encode_prompts([self.prompts[int(i)] for i in idx])


class DiffusionTask(Task):
    """One training run of a method's loss over encoded examples."""

    name = "diffusion"

    def __init__(
        self,
        model: DiffusionModel,
        data: Encoded,
        loss_fn: Callable[[dict[str, Any], DiffusionModel], Any],
        batch_size: int,
        seed: int,
        cond_dropout: float,
        snr_gamma: float,
        timestep_min: float = 0.0,
    ) -> None:
        self.model, self.data, self.loss_fn = model, data, loss_fn
        self.batch_size, self.seed, self.cond_dropout, self.snr_gamma = batch_size, seed, cond_dropout, snr_gamma
        self.t_low = int(round(timestep_min * len(model.alphas_cumprod)))
        self.log_columns: dict[str, np.ndarray] = {}  # per-example numbers whose batch means a tracker logs

    def modules(self) -> dict[str, Any]:
        return {"unet": self.model.unet}

    def bind(self, prepared: dict[str, Any]) -> None:
        self.prepared = prepared
        self.model.trained_unet = prepared["unet"]

    def state_tensors(self) -> dict[str, Any]:
        return {f"unet.{k}": v for k, v in self.model.trainable_state().items()}

    def load_state_tensors(self, tensors: dict[str, Any]) -> None:
        self.model.load_trainable_state({k[5:]: v for k, v in tensors.items() if k.startswith("unet.")})

    def indices(self, step: int) -> np.ndarray:
        """The examples of ``step``'s global batch: consecutive slices of per-epoch permutations (seeded by
        (seed, epoch)), so every example is seen once per epoch."""
        n, b = len(self.data), self.batch_size
        first, last = step * b, (step + 1) * b
        out = []
        for epoch in range(first // n, (last - 1) // n + 1):
            perm = np.random.default_rng([self.seed, epoch]).permutation(n)
            lo, hi = max(first - epoch * n, 0), min(last - epoch * n, n)
            out.append(perm[lo:hi])
        return np.concatenate(out)

    def batch(self, step: int) -> dict[str, Any]:
        import torch

        idx = torch.from_numpy(self.indices(step))
        b = len(idx)
        gen = step_generator(self.seed, step)
        latents, raw_cond = self.data.rows(self.model, idx)
        first = next(iter(latents.values()))
        noise = torch.randn((b, *first.shape[1:]), generator=gen)
        t = torch.randint(self.t_low, len(self.model.alphas_cumprod), (b,), generator=gen)
        drop = torch.rand(b, generator=gen) < self.cond_dropout
        cond = {}
        for k, rows in raw_cond.items():
            if drop.any():
                rows = torch.where(drop.view(-1, *([1] * (rows.dim() - 1))), self.data.empty[k].unsqueeze(0), rows)
            cond[k] = rows
        dev = self.model.device
        batch = {
            "noise": noise.to(dev),
            "timesteps": t.to(dev),
            "cond": {k: v.to(dev) for k, v in cond.items()},
            "snr_weight": self.model.snr_weights(t.to(dev), self.snr_gamma),
        }
        for k, v in latents.items():
            batch[k] = v.to(dev)
        for k, v in self.data.numbers.items():
            batch[k] = v[idx].to(dev)
        return batch

    def loss(self, batch: dict[str, Any], step: int) -> tuple[Any, dict[str, float]]:
        return self.loss_fn(batch, self.model)

    def step_logs(self, step: int) -> dict[str, float]:
        idx = self.indices(step)
        return {f"batch/{name}_mean": float(values[idx].mean()) for name, values in self.log_columns.items()}


def denoising_error(model: DiffusionModel, latents: Any, batch: dict[str, Any]) -> Any:
    """Per-example mean squared error of the model's prediction for ``latents`` noised with the batch's noise
    at its timesteps (the quantity every method's loss is built from)."""
    return denoise(model, latents, batch["noise"], batch["timesteps"], batch["cond"]).error


def sampled_latents(results_root: str | Path, examples: Sequence[dict[str, Any]], image_field: str) -> list[Any]:
    """The latents the sampler produced for each example's image (``<image_field>`` "image" -> key field "image_key",
    "image_w" -> "image_key_w"), as kept by generation (``generate(keep_latents=True)``)."""
    from safetensors.torch import load_file

    from craft_bench.store import Store

    store = Store(results_root, create=False)
    key_field = image_field.replace("image", "image_key", 1)
    out = []
    for e in examples:
        path = store.latent_path(e.get(key_field, ""))
        if not e.get(key_field) or not path.is_file():
            raise UserError(
                f"latents=sampled: no sampled latents for {e.get(image_field)}; they are kept only for candidate "
                "pools built with latents=sampled (or use latents=encode)"
            )
        out.append(load_file(str(path))["latents"])
    return out


# --------------------------------------------------------------------------- fit


@dataclass
class FitResult:
    out_dir: Path
    files: list[str]
    loop: LoopResult
    encode_s: float
    cache_hits: int
    cache_misses: int
    train_settings: dict[str, Any] = field(default_factory=dict)
    accounting: dict[str, Any] = field(default_factory=dict)  # what an online task reports (``Task.accounting``)


def loop_spec(settings: dict[str, Any], seed: int, device: str) -> LoopSpec:
    """The shared loop's spec from a method's resolved training settings (``mixed_precision=auto``: bf16 on CUDA)."""
    s = settings
    mixed = s["mixed_precision"]
    if mixed == "auto":
        mixed = "bf16" if str(device).startswith("cuda") else "no"
    return LoopSpec(
        steps=int(s["steps"]),
        lr=float(s["lr"]),
        schedule=Schedule(kind=s["schedule"], warmup=int(s["warmup"]), warmup_style="ramp"),
        optimizer=s["optimizer"],
        weight_decay=float(s["weight_decay"]),
        max_grad_norm=float(s["max_grad_norm"]) or None,
        ema_decay=float(s["ema_decay"]),
        grad_accum=int(s["grad_accum"]),
        mixed_precision=mixed,
        ckpt_every=int(s["ckpt_every"]),
        seed=seed,
    )


def fit_task(
    make_task: Callable[[DiffusionModel], Task],
    *,
    base_dir: str | Path,
    family: str,
    work_dir: str | Path,
    out_dir: str | Path,
    settings: dict[str, Any],
    seed: int,
    device: str,
    needs_reference: bool = False,
    init_adapter: str | None = None,
    progress: bool = True,
    stop_after: int | None = None,
    desc: str = "train",
    tracking: Tracking | None = None,
) -> FitResult | None:
    """Build the model (LoRA or full, from ``settings``), train the task ``make_task(model)`` returns with the shared
    loop, save the trained weights into ``out_dir`` and return what happened. ``work_dir`` holds the loop's
    checkpoint and log; a call on the same ``work_dir`` resumes. Returns None if ``stop_after`` ended the run early
    (its checkpoint is kept). A task may report its own accounting (``accounting()``: stage seconds, images, ...).
    ``tracking``: a TensorBoard / W&B tracker for the steps."""
    s = settings
    model = DiffusionModel(
        base_dir,
        family,
        device,
        lora_rank=s["lora_rank"],
        lora_alpha=s["lora_alpha"],
        lora_targets=s["lora_targets"],
        gradient_checkpointing=s["gradient_checkpointing"],
        needs_reference=needs_reference,
        init_adapter=init_adapter,
        seed=seed,
    )
    task = make_task(model)

    def export(loop: Any) -> list[str]:
        with loop.ema_weights():
            return model.save(out_dir) if loop.accelerator.is_main_process else []

    result, files = run_task(
        task,
        loop_spec(s, seed, device),
        Path(work_dir) / "state",
        device=device,
        progress=progress,
        stop_after=stop_after,
        desc=desc,
        export=export,
        tracking=tracking,
    )
    if files is None:
        return None
    accounting = task.accounting() if hasattr(task, "accounting") else {}
    return FitResult(Path(out_dir), files, result, 0.0, 0, 0, dict(s), accounting)


def fit(
    examples: Sequence[dict[str, Any]],
    loss_fn: Callable[[dict[str, Any], DiffusionModel], Any],
    *,
    base_dir: str | Path,
    family: str,
    results_root: str | Path,
    work_dir: str | Path,
    out_dir: str | Path,
    settings: dict[str, Any],
    seed: int,
    device: str,
    image_fields: Sequence[str] = ("image",),
    prompt_field: str = "prompt",
    number_fields: Sequence[str] = (),
    needs_reference: bool = False,
    init_adapter: str | None = None,
    progress: bool = True,
    stop_after: int | None = None,
    desc: str = "train",
    tracking: Tracking | None = None,
) -> FitResult | None:
    """Encode ``examples`` (cached), train ``loss_fn`` on them with the shared loop (``fit_task``), save the trained
    weights into ``out_dir`` and return what happened. Returns None if ``stop_after`` ended the run early.
    ``tracking``: a TensorBoard / W&B tracker for the steps (with the batch means of the examples' numbers)."""
    import torch

    if not examples:
        raise UserError("no training examples: the method kept nothing to train on (see its filter settings)")
    s = settings
    made: dict[str, Any] = {}

    def make_task(model: DiffusionModel) -> DiffusionTask:
        t0 = time.perf_counter()
        numbers = {f: torch.tensor([float(e[f]) for e in examples], dtype=torch.float32) for f in number_fields}
        empty = model.empty_condition()
        cache = EncodingCache(results_root, model)
        if s.get("cache_encodings", True):
            if s.get("latents", "encode") == "sampled":
                latents = {f: torch.stack(sampled_latents(results_root, examples, f)) for f in image_fields}
            else:
                latents = {f: torch.stack(cache.latents([e[f] for e in examples])) for f in image_fields}
            rows = cache.embeddings([e[prompt_field] for e in examples])
            cond = {k: torch.stack([r[k] for r in rows]) for k in rows[0]}
            model.release_encoders()
            data = Encoded(latents, cond, numbers, empty)
        else:  # every step encodes its examples (the VAE and text encoders stay on the device)
            data = Encoded(
                None,
                None,
                numbers,
                empty,
                paths={f: [e[f] for e in examples] for f in image_fields},
                prompts=[e[prompt_field] for e in examples],
            )
        made.update(encode_s=time.perf_counter() - t0, cache=cache)
        task = DiffusionTask(
            model,
            data,
            loss_fn,
            int(s["batch_size"]),
            seed,
            float(s["cond_dropout"]),
            float(s["snr_gamma"]),
            float(s.get("timestep_min", 0.0)),
        )
        if tracking is not None:
            task.log_columns = {k: np.asarray(v, dtype=np.float64) for k, v in batch_fields(list(examples)).items()}
        return task

    result = fit_task(
        make_task,
        base_dir=base_dir,
        family=family,
        work_dir=work_dir,
        out_dir=out_dir,
        settings=s,
        seed=seed,
        device=device,
        needs_reference=needs_reference,
        init_adapter=init_adapter,
        progress=progress,
        stop_after=stop_after,
        desc=desc,
        tracking=tracking,
    )
    if result is None:
        return None
    result.encode_s, result.cache_hits, result.cache_misses = made["encode_s"], made["cache"].hits, made["cache"].misses
    return result


def finish_checkpoint(work_dir: Path, out_tmp: Path, final: Path, info: dict[str, Any]) -> None:
    """Move a trained checkpoint into place: the log beside the weights, train_info.json, then one rename."""
    from craft_bench.store import atomic_write_json

    log = Path(work_dir) / "train_log.jsonl"
    if log.is_file():
        shutil.copyfile(log, out_tmp / "train_log.jsonl")
    logs = Path(work_dir) / "logs"  # a tracker's event files (method.report_to)
    if logs.is_dir():
        shutil.copytree(logs, out_tmp / "logs", dirs_exist_ok=True)
    atomic_write_json(out_tmp / "train_info.json", info)
    if final.exists():
        shutil.rmtree(final)
    os.replace(out_tmp, final)
    shutil.rmtree(work_dir, ignore_errors=True)
