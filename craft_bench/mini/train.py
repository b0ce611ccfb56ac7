"""Recipes that reproduce the mini world's shipped base model from a seed: ``train_vae`` and ``train_base``.

Both read top to bottom (model, optimiser, data, loop), draw every random number from ``(seed, step)``
so a run killed and resumed from its last checkpoint continues exactly as an uninterrupted run would,
write a checkpoint (safetensors) every ``ckpt_every`` steps under ``<out>/_train/``, and run unchanged
on CUDA where one is available (pass more steps there). Each returns a dict of stats: steps, wall_s, files.

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
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from craft_bench.errors import UserError
from craft_bench.generate import file_digest
from craft_bench.models import quiet_library_bars, resolve_device
from craft_bench.train.state import load_optimizer, optimizer_tensors

VAE_STEPS = 2800
BASE_STEPS = 6000
TRAIN_DIR = "_train"  # checkpoints and caches inside a recipe's output folder
STATE_FILE = "state.safetensors"
META_FILE = "state.json"


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


def _check_out(out_dir: Path, resume: bool) -> Path | None:
    """The checkpoint to resume from, or None; refuses to overwrite a run without --resume."""
    state = out_dir / TRAIN_DIR / STATE_FILE
    if state.is_file():
        if not resume:
            raise UserError(f"{out_dir} already holds a training run; pass --resume to continue it or choose another --out")
        return state
    return None


def _save_state(out_dir: Path, tensors: dict[str, Any], meta: dict[str, Any]) -> None:
    """Write the checkpoint atomically: a kill at any moment leaves the previous one readable."""
    from safetensors.torch import save_file

    d = out_dir / TRAIN_DIR
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / (STATE_FILE + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
    tmp_meta = d / (META_FILE + ".tmp")
    tmp_meta.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, d / STATE_FILE)
    os.replace(tmp_meta, d / META_FILE)


def _load_state(out_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    from safetensors.torch import load_file

    d = out_dir / TRAIN_DIR
    return load_file(str(d / STATE_FILE)), json.loads((d / META_FILE).read_text())


def _check_meta(meta: dict[str, Any], recipe: str, seed: int) -> None:
    if meta.get("recipe") != recipe or meta.get("seed") != seed:
        raise UserError(
            f"cannot resume: the checkpoint is recipe '{meta.get('recipe')}' seed {meta.get('seed')}, "
            f"not '{recipe}' seed {seed}"
        )


def _progress(total: int, initial: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, disable=not enabled, dynamic_ncols=True, unit="step")


def write_folder_hint(folder: Path) -> None:
    """``craft_bench.json``: `--model FOLDER` then samples with the mini preset's sampler, not SDXL's, and
    suites treat it as a mini-world model (mini prompts, mini detector)."""
    import dataclasses

    from craft_bench.mini.model import SAMPLER
    from craft_bench.models import FOLDER_HINT

    (Path(folder) / FOLDER_HINT).write_text(json.dumps({"world": "mini", "sampler": dataclasses.asdict(SAMPLER)}, indent=1) + "\n")


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


def _lr_at(step: int, base_lr: float, warmup: int, total: int | None = None, cooldown: float = 0.0) -> float:
    """Warmup-stable-decay: linear warmup, constant, then (``cooldown`` > 0) a linear decay to zero over
    the last ``cooldown`` fraction of ``total`` steps (Hu et al. 2024, MiniCPM; Hagele et al. 2024).

    Until the decay starts the rate does not depend on ``total``, so a checkpoint taken before that point
    resumes into a longer run (``--resume --steps M``) exactly as if the run had been started with ``M``."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    if total is None or cooldown <= 0:
        return base_lr
    start = _cooldown_start(total, cooldown)
    if step < start:
        return base_lr
    return base_lr * (total - step) / (total - start)


