"""Recipes that reproduce the mini world's shipped base model from a seed: ``train_vae`` and ``train_base``.

Each is a ``Task`` of the shared training loop (``craft_bench.train.loop``: optimiser, learning-rate schedule,
EMA, checkpoints and resume are the loop's), draws every random number from ``(seed, step)`` so a run killed
and resumed from its last checkpoint continues exactly as an uninterrupted run would, checkpoints (safetensors)
every ``ckpt_every`` steps under ``<out>/_train/state/``, and runs unchanged on CUDA where one is available (pass
more steps there). Each returns a dict of stats: steps, wall_s, files.

- VAE: AutoencoderKL on 32-px crops of freshly rendered random scenes, L1 + MSE reconstruction with a small KL term,
  AdamW with warmup then a constant rate (so the checkpoint at step N is exactly the run with
  ``--steps N``); the latent scaling factor is set to 1 / std of the trained latents.
- Base: the UNet and both text encoders from scratch on rendered scenes with paraphrased captions, in the
  frozen VAE's latent space (latents and token ids cached once). Epsilon loss weighted by min-SNR-5
  (Hang et al. 2023: w = min(SNR, 5) / SNR), AdamW with linear warmup, an EMA of the weights (what is
  saved), and 10% dropped conditioning for classifier-free guidance: half of it zeroed embeddings (what
  the pipeline uses for an empty negative prompt, ``force_zeros_for_empty_prompt``), half the empty caption.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np

from craft_bench.errors import UserError
from craft_bench.models import quiet_library_bars, resolve_device
from craft_bench.store import file_digest
from craft_bench.train.diffusion import forward_noise, min_snr_weights, per_example_error
from craft_bench.train.loop import Loop, LoopSpec, Schedule, Task

VAE_STEPS = 2800
BASE_STEPS = 6000
TRAIN_DIR = "_train"  # checkpoints and caches inside a recipe's output folder
STATE_DIR = "state"  # the loop's checkpoint folder inside TRAIN_DIR


# --------------------------------------------------------------------------- shared plumbing


def step_seed(seed: int, step: int, stream: int = 0) -> int:
    """The one derivation of per-step randomness: data, noise and dropout of step ``step`` of run ``seed``."""
    h = hashlib.sha256(f"craft-bench-mini:{seed}:{step}:{stream}".encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


def folder_files(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of the files a recipe ships (its ``_train`` folder excluded)."""
    return {
        str(p.relative_to(folder)): file_digest(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and TRAIN_DIR not in p.relative_to(folder).parts
    }


def _check_out(out_dir: Path, resume: bool) -> None:
    """Refuse to overwrite a run without --resume (with it, the loop continues from the checkpoint)."""
    if (out_dir / TRAIN_DIR / STATE_DIR / "state.json").is_file() and not resume:
        raise UserError(f"{out_dir} already holds a training run; pass --resume to continue it or choose another --out")


def write_folder_hint(folder: Path) -> None:
    """``craft_bench.json``: `--model FOLDER` then samples with the mini preset's sampler, not SDXL's, and
    suites treat it as a mini-world model (mini prompts, mini detector)."""
    import dataclasses

    from craft_bench.mini.model import SAMPLER
    from craft_bench.models import FOLDER_HINT

    (Path(folder) / FOLDER_HINT).write_text(
        json.dumps({"world": "mini", "sampler": dataclasses.asdict(SAMPLER)}, indent=1) + "\n"
    )


def to_fp16_files(folder: Path) -> None:
    """Rewrite every float32 safetensors file under ``folder`` as float16 (shipped weights; loaders upcast)."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    for path in sorted(Path(folder).rglob("*.safetensors")):
        if TRAIN_DIR in path.relative_to(folder).parts:
            continue
        with safe_open(str(path), "pt") as fh:
            metadata = fh.metadata()
        tensors = {k: v.to(torch.float16) if v.dtype == torch.float32 else v for k, v in load_file(str(path)).items()}
        save_file(tensors, str(path), metadata=metadata)


def _replace_dir(src: Path, dest: Path) -> None:
    """Move folder ``src`` to ``dest``, replacing it; ``dest`` is at all times either old or new."""
    old = dest.parent / (dest.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        os.replace(dest, old)
    os.replace(src, dest)
    shutil.rmtree(old, ignore_errors=True)


def _to_pixels(images: np.ndarray, device: str) -> Any:
    """uint8 (N,H,W,3) -> float (N,3,H,W) in [-1, 1], the range diffusers VAEs work in."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    return (x / 127.5 - 1.0).to(device)


def min_snr_loss(pred: Any, noise: Any, alphas_cumprod: Any, t: Any, gamma: float) -> Any:
    """The mini recipes' loss: the trainer's per-example epsilon error weighted by its min-SNR-gamma weights,
    batch mean (the math is craft_bench.train.diffusion's)."""
    return (min_snr_weights(alphas_cumprod, t, gamma) * per_example_error(pred, noise)).mean()


# --------------------------------------------------------------------------- VAE


def _finish_vae(vae: Any, dest: Path, seed: int, device: str) -> tuple[float, float]:
    """Set the latent scaling factor (1 / std of encoder means on held-out scenes), measure PSNR, save fp16."""
    import torch

    from craft_bench.mini.scenes import random_scene, render_batch

    was_training = vae.training
    vae.eval()
    rng = np.random.default_rng(step_seed(seed, -1, 0))
    val = _to_pixels(render_batch([random_scene(rng) for _ in range(256)]), device)
    with torch.no_grad():
        mu = torch.cat([vae.encode(val[i : i + 64]).latent_dist.mean for i in range(0, len(val), 64)])
        scaling = float(1.0 / mu.std())
        rec = torch.cat([vae.decode(mu[i : i + 64]).sample for i in range(0, len(mu), 64)]).clamp(-1, 1)
        mse = float((((rec - val) / 2) ** 2).mean())
    psnr = 10 * math.log10(1.0 / max(mse, 1e-12))
    vae.register_to_config(scaling_factor=round(scaling, 6))
    dest.mkdir(parents=True, exist_ok=True)
    vae.save_pretrained(str(dest), safe_serialization=True)
    to_fp16_files(dest)
    vae.train(was_training)
    return scaling, psnr


class _VaeTask(Task):
    """The mini AutoencoderKL on random crops of fresh renders: L1 + MSE reconstruction plus a small KL term; the
    encoder is frozen from ``freeze_at`` on (and exported then: train_base needs only a final encoder)."""

    name = "mini-vae"
    shardable = False

    def __init__(
        self, vae: Any, out: Path, seed: int, batch_size: int, crop: int, freeze_at: int, kl_weight: float, device: str
    ) -> None:
        self.vae, self.out, self.seed, self.device = vae, out, seed, device
        self.batch_size, self.crop, self.freeze_at, self.kl_weight = batch_size, crop, freeze_at, kl_weight
        self.frozen = False

    def modules(self) -> dict[str, Any]:
        return {"model": self.vae}

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": list(self.vae.parameters()), "weight_decay": 0.0}]

    def before_step(self, step: int) -> None:
        if step >= self.freeze_at and not self.frozen:
            for module in (self.vae.encoder, self.vae.quant_conv):
                module.requires_grad_(False)
            frozen = self.out / TRAIN_DIR / "frozen-encoder"
            if not (frozen / "config.json").is_file():  # what train_base needs: the encoder is final from here on
                _finish_vae(self.vae, frozen, self.seed, self.device)
            self.frozen = True

    def batch(self, step: int) -> Any:
        """Random ``crop``-px windows of fresh renders: the VAE is convolutional, and crops cost 1/4 of a
        full 64-px image while keeping the edges, corners and colours it must reproduce."""
        from craft_bench.mini.scenes import random_scene, render_batch

        rng = np.random.default_rng(step_seed(self.seed, step, 0))
        images = render_batch([random_scene(rng) for _ in range(self.batch_size)])
        if self.crop < images.shape[1]:
            xy = rng.integers(0, images.shape[1] - self.crop + 1, size=(self.batch_size, 2))
            images = np.stack([im[y : y + self.crop, x : x + self.crop] for im, (x, y) in zip(images, xy)])
        return _to_pixels(images, self.device)

    def loss(self, x: Any, step: int) -> tuple[Any, dict[str, float]]:
        import torch

        gen = torch.Generator(self.device).manual_seed(step_seed(self.seed, step, 1))
        with torch.set_grad_enabled(step < self.freeze_at):
            posterior = self.vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=gen, device=self.device)
        rec = self.vae.decode(z).sample
        rec_loss = (rec - x).abs().mean() + ((rec - x) ** 2).mean()
        kl = posterior.kl().mean() / x[0].numel()
        return rec_loss + self.kl_weight * kl, {"rec": float(rec_loss.detach())}


