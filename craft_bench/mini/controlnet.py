"""The mini world's ControlNets: their conditions, the depth estimator for generated images, and their recipes.

Conditions of a scene (``condition``):

- ``canny``: kornia's Canny edges (``craft_bench.controls.canny``, thresholds 0.1 / 0.2) of the scene's render,
  the same function the ControlNet suites apply to generated images;
- ``depth``: a depth-like map the renderer paints from the scene's layers (``depth_map``). Mini scenes never
  overlap, so the one depth cue a generated image can show is apparent size: each object is painted, in layer
  order, with its nearness (0.25 for the smallest size the world draws, 1 for the largest; background 0), a
  disparity-like map where brighter is nearer, as MiDaS/DPT maps are. Size is measured as a viewer can: the
  larger side of the object's rasterised mask.

``MiniDepthEstimator`` re-estimates that map on a generated image: the ``mini`` detector's objects (confidence
at least 0.3) painted with the nearness of their masks' extent. On renders it reproduces ``depth_map`` (tested).

Recipes (``train_controlnet``; ``craft-bench mini train controlnet-canny|controlnet-depth``): a diffusers
``ControlNetModel.from_unet`` copy of the shipped mini UNet's encoder (2.2M parameters; its conditioning
embedding downsamples 4x, the mini VAE's factor), trained on the shared loop (``craft_bench.train.loop``) as a
``Task`` with the base UNet, VAE and text encoders frozen: the base recipe's training scenes and captions
(latents and token ids cached once), the condition of each scene, epsilon loss with min-SNR-5 weighting, and
half of the captions dropped (ControlNet, Zhang et al. 2023, replaces 50% of prompts with empty ones so the
network learns to read the condition). Data and noise of step s depend only on (seed, s), so a resumed run
continues exactly.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from craft_bench.errors import UserError
from craft_bench.mini.scenes import CANVAS, MAX_SIZE, MIN_SIZE, Scene, render
from craft_bench.models import quiet_library_bars, resolve_device
from craft_bench.train.loop import Loop, LoopSpec, Schedule

KINDS = ("canny", "depth")
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
CONTROLNET_STEPS = 2000
DEPTH_MIN_SCORE = 0.3  # the detector's "doubtful or better"; blobs and artefacts score below
NEAR_FLOOR = 0.25  # nearness of the smallest object size (MIN_SIZE); the largest (MAX_SIZE) is 1
CONDITIONING_CHANNELS = (16, 32, 64)  # two stride-2 stages: 64-px condition -> 16-px latent grid


def weights_dir(kind: str) -> Path:
    """The shipped ControlNet of ``kind`` (a diffusers ``ControlNetModel.save_pretrained`` folder)."""
    check_kind(kind)
    return WEIGHTS_DIR / f"controlnet-{kind}"


def shipped(kind: str) -> Path:
    """The shipped ControlNet of ``kind`` (the mini world's ``controlnet=auto``), or a one-line UserError saying how
    to get it back."""
    folder = weights_dir(kind)
    if not (folder / "config.json").is_file():
        raise UserError(
            f"the mini ControlNet is missing from {folder}; reinstall craft-bench or train it with "
            f"`craft-bench mini train controlnet-{kind}` (docs/mini.md)"
        )
    return folder


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise UserError(f"unknown control '{kind}' (known: {', '.join(KINDS)})")


def nearness(size: float) -> float:
    """Disparity-like value of an object of ``size`` canvas pixels: NEAR_FLOOR at MIN_SIZE .. 1 at MAX_SIZE."""
    t = min(max((size - MIN_SIZE) / (MAX_SIZE - MIN_SIZE), 0.0), 1.0)
    return NEAR_FLOOR + (1.0 - NEAR_FLOOR) * t


def extent(mask: np.ndarray) -> float:
    """The larger side of a mask's bounding box, in pixels (how big an object looks; 0 for an empty mask)."""
    ys, xs = np.nonzero(mask)
    return float(max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1)) if len(ys) else 0.0


def depth_map(scene: Scene, size: int = CANVAS) -> np.ndarray:
    """The scene's depth-like map, float32 (size, size): background 0, each object the nearness of its rasterised
    extent (what the estimator can see), painted in layer order."""
    from craft_bench.mini.scenes import render_layers

    scale = size / CANVAS
    sizes = [extent(render_layers(Scene((o,)), [1.0], size) > 0) / scale for o in scene.objects]
    return render_layers(scene, [nearness(s) for s in sizes], size)


def condition(scene: Scene, kind: str, size: int = CANVAS) -> np.ndarray:
    """The (size, size) uint8 condition map of a scene for a ControlNet of ``kind``."""
    check_kind(kind)
    if kind == "canny":
        from craft_bench.controls import canny

        return canny([render(scene, size)])[0]
    from craft_bench.controls import depth_to_uint8

    return depth_to_uint8(depth_map(scene, size))