def _cooldown_start(total: int, cooldown: float) -> int:
    """First step of the linear decay of a ``total``-step run whose last ``cooldown`` fraction decays."""
    return total - max(1, round(cooldown * total))


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
) -> dict[str, Any]:
    """Train the mini AutoencoderKL; the folder ``out_dir`` receives it (diffusers save_pretrained layout)."""
    import torch

    from craft_bench.mini.model import build_vae
    from craft_bench.mini.scenes import random_scene, render_batch

    if steps < 1:
        raise UserError(f"--steps must be at least 1, got {steps}")
    out = Path(out_dir)
    device = resolve_device(device)
    ckpt = _check_out(out, resume)

    vae = build_vae(seed).to(device)
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    start, wall_before, last_loss = 0, 0.0, float("nan")
    if ckpt is not None:
        tensors, meta = _load_state(out)
        _check_meta(meta, "vae", seed)
        vae.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        load_optimizer(opt, tensors, meta["param_groups"], prefix="opt.")
        start, wall_before, last_loss = meta["step"], meta["wall_s"], meta.get("loss", last_loss)

    def scenes_for(step: int) -> np.ndarray:
        """Random ``crop``-px windows of fresh renders: the VAE is convolutional, and crops cost 1/4 of a
        full 64-px image while keeping the edges, corners and colours it must reproduce."""
        rng = np.random.default_rng(step_seed(seed, step, 0))
        images = render_batch([random_scene(rng) for _ in range(batch_size)])
        if crop >= images.shape[1]:
            return images
        xy = rng.integers(0, images.shape[1] - crop + 1, size=(batch_size, 2))
        return np.stack([im[y : y + crop, x : x + crop] for im, (x, y) in zip(images, xy)])

    def checkpoint(step: int) -> None:
        tensors, groups = optimizer_tensors(opt, prefix="opt.")
        tensors.update({f"model.{k}": v for k, v in vae.state_dict().items()})
        meta = dict(recipe="vae", seed=seed, step=step, steps=steps, loss=last_loss,
                    wall_s=wall_before + time.perf_counter() - t0, param_groups=groups)
        _save_state(out, tensors, meta)

    def freeze_encoder() -> None:
        for module in (vae.encoder, vae.quant_conv):
            module.requires_grad_(False)
        frozen = out / TRAIN_DIR / "frozen-encoder"
        if not (frozen / "config.json").is_file():  # what train_base needs: the encoder is final from here on
            _finish_vae(vae, frozen, seed, device)

    t0 = time.perf_counter()
    vae.train()
    bar = _progress(steps, start, "mini vae", progress)
    for step in range(start, steps):
        if step == max(start, freeze_encoder_at):
            freeze_encoder()
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, lr, 100, None)
        x = _to_pixels(scenes_for(step), device)
        gen = torch.Generator(device).manual_seed(step_seed(seed, step, 1))
        with torch.set_grad_enabled(step < freeze_encoder_at):
            posterior = vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=gen, device=device)
        rec = vae.decode(z).sample
        rec_loss = (rec - x).abs().mean() + ((rec - x) ** 2).mean()
        kl = posterior.kl().mean() / x[0].numel()
        loss = rec_loss + kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        last_loss = float(rec_loss.detach())
        bar.update(1)
        bar.set_postfix(loss=f"{last_loss:.4f}")
        if (step + 1) % ckpt_every == 0 and step + 1 < steps:
            checkpoint(step + 1)
    bar.close()
    checkpoint(steps)

    scaling, psnr = _finish_vae(vae, out, seed, device)
    wall = wall_before + time.perf_counter() - t0
    stats = dict(recipe="vae", seed=seed, steps=steps, wall_s=round(wall, 1), device=device, loss=last_loss,
                 psnr_db=round(psnr, 2), scaling_factor=round(scaling, 6), files=folder_files(out))
    (out / TRAIN_DIR / "stats.json").write_text(json.dumps(stats, indent=1))
    if log:
        log(f"vae: {steps} steps, {wall:.0f} s, PSNR {psnr:.2f} dB, scaling factor {scaling:.4f}")
    return stats


# --------------------------------------------------------------------------- base (UNet + text encoders)