def train_vae(
    out_dir: str | Path,
    seed: int = 0,
    steps: int = VAE_STEPS,
    device: str | None = None,
    resume: bool = False,
    *,
    batch_size: int = 16,
    crop: int = 32,
    freeze_encoder_at: int = 600,
    lr: float = 1e-3,
    kl_weight: float = 1e-6,
    ckpt_every: int = 100,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Train the mini AutoencoderKL; the folder ``out_dir`` receives it (diffusers save_pretrained layout).
    AdamW (weight decay 0), linear warmup over 100 steps then a constant rate (so the checkpoint at step N is
    exactly the run with ``--steps N``), gradient norm clipped at 1."""
    from craft_bench.mini.model import build_vae

    if steps < 1:
        raise UserError(f"--steps must be at least 1, got {steps}")
    out = Path(out_dir)
    device = resolve_device(device)
    _check_out(out, resume)
    vae = build_vae(seed).to(device)
    vae.train()
    task = _VaeTask(vae, out, seed, batch_size, crop, freeze_encoder_at, kl_weight, device)
    spec = LoopSpec(
        steps=steps,
        lr=lr,
        schedule=Schedule("constant", warmup=100, warmup_style="replace"),
        weight_decay=0.0,
        max_grad_norm=1.0,
        ckpt_every=ckpt_every,
        seed=seed,
    )
    result = Loop(task, spec, out / TRAIN_DIR / STATE_DIR, device=device, progress=progress, desc="mini vae").run(
        stop_after
    )
    if result.steps < steps:
        return {"recipe": "vae", "steps": result.steps, "wall_s": round(result.wall_s, 1), "stopped": True}
    scaling, psnr = _finish_vae(vae, out, seed, device)
    stats = dict(
        recipe="vae",
        seed=seed,
        steps=steps,
        wall_s=round(result.wall_s, 1),
        device=device,
        loss=result.last_logs.get("rec"),
        psnr_db=round(psnr, 2),
        scaling_factor=round(scaling, 6),
        files=folder_files(out),
    )
    (out / TRAIN_DIR / "stats.json").write_text(json.dumps(stats, indent=1))
    if log:
        log(f"vae: {steps} steps, {result.wall_s:.0f} s, PSNR {psnr:.2f} dB, scaling factor {scaling:.4f}")
    return stats


# --------------------------------------------------------------------------- base (UNet + text encoders)


def _base_data(
    out: Path, seed: int, n_pairs: int, vae: Any, tokenizers: tuple[Any, Any], device: str, caption_noise: float = 0.0
) -> dict[str, Any]:
    """Latent moments and token ids of ``n_pairs`` rendered training scenes, cached in ``out/_train``."""
    import torch
    from safetensors.torch import load_file, save_file

    from craft_bench.mini.prompts import training_pairs
    from craft_bench.mini.scenes import render_batch

    noise = f"-noise{caption_noise:g}" if caption_noise else ""
    cache = out / TRAIN_DIR / f"data-{seed}-{n_pairs}{noise}.safetensors"
    if cache.is_file():
        return load_file(str(cache))
    pairs = training_pairs(n_pairs, seed, caption_noise=caption_noise)
    captions = [c for _, c in pairs]
    ids = [
        tok(
            captions + [""], padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt"
        ).input_ids
        for tok in tokenizers
    ]
    means, stds = [], []
    with torch.no_grad():
        for i in range(0, len(pairs), 256):
            x = _to_pixels(render_batch([s for s, _ in pairs[i : i + 256]]), device)
            post = vae.encode(x).latent_dist
            means.append(post.mean.cpu())
            stds.append(post.std.cpu())
    data = {
        "mean": torch.cat(means),
        "std": torch.cat(stds),
        "ids_1": ids[0][:-1],
        "ids_2": ids[1][:-1],
        "empty_1": ids[0][-1:],
        "empty_2": ids[1][-1:],
    }
    cache.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in data.items()}, str(cache) + ".tmp")
    os.replace(str(cache) + ".tmp", cache)
    return data


def default_vae_dir() -> Path:
    from craft_bench.mini.model import BASE_DIR

    return BASE_DIR / "vae"


class _BaseTask(Task):
    """The mini UNet and both text encoders from scratch on cached latents of rendered scenes: epsilon loss with
    min-SNR weighting, 10% dropped conditioning (half zeroed embeddings, half the empty caption)."""

    name = "mini-base"
    shardable = False

    def __init__(
        self,
        modules: dict[str, Any],
        data: dict[str, Any],
        scaling: float,
        seed: int,
        batch_size: int,
        drop_prob: float,
        snr_gamma: float,
        device: str,
        export: Callable[[Path, Any], None],
        snapshot_every: int,
        out: Path,
    ) -> None:
        from craft_bench.mini.model import build_scheduler, time_ids

        self._modules, self.data, self.scaling, self.seed = modules, data, scaling, seed
        self.batch_size, self.drop_prob, self.snr_gamma, self.device = batch_size, drop_prob, snr_gamma, device
        self.alphas_cumprod = build_scheduler().alphas_cumprod.to(device)
        self.add_time_ids = time_ids(batch_size, device=device)
        self.export, self.snapshot_every, self.out = export, snapshot_every, out
        self.n = data["mean"].shape[0]

    def modules(self) -> dict[str, Any]:
        return self._modules

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": [p for m in self._modules.values() for p in m.parameters()], "weight_decay": 0.01}]

    def batch(self, step: int) -> dict[str, Any]:
        import torch

        d, b, dev = self.data, self.batch_size, self.device
        gen = torch.Generator(dev).manual_seed(step_seed(self.seed, step, 1))
        idx = torch.randint(0, self.n, (b,), generator=gen, device=dev)
        latents = (
            d["mean"][idx] + d["std"][idx] * torch.randn(d["mean"][idx].shape, generator=gen, device=dev)
        ) * self.scaling
        u = torch.rand(b, generator=gen, device=dev)
        empty = ((u >= self.drop_prob / 2) & (u < self.drop_prob))[:, None]
        keep = (u >= self.drop_prob / 2).float()
        ids_1 = torch.where(empty, d["empty_1"], d["ids_1"][idx])
        ids_2 = torch.where(empty, d["empty_2"], d["ids_2"][idx])
        t = torch.randint(0, self.alphas_cumprod.shape[0], (b,), generator=gen, device=dev)
        noise = torch.randn(latents.shape, generator=gen, device=dev)
        return {"latents": latents, "ids_1": ids_1, "ids_2": ids_2, "keep": keep, "t": t, "noise": noise, "idx": idx}

    def loss(self, b: dict[str, Any], step: int) -> tuple[Any, dict[str, float]]:
        from craft_bench.mini.model import encode_prompts

        m = self.prepared
        embeds, pooled = encode_prompts(m["text_encoder"], m["text_encoder_2"], b["ids_1"], b["ids_2"])
        embeds, pooled = embeds * b["keep"][:, None, None], pooled * b["keep"][:, None]
        noisy = forward_noise(b["latents"], b["noise"], self.alphas_cumprod, b["t"])
        pred = m["unet"](
            noisy,
            b["t"],
            encoder_hidden_states=embeds,
            added_cond_kwargs={"text_embeds": pooled, "time_ids": self.add_time_ids},
        ).sample
        return min_snr_loss(pred, b["noise"], self.alphas_cumprod, b["t"], self.snr_gamma), {}

    def on_checkpoint(self, step: int, loop: Loop) -> None:
        if self.snapshot_every and step % self.snapshot_every == 0:
            self.export(self.out / TRAIN_DIR / "snapshots" / f"step-{step:06d}", loop)


def train_base(
    out_dir: str | Path,
    seed: int = 0,
    steps: int = BASE_STEPS,
    device: str | None = None,
    resume: bool = False,
    *,
    vae_dir: str | Path | None = None,
    batch_size: int = 32,
    lr: float = 6e-4,
    warmup: int = 200,
    ema_decay: float = 0.999,
    cooldown: float = 0.2,
    snr_gamma: float = 5.0,
    drop_prob: float = 0.1,
    n_pairs: int = 10000,
    caption_noise: float = 0.0,
    ckpt_every: int = 100,
    snapshot_every: int = 500,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Train the mini UNet and text encoders (``caption_noise``: share of wrongly captioned task pairs, for
    experiments; the shipped base has none); ``out_dir`` receives the whole pipeline (save_pretrained).

    AdamW (betas 0.9/0.999, weight decay 0.01), warmup-stable-decay learning rate (linear cooldown over the last
    ``cooldown`` share of the steps), gradient norm clipped at 1, EMA of the weights (what is exported). The VAE
    comes from ``vae_dir`` (default: the shipped one). Every ``snapshot_every`` steps the EMA pipeline is also
    exported to ``out_dir/_train/snapshots/step-N`` so intermediate models can be evaluated.
    """
    import torch
    from diffusers import AutoencoderKL

    from craft_bench.mini.model import assemble_pipeline, build_text_encoders, build_unet
    from craft_bench.mini.tokenizer import build_tokenizers

    if steps < 1:
        raise UserError(f"--steps must be at least 1, got {steps}")
    quiet_library_bars()  # transformers' "Writing model shards" bar at each export would break ours
    out = Path(out_dir)
    device = resolve_device(device)
    _check_out(out, resume)
    vae_path = Path(vae_dir) if vae_dir else default_vae_dir()
    if not (vae_path / "config.json").is_file():
        raise UserError(f"no trained VAE in {vae_path}; run `craft-bench mini train vae` first or pass its folder")

    vae = (
        AutoencoderKL.from_pretrained(str(vae_path), torch_dtype=torch.float32).to(device).eval().requires_grad_(False)
    )
    scaling = float(vae.config.scaling_factor)
    tokenizers = build_tokenizers(out / TRAIN_DIR / "tokenizer")
    data = {k: v.to(device) for k, v in _base_data(out, seed, n_pairs, vae, tokenizers, device, caption_noise).items()}
    unet = build_unet(seed + 1).to(device)
    te1, te2 = build_text_encoders(seed + 2)
    modules = {"unet": unet, "text_encoder": te1.to(device), "text_encoder_2": te2.to(device)}
    for m in modules.values():
        m.train()

    def export(dest: Path, loop: Loop) -> None:
        """The EMA weights as a StableDiffusionXLPipeline folder (fp16 safetensors), written atomically."""
        tmp = dest.parent / (dest.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        with loop.ema_weights():
            assemble_pipeline(
                vae, unet, modules["text_encoder"], modules["text_encoder_2"], *tokenizers
            ).save_pretrained(str(tmp), safe_serialization=True)
        to_fp16_files(tmp)
        write_folder_hint(tmp)
        _replace_dir(tmp, dest)

    task = _BaseTask(
        modules, data, scaling, seed, batch_size, drop_prob, snr_gamma, device, export, snapshot_every, out
    )
    spec = LoopSpec(
        steps=steps,
        lr=lr,
        schedule=Schedule("wsd", warmup=warmup, cooldown=cooldown, warmup_style="replace"),
        betas=(0.9, 0.999),
        weight_decay=0.01,
        max_grad_norm=1.0,
        ema_decay=ema_decay,
        ckpt_every=ckpt_every,
        seed=seed,
    )
    loop = Loop(task, spec, out / TRAIN_DIR / STATE_DIR, device=device, progress=progress, desc="mini base")
    result = loop.run(stop_after)
    if result.steps < steps:
        return {"recipe": "base", "steps": result.steps, "wall_s": round(result.wall_s, 1), "stopped": True}
    export(out / TRAIN_DIR / "final", loop)
    for item in (out / TRAIN_DIR / "final").iterdir():
        target = out / item.name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(item, target)
    shutil.rmtree(out / TRAIN_DIR / "final", ignore_errors=True)
    stats = dict(
        recipe="base",
        seed=seed,
        steps=steps,
        wall_s=round(result.wall_s, 1),
        device=device,
        loss=result.last_logs.get("loss"),
        vae=str(vae_path),
        n_pairs=n_pairs,
        caption_noise=caption_noise,
        files=folder_files(out),
    )
    (out / TRAIN_DIR / "stats.json").write_text(json.dumps(stats, indent=1))
    if log:
        log(f"base: {steps} steps, {result.wall_s:.0f} s, final loss {stats['loss']:.4f}")
    return stats