def conditions(scenes: Sequence[Scene], kind: str, size: int = CANVAS, chunk: int = 512) -> np.ndarray:
    """(N, size, size) uint8 conditions of many scenes (canny in batches)."""
    check_kind(kind)
    if kind == "depth":
        return np.stack([condition(s, kind, size) for s in scenes]) if scenes else np.zeros((0, size, size), np.uint8)
    from craft_bench.controls import canny
    from craft_bench.mini.scenes import render_batch

    parts = [canny(list(render_batch(scenes[i : i + chunk], size))) for i in range(0, len(scenes), chunk)]
    return np.concatenate(parts) if parts else np.zeros((0, size, size), np.uint8)


class MiniDepthEstimator:
    """Depth-like maps of generated mini images: the detector's objects painted with their nearness."""

    name = "mini"

    def __init__(self, min_score: float = DEPTH_MIN_SCORE) -> None:
        from craft_bench.mini.detector import MiniDetector

        self.detector = MiniDetector()
        self.min_score = min_score

    @classmethod
    def load(cls, source: str | None = None, device: str = "cpu") -> "MiniDepthEstimator":
        return cls()

    def estimate(self, images: Sequence[Any]) -> list[np.ndarray]:
        from craft_bench.controls import as_rgb_array

        out = []
        for image in images:
            arr = as_rgb_array(image)
            scale = arr.shape[0] / CANVAS
            depth = np.zeros(arr.shape[:2], np.float32)
            for det in self.detector.detect_array(arr):
                if det.score < self.min_score:
                    continue
                depth[det.mask] = nearness(extent(det.mask) / scale)
            out.append(depth)
        return out


# --------------------------------------------------------------------------- the recipe


def build_controlnet(unet: Any) -> Any:
    """A ControlNet initialised from ``unet``'s encoder (diffusers' recipe), with a 4x conditioning embedding."""
    from diffusers import ControlNetModel

    return ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=CONDITIONING_CHANNELS)


def _task_class() -> type:
    from craft_bench.mini.train import _BaseTask, min_snr_loss
    from craft_bench.train.diffusion import forward_noise

    class ControlNetTask(_BaseTask):
        """The base recipe's batches plus each scene's condition; only the ControlNet trains."""

        shardable = False

        def __init__(
            self,
            kind: str,
            controlnet: Any,
            frozen: dict[str, Any],
            control: Any,
            data: dict[str, Any],
            scaling: float,
            seed: int,
            batch_size: int,
            drop_prob: float,
            snr_gamma: float,
            device: str,
        ) -> None:
            super().__init__(
                {"controlnet": controlnet},
                data,
                scaling,
                seed,
                batch_size,
                drop_prob,
                snr_gamma,
                device,
                export=lambda *_: None,
                snapshot_every=0,
                out=Path("."),
            )
            self.name = f"mini-controlnet-{kind}"
            self.frozen, self.control = frozen, control

        def batch(self, step: int) -> dict[str, Any]:
            b = super().batch(step)
            b["control"] = self.control[b["idx"]].float().div(255.0)[:, None].expand(-1, 3, -1, -1)
            return b

        def loss(self, b: dict[str, Any], step: int) -> tuple[Any, dict[str, float]]:
            import torch

            from craft_bench.mini.model import encode_prompts

            f = self.frozen
            with torch.no_grad():
                embeds, pooled = encode_prompts(f["text_encoder"], f["text_encoder_2"], b["ids_1"], b["ids_2"])
            embeds, pooled = embeds * b["keep"][:, None, None], pooled * b["keep"][:, None]
            added = {"text_embeds": pooled, "time_ids": self.add_time_ids}
            noisy = forward_noise(b["latents"], b["noise"], self.alphas_cumprod, b["t"])
            down, mid = self.prepared["controlnet"](
                noisy,
                b["t"],
                encoder_hidden_states=embeds,
                controlnet_cond=b["control"],
                added_cond_kwargs=added,
                return_dict=False,
            )
            pred = f["unet"](
                noisy,
                b["t"],
                encoder_hidden_states=embeds,
                added_cond_kwargs=added,
                down_block_additional_residuals=down,
                mid_block_additional_residual=mid,
            ).sample
            return min_snr_loss(pred, b["noise"], self.alphas_cumprod, b["t"], self.snr_gamma), {}

    return ControlNetTask


def _control_data(out: Path, kind: str, seed: int, n_pairs: int) -> np.ndarray:
    """The conditions of the base recipe's ``n_pairs`` training scenes (seed ``seed``), cached in ``out/_train``."""
    from craft_bench.mini.prompts import training_pairs
    from craft_bench.mini.train import TRAIN_DIR

    cache = out / TRAIN_DIR / f"control-{kind}-{seed}-{n_pairs}.npy"
    if cache.is_file():
        return np.load(cache)
    maps = conditions([s for s, _ in training_pairs(n_pairs, seed)], kind)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npy")
    np.save(tmp, maps)
    tmp.replace(cache)
    return maps