def _base_data(out: Path, seed: int, n_pairs: int, vae: Any, tokenizers: tuple[Any, Any], device: str) -> dict[str, Any]:
    """Latent moments and token ids of ``n_pairs`` rendered training scenes, cached in ``out/_train``."""
    import torch
    from safetensors.torch import load_file, save_file

    from craft_bench.mini.prompts import training_pairs
    from craft_bench.mini.scenes import render_batch

    cache = out / TRAIN_DIR / f"data-{seed}-{n_pairs}.safetensors"
    if cache.is_file():
        return load_file(str(cache))
    pairs = training_pairs(n_pairs, seed)
    captions = [c for _, c in pairs]
    ids = [tok(captions + [""], padding="max_length", max_length=tok.model_max_length, truncation=True,
               return_tensors="pt").input_ids for tok in tokenizers]
    means, stds = [], []
    with torch.no_grad():
        for i in range(0, len(pairs), 256):
            x = _to_pixels(render_batch([s for s, _ in pairs[i : i + 256]]), device)
            post = vae.encode(x).latent_dist
            means.append(post.mean.cpu())
            stds.append(post.std.cpu())
    data = {"mean": torch.cat(means), "std": torch.cat(stds), "ids_1": ids[0][:-1], "ids_2": ids[1][:-1],
            "empty_1": ids[0][-1:], "empty_2": ids[1][-1:]}
    cache.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in data.items()}, str(cache) + ".tmp")
    os.replace(str(cache) + ".tmp", cache)
    return data


def default_vae_dir() -> Path:
    from craft_bench.mini.model import BASE_DIR

    return BASE_DIR / "vae"


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
    ckpt_every: int = 100,
    snapshot_every: int = 500,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train the mini UNet and text encoders; ``out_dir`` receives the whole pipeline (save_pretrained).

    The VAE comes from ``vae_dir`` (default: the shipped one). Every ``snapshot_every`` steps the EMA
    pipeline is also exported to ``out_dir/_train/snapshots/step-N`` so intermediate models can be evaluated.
    """
    import torch
    from diffusers import AutoencoderKL

    from craft_bench.mini.model import (
        assemble_pipeline,
        build_scheduler,
        build_text_encoders,
        build_unet,
        encode_prompts,
        time_ids,
    )
    from craft_bench.mini.tokenizer import build_tokenizers

    if steps < 1:
        raise UserError(f"--steps must be at least 1, got {steps}")
    quiet_library_bars()  # transformers' "Writing model shards" bar at each export would break ours
    out = Path(out_dir)
    device = resolve_device(device)
    ckpt = _check_out(out, resume)
    vae_path = Path(vae_dir) if vae_dir else default_vae_dir()
    if not (vae_path / "config.json").is_file():
        raise UserError(f"no trained VAE in {vae_path}; run `craft-bench mini train vae` first or pass its folder")

    vae = AutoencoderKL.from_pretrained(str(vae_path), torch_dtype=torch.float32).to(device).eval().requires_grad_(False)
    scaling = float(vae.config.scaling_factor)
    tokenizers = build_tokenizers(out / TRAIN_DIR / "tokenizer")
    data = {k: v.to(device) for k, v in _base_data(out, seed, n_pairs, vae, tokenizers, device).items()}
    n = data["mean"].shape[0]

    unet = build_unet(seed + 1).to(device)
    te1, te2 = build_text_encoders(seed + 2)
    te1, te2 = te1.to(device), te2.to(device)
    modules = {"unet": unet, "text_encoder": te1, "text_encoder_2": te2}
    params = [p for m in modules.values() for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), weight_decay=0.01)
    ema = [p.detach().clone() for p in params]
    alphas_cumprod = build_scheduler().alphas_cumprod.to(device)
    add_time_ids = time_ids(batch_size, device=device)

    start, wall_before, last_loss = 0, 0.0, float("nan")
    if ckpt is not None:
        tensors, meta = _load_state(out)
        _check_meta(meta, "base", seed)
        for name, m in modules.items():
            m.load_state_dict({k[len(name) + 1 :]: v for k, v in tensors.items() if k.startswith(name + ".")})
        for i, e in enumerate(ema):
            e.copy_(tensors[f"ema.{i}"])
        load_optimizer(opt, tensors, meta["param_groups"], prefix="opt.")
        start, wall_before, last_loss = meta["step"], meta["wall_s"], meta.get("loss", last_loss)
        old_total, old_cooldown = int(meta.get("steps", steps)), float(meta.get("cooldown", 0.0))
        if old_total != steps and old_cooldown > 0 and start > max(warmup, _cooldown_start(old_total, old_cooldown)):
            raise UserError(f"the checkpoint in {out} (step {start}) is already in the learning-rate cooldown of its "
                            f"--steps {old_total} run; resume with --steps {old_total}, or train a new run with --steps {steps}")

    def export(dest: Path) -> None:
        """The EMA weights as a StableDiffusionXLPipeline folder (fp16 safetensors), written atomically."""
        live = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p, e in zip(params, ema):
                p.copy_(e)
        tmp = dest.parent / (dest.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        assemble_pipeline(vae, unet, te1, te2, *tokenizers).save_pretrained(str(tmp), safe_serialization=True)
        with torch.no_grad():
            for p, v in zip(params, live):
                p.copy_(v)
        to_fp16_files(tmp)
        write_folder_hint(tmp)
        _replace_dir(tmp, dest)

    def checkpoint(step: int) -> None:
        tensors, groups = optimizer_tensors(opt, prefix="opt.")
        for name, m in modules.items():
            tensors.update({f"{name}.{k}": v for k, v in m.state_dict().items()})
        tensors.update({f"ema.{i}": e for i, e in enumerate(ema)})
        meta = dict(recipe="base", seed=seed, step=step, steps=steps, cooldown=cooldown, loss=last_loss,
                    wall_s=wall_before + time.perf_counter() - t0, param_groups=groups)
        _save_state(out, tensors, meta)
        if snapshot_every and step % snapshot_every == 0:
            export(out / TRAIN_DIR / "snapshots" / f"step-{step:06d}")

    t0 = time.perf_counter()
    for m in modules.values():
        m.train()
    loss_avg = None
    bar = _progress(steps, start, "mini base", progress)
    for step in range(start, steps):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, lr, warmup, steps, cooldown)
        gen = torch.Generator(device).manual_seed(step_seed(seed, step, 1))
        idx = torch.randint(0, n, (batch_size,), generator=gen, device=device)
        latents = (data["mean"][idx] + data["std"][idx] * torch.randn(data["mean"][idx].shape, generator=gen, device=device)) * scaling
        u = torch.rand(batch_size, generator=gen, device=device)
        empty = ((u >= drop_prob / 2) & (u < drop_prob))[:, None]
        keep = (u >= drop_prob / 2).float()
        ids_1 = torch.where(empty, data["empty_1"], data["ids_1"][idx])
        ids_2 = torch.where(empty, data["empty_2"], data["ids_2"][idx])
        embeds, pooled = encode_prompts(te1, te2, ids_1, ids_2)
        embeds, pooled = embeds * keep[:, None, None], pooled * keep[:, None]

        t = torch.randint(0, alphas_cumprod.shape[0], (batch_size,), generator=gen, device=device)
        noise = torch.randn(latents.shape, generator=gen, device=device)
        ac = alphas_cumprod[t][:, None, None, None]
        noisy = ac.sqrt() * latents + (1 - ac).sqrt() * noise
        pred = unet(noisy, t, encoder_hidden_states=embeds,
                    added_cond_kwargs={"text_embeds": pooled, "time_ids": add_time_ids}).sample
        snr = alphas_cumprod[t] / (1 - alphas_cumprod[t])
        weight = torch.clamp(snr, max=snr_gamma) / snr
        loss = (weight * ((pred - noise) ** 2).mean(dim=(1, 2, 3))).mean()

        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(ema, [p.detach() for p in params], 1 - decay)
        last_loss = float(loss.detach())
        loss_avg = last_loss if loss_avg is None else 0.98 * loss_avg + 0.02 * last_loss
        bar.update(1)
        bar.set_postfix(loss=f"{loss_avg:.4f}")
        if (step + 1) % ckpt_every == 0 and step + 1 < steps:
            checkpoint(step + 1)
    bar.close()
    checkpoint(steps)
    export(out / TRAIN_DIR / "final")
    for item in (out / TRAIN_DIR / "final").iterdir():
        target = out / item.name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(item, target)
    shutil.rmtree(out / TRAIN_DIR / "final", ignore_errors=True)
    wall = wall_before + time.perf_counter() - t0
    stats = dict(recipe="base", seed=seed, steps=steps, wall_s=round(wall, 1), device=device, loss=last_loss,
                 vae=str(vae_path), n_pairs=n_pairs, files=folder_files(out))
    (out / TRAIN_DIR / "stats.json").write_text(json.dumps(stats, indent=1))
    if log:
        log(f"base: {steps} steps, {wall:.0f} s, final loss {last_loss:.4f}")
    return stats