def train_controlnet(
    kind: str,
    out_dir: str | Path,
    seed: int = 0,
    steps: int = CONTROLNET_STEPS,
    device: str | None = None,
    resume: bool = False,
    *,
    base_dir: str | Path | None = None,
    batch_size: int = 32,
    lr: float = 3e-4,
    warmup: int = 100,
    cooldown: float = 0.2,
    ema_decay: float = 0.99,
    snr_gamma: float = 5.0,
    drop_prob: float = 0.5,
    n_pairs: int = 8000,
    ckpt_every: int = 100,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Train the mini ControlNet of ``kind`` on the base model in ``base_dir`` (default: the shipped one); the
    folder ``out_dir`` receives it (``ControlNetModel.save_pretrained``, fp16 safetensors).

    AdamW (weight decay 0.01), warmup-stable-decay learning rate (linear cooldown over the last ``cooldown`` share),
    gradient norm clipped at 1, EMA of the weights (what is exported)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from craft_bench.mini.model import BASE_DIR
    from craft_bench.mini.tokenizer import build_tokenizers
    from craft_bench.mini.train import (
        STATE_DIR,
        TRAIN_DIR,
        _base_data,
        _check_out,
        _replace_dir,
        folder_files,
        to_fp16_files,
    )

    check_kind(kind)
    if steps < 1:
        raise UserError(f"--steps must be at least 1, got {steps}")
    quiet_library_bars()
    out = Path(out_dir)
    device = resolve_device(device)
    _check_out(out, resume)
    base = Path(base_dir) if base_dir else BASE_DIR
    if not (base / "unet" / "config.json").is_file():
        raise UserError(f"no mini base model in {base}; run `craft-bench mini train base` first or pass its folder")
    t_setup = time.perf_counter()
    f32 = torch.float32
    vae = AutoencoderKL.from_pretrained(str(base / "vae"), torch_dtype=f32).to(device).eval().requires_grad_(False)
    unet = (
        UNet2DConditionModel.from_pretrained(str(base / "unet"), torch_dtype=f32)
        .to(device)
        .eval()
        .requires_grad_(False)
    )
    te1 = (
        CLIPTextModel.from_pretrained(str(base / "text_encoder"), torch_dtype=f32)
        .to(device)
        .eval()
        .requires_grad_(False)
    )
    te2 = (
        CLIPTextModelWithProjection.from_pretrained(str(base / "text_encoder_2"), torch_dtype=f32)
        .to(device)
        .eval()
        .requires_grad_(False)
    )
    data = {
        k: v.to(device)
        for k, v in _base_data(out, seed, n_pairs, vae, build_tokenizers(out / TRAIN_DIR / "tokenizer"), device).items()
    }
    control = torch.from_numpy(_control_data(out, kind, seed, n_pairs)).to(device)
    torch.manual_seed(seed)
    controlnet = build_controlnet(unet).to(device).train()
    task = _task_class()(
        kind,
        controlnet,
        {"unet": unet, "text_encoder": te1, "text_encoder_2": te2},
        control,
        data,
        float(vae.config.scaling_factor),
        seed,
        batch_size,
        drop_prob,
        snr_gamma,
        device,
    )
    setup_s = time.perf_counter() - t_setup
    spec = LoopSpec(
        steps=steps,
        lr=lr,
        schedule=Schedule("wsd", warmup=warmup, cooldown=cooldown, warmup_style="replace"),
        weight_decay=0.01,
        max_grad_norm=1.0,
        ema_decay=ema_decay,
        ckpt_every=ckpt_every,
        seed=seed,
    )
    loop = Loop(
        task, spec, out / TRAIN_DIR / STATE_DIR, device=device, progress=progress, desc=f"mini controlnet-{kind}"
    )
    result = loop.run(stop_after)
    recipe = f"controlnet-{kind}"
    if result.steps < steps:
        return {"recipe": recipe, "steps": result.steps, "wall_s": round(result.wall_s, 1), "stopped": True}
    tmp = out / TRAIN_DIR / "final"
    shutil.rmtree(tmp, ignore_errors=True)
    with loop.ema_weights():
        controlnet.save_pretrained(str(tmp), safe_serialization=True)
    to_fp16_files(tmp)
    for item in tmp.iterdir():
        _replace_dir(item, out / item.name) if item.is_dir() else item.replace(out / item.name)
    shutil.rmtree(tmp, ignore_errors=True)
    stats = dict(
        recipe=recipe,
        seed=seed,
        steps=steps,
        wall_s=round(result.wall_s, 1),
        setup_s=round(setup_s, 1),
        device=device,
        loss=result.last_logs.get("loss"),
        base=str(base),
        n_pairs=n_pairs,
        params=sum(p.numel() for p in controlnet.parameters()),
        files=folder_files(out),
    )
    (out / TRAIN_DIR / "stats.json").write_text(json.dumps(stats, indent=1))
    if log:
        log(f"{recipe}: {steps} steps, {result.wall_s:.0f} s, final loss {stats['loss']:.4f}")
    return stats
