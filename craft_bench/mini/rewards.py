"""The mini world's learned rewards: ``mini-clip`` (analog of HPS / PickScore) and ``mini-aes`` (analog of LAION AES).

Both are small networks trained from scratch on rendered scenes, so they are learned and imperfect, like
the rewards they stand in for, and they share no code with the exact detector.

mini-clip
    An open_clip CLIP (tiny ViT + text transformer, open_clip's real BPE tokenizer) trained contrastively on
    renders and their captions. Besides the in-batch negatives, every image gets hard-negative captions: its
    own caption with a wrong count, colour, shape, relation, or with two colours swapped (attribute binding),
    the NegCLIP recipe (Yuksekgonul et al., ICLR 2023, "When and why vision-language models behave like
    bags-of-words"). Score = ``exp(logit_scale) * cos(image_embedding, text_embedding)``, the PickScore
    convention; the learned scale is stored in the weights (its value is in the folder's config.json and in
    docs/mini.md), so scores lie in ``[-scale, scale]``.
mini-aes
    An image-only CNN trained with a pairwise logistic (RankNet) loss to rank a clean render above degraded
    copies of it (blur, noise, jpeg, motion smear, partly erased shapes, washed-out colour) and a mildly
    degraded copy above a strongly degraded one. Raw outputs are mapped affinely so that clean renders average
    7 and strength-1 degradations average 3 (a LAION-AES-like 1-10 range; not clamped). Prompts are ignored.

Weight folders hold ``model.safetensors`` and ``config.json`` (mini-clip also ``mini-clip.json``, the
open_clip architecture, registered with ``open_clip.add_model_config``). ``train_clip`` / ``train_aes``
reproduce the shipped folders from a seed; ``craft-bench mini train clip|aes`` calls them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from craft_bench.api import Reward
from craft_bench.errors import UserError
from craft_bench.models import resolve_device
from craft_bench.train.loop import Loop, LoopSpec, Schedule, Task

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from PIL import Image

WEIGHTS_DIR = Path(__file__).parent / "weights"
IMAGE_SIZE = 64
CLIP_ARCH_NAME = "mini-clip"
CLIP_ARCH: dict[str, Any] = {
    "embed_dim": 64,
    "vision_cfg": {
        "image_size": IMAGE_SIZE,
        "patch_size": 8,
        "width": 96,
        "layers": 3,
        "head_width": 32,
        "mlp_ratio": 4.0,
    },
    "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}
AES_CHANNELS = (16, 24, 32, 48)
AES_CLEAN_TARGET, AES_DEGRADED_TARGET = 7.0, 3.0

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CLIP_ARCH_FILE = f"{CLIP_ARCH_NAME}.json"
CKPT_DIR = "checkpoint"

# Prompt seed of the GenEval-style training prompts, kept apart from evaluation prompt seeds.
TRAIN_PROMPT_SEED = 7_919


# --------------------------------------------------------------------------- shared helpers


def _torch_dtype(dtype: str | None) -> "torch.dtype":
    import torch

    table = {
        None: torch.float32,
        "fp32": torch.float32,
        "float32": torch.float32,
        "fp16": torch.float16,
        "float16": torch.float16,
        "bf16": torch.bfloat16,
        "bfloat16": torch.bfloat16,
    }
    if dtype not in table:
        raise UserError(f"unknown dtype '{dtype}' (known: fp32, fp16, bf16)")
    return table[dtype]


def images_to_tensor(images: Sequence["Image.Image"] | np.ndarray, size: int = IMAGE_SIZE) -> "torch.Tensor":
    """PIL images (any size, converted to RGB, resized to ``size``) or uint8 NHWC arrays -> NCHW in [-1, 1]."""
    import torch
    from PIL import Image

    if isinstance(images, np.ndarray):
        arr = images if images.ndim == 4 else images[None]
    else:
        rows = []
        for im in images:
            im = im.convert("RGB")
            if im.size != (size, size):
                im = im.resize((size, size), Image.BILINEAR)
            rows.append(np.asarray(im, dtype=np.uint8))
        arr = np.stack(rows) if rows else np.zeros((0, size, size, 3), np.uint8)
    if arr.shape[1:3] != (size, size):
        return images_to_tensor([Image.fromarray(a) for a in arr], size)
    x = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0


def _weights_dir(source: str | os.PathLike | None, kind: str, required: Sequence[str]) -> Path:
    folder = WEIGHTS_DIR / kind if source is None else Path(source)
    if not folder.is_dir():
        raise UserError(
            f"mini-{kind} weights folder not found: {folder} (train one with `craft-bench mini train {kind}`)"
        )
    for name in required:
        if not (folder / name).is_file():
            raise UserError(
                f"mini-{kind} weights file missing: {folder / name} (train with `craft-bench mini train {kind}`)"
            )
    return folder


def _load_state(path: Path) -> dict[str, "torch.Tensor"]:
    from safetensors.torch import load_file

    return {k: v.float() for k, v in load_file(str(path)).items()}


def _save_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _save_tensors(path: Path, tensors: dict[str, "torch.Tensor"], dtype: "torch.dtype | None" = None) -> None:
    from safetensors.torch import save_file

    out = {}
    for k, v in tensors.items():
        v = v.detach().cpu()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        out[k] = v.contiguous().clone()
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(out, str(tmp))
    os.replace(tmp, path)


# --------------------------------------------------------------------------- mini-clip: model


def _register_clip_arch(folder: Path) -> None:
    import open_clip

    open_clip.add_model_config(folder / CLIP_ARCH_FILE)


def build_clip(folder: Path) -> tuple["torch.nn.Module", Callable[[Sequence[str]], "torch.Tensor"]]:
    """A randomly initialised mini-clip and its tokenizer, of the architecture in ``folder``/mini-clip.json."""
    import open_clip

    _register_clip_arch(folder)
    # open_clip warns (root logger) that no pretrained weights were loaded; ours are loaded next or trained.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        model = open_clip.create_model(CLIP_ARCH_NAME, pretrained=None, load_weights=False)
    finally:
        root.setLevel(level)
    tokenizer = open_clip.get_tokenizer(CLIP_ARCH_NAME)
    return model, tokenizer


class MiniClip(Reward):
    """mini world's contrastive image-text reward (analog of HPS/PickScore): exp(logit_scale) * cosine."""

    name = "mini-clip"
    description = "mini world's contrastive image-text reward (analog of HPS/PickScore)"
    higher_is_better = True

    def __init__(
        self,
        model: "torch.nn.Module",
        tokenizer: Callable,
        config: dict[str, Any],
        device: str = "cpu",
        dtype: "torch.dtype | None" = None,
    ) -> None:
        import torch

        self.device = device
        self.dtype = dtype or torch.float32
        self.model = model.to(device=device, dtype=self.dtype).eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.config = config

    @classmethod
    def load(cls, source: str | None = None, device: str = "cpu", dtype: str | None = None) -> "MiniClip":
        folder = _weights_dir(source, "clip", (CLIP_ARCH_FILE, CONFIG_FILE, MODEL_FILE))
        config = json.loads((folder / CONFIG_FILE).read_text())
        model, tokenizer = build_clip(folder)
        model.load_state_dict(_load_state(folder / MODEL_FILE))
        return cls(model, tokenizer, config, device, _torch_dtype(dtype))

    @property
    def scale(self) -> float:
        return self.model.logit_scale.detach().exp().item()

    def embed_images(self, images: Sequence["Image.Image"] | np.ndarray) -> "torch.Tensor":
        import torch

        with torch.no_grad():
            x = images_to_tensor(images).to(self.device, self.dtype)
            return self.model.encode_image(x, normalize=True).float()

    def embed_texts(self, prompts: Sequence[str]) -> "torch.Tensor":
        import torch

        with torch.no_grad():
            return self.model.encode_text(self.tokenizer(list(prompts)).to(self.device), normalize=True).float()

    def score(self, images: Sequence["Image.Image"], prompts: Sequence[str], batch_size: int = 256) -> "torch.Tensor":
        import torch

        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        out = []
        for i in range(0, len(images), batch_size):
            img = self.embed_images(images[i : i + batch_size])
            txt = self.embed_texts(prompts[i : i + batch_size])
            out.append(self.scale * (img * txt).sum(-1))
        return torch.cat(out).float().cpu() if out else torch.zeros(0)


# --------------------------------------------------------------------------- mini-clip: hard negatives

_NUMBERS = ("two", "three", "four")
_DIGITS = ("2", "3", "4")
_RELATIONS = {
    "left": "right",
    "right": "left",
    "above": "below",
    "below": "above",
    "top": "bottom",
    "bottom": "top",
    "over": "under",
    "under": "over",
    "beneath": "above",
}


def _plural(word: str) -> str:
    return word + "es" if word.endswith(("s", "x", "sh", "ch")) else word + "s"


def hard_negatives(caption: str, rng: np.random.Generator, k: int) -> list[tuple[str, str]]:
    """Up to ``k`` distinct (kind, caption) edits that make a true caption false: a wrong count, colour,
    shape or relation, or two colour words swapped (binding). Kinds are drawn round-robin so each image
    sees a mix."""
    from craft_bench.mini.scenes import COLORS, SHAPES

    parts = re.split(r"(\W+)", caption)
    low = [p.lower() for p in parts]
    colours, shapes_ = list(COLORS), list(SHAPES)
    singular = {s: s for s in shapes_}
    plural = {_plural(s): s for s in shapes_}
    idx = {
        "colour": [i for i, w in enumerate(low) if w in COLORS],
        "count": [i for i, w in enumerate(low) if w in _NUMBERS or w in _DIGITS],
        "relation": [i for i, w in enumerate(low) if w in _RELATIONS],
        "shape": [i for i, w in enumerate(low) if w in singular or w in plural],
    }

    def edit(changes: dict[int, str]) -> str:
        new = [changes.get(i, p) for i, p in enumerate(parts)]
        for i in changes:  # keep "a"/"an" right before a replaced word
            if i >= 2 and new[i - 2].lower() in ("a", "an") and new[i - 1] == " ":
                article = "an" if new[i][:1].lower() in "aeiou" else "a"
                new[i - 2] = article.capitalize() if new[i - 2][0].isupper() else article
        return "".join(new)

    def make(kind: str) -> str | None:
        if kind == "colour" and idx["colour"]:
            i = idx["colour"][rng.integers(len(idx["colour"]))]
            return edit({i: str(rng.choice([c for c in colours if c != low[i]]))})
        if kind == "binding":
            distinct = sorted({low[i] for i in idx["colour"]})
            if len(distinct) >= 2:
                a, b = rng.choice(len(distinct), size=2, replace=False)
                ca, cb = distinct[a], distinct[b]
                return edit({i: (cb if low[i] == ca else ca) for i in idx["colour"] if low[i] in (ca, cb)})
        if kind == "count" and idx["count"]:
            i = idx["count"][rng.integers(len(idx["count"]))]
            words = _DIGITS if low[i] in _DIGITS else _NUMBERS
            return edit({i: str(rng.choice([n for n in words if n != low[i]]))})
        if kind == "relation" and idx["relation"]:
            return edit({i: _RELATIONS[low[i]] for i in idx["relation"]})
        if kind == "shape" and idx["shape"]:
            i = idx["shape"][rng.integers(len(idx["shape"]))]
            base = singular.get(low[i]) or plural[low[i]]
            new = str(rng.choice([s for s in shapes_ if s != base]))
            return edit({i: new if low[i] in singular else _plural(new)})
        return None

    kinds = ["count", "relation", "binding", "colour", "shape"]
    order = [kinds[j] for j in rng.permutation(len(kinds))]
    out: list[tuple[str, str]] = []
    seen = {caption.lower()}
    for _ in range(4 * k):
        for kind in order:
            if len(out) >= k:
                return out
            text = make(kind)
            if text is not None and text.lower() not in seen:
                seen.add(text.lower())
                out.append((kind, text))
    return out


# --------------------------------------------------------------------------- mini-aes: model


def build_aes(channels: Sequence[int] = AES_CHANNELS) -> "torch.nn.Module":
    """A small CNN: conv stages (the first at full resolution, then stride 2) -> mean and max pool -> linear."""
    import torch
    from torch import nn

    class AesNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers: list[nn.Module] = []
            c_in = 3
            for j, c in enumerate(channels):
                layers += [
                    nn.Conv2d(c_in, c, 3, stride=1 if j == 0 else 2, padding=1),
                    nn.SiLU(),
                    nn.Conv2d(c, c, 3, padding=1),
                    nn.SiLU(),
                ]
                c_in = c
            self.features = nn.Sequential(*layers)
            self.head = nn.Linear(2 * c_in, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.features(x)
            return self.head(torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1)).squeeze(1)

    return AesNet()


class MiniAes(Reward):
    """mini world's image-only quality predictor (analog of LAION AES); prompts are ignored."""

    name = "mini-aes"
    description = "mini world's image-only quality predictor (analog of LAION AES)"
    higher_is_better = True

    def __init__(
        self, model: "torch.nn.Module", config: dict[str, Any], device: str = "cpu", dtype: "torch.dtype | None" = None
    ) -> None:
        import torch

        self.device = device
        self.dtype = dtype or torch.float32
        self.model = model.to(device=device, dtype=self.dtype).eval().requires_grad_(False)
        self.config = config
        cal = config.get("calibration", {"scale": 1.0, "offset": 0.0})
        self.cal_scale, self.cal_offset = float(cal["scale"]), float(cal["offset"])

    @classmethod
    def load(cls, source: str | None = None, device: str = "cpu", dtype: str | None = None) -> "MiniAes":
        folder = _weights_dir(source, "aes", (CONFIG_FILE, MODEL_FILE))
        config = json.loads((folder / CONFIG_FILE).read_text())
        model = build_aes(tuple(config["channels"]))
        model.load_state_dict(_load_state(folder / MODEL_FILE))
        return cls(model, config, device, _torch_dtype(dtype))

    def raw(self, images: Sequence["Image.Image"] | np.ndarray) -> "torch.Tensor":
        import torch

        with torch.no_grad():
            return self.model(images_to_tensor(images).to(self.device, self.dtype)).float().cpu()

    def score(
        self, images: Sequence["Image.Image"], prompts: Sequence[str] | None = None, batch_size: int = 256
    ) -> "torch.Tensor":
        import torch

        out = [self.raw(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
        raw = torch.cat(out) if out else torch.zeros(0)
        return (raw * self.cal_scale + self.cal_offset).float()


# --------------------------------------------------------------------------- degradations for mini-aes

AES_DEGRADATIONS = ("blur", "noise", "jpeg", "smear", "partial", "washout")


def degrade_scene_image(
    image: np.ndarray, scene: Any, kind: str, rng: np.random.Generator, strength: float
) -> np.ndarray:
    """One degraded copy of a uint8 render. blur/noise/jpeg come from the renderer's ``degrade``; smear is a
    motion blur of up to 7 px, partial erases up to 60% of each shape's box to background, washout blends
    up to 70% towards the background colour."""
    from craft_bench.mini.scenes import degrade

    if kind in ("blur", "noise", "jpeg"):
        return degrade(image, kind, rng, strength)
    img = image.astype(np.float32)
    if kind == "smear":
        length = max(2, int(round(1 + 6 * strength)))
        angle = rng.uniform(0, np.pi)
        acc = np.zeros_like(img)
        for t in np.linspace(-0.5, 0.5, length):
            dx, dy = int(round(t * length * np.cos(angle))), int(round(t * length * np.sin(angle)))
            acc += np.roll(img, (dy, dx), axis=(0, 1))
        img = acc / length
    elif kind == "partial":
        bg = np.array(scene.background, np.float32)
        for obj in scene.objects:
            x0, y0, x1, y1 = obj.box
            w, h = (x1 - x0) * 0.6 * strength, (y1 - y0) * 0.6 * strength
            if rng.random() < 0.5:  # a slab from one side
                if rng.random() < 0.5:
                    xa = x0 if rng.random() < 0.5 else x1 - w
                    box = (xa, y0, xa + w, y1)
                else:
                    ya = y0 if rng.random() < 0.5 else y1 - h
                    box = (x0, ya, x1, ya + h)
            else:  # a hole
                cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
                box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
            a0, b0 = max(int(round(box[0])), 0), max(int(round(box[1])), 0)
            a1, b1 = min(int(round(box[2])), img.shape[1]), min(int(round(box[3])), img.shape[0])
            img[b0:b1, a0:a1] = bg
    elif kind == "washout":
        bg = np.array(scene.background, np.float32)
        img = img * (1 - 0.7 * strength) + bg * 0.7 * strength
    else:
        raise ValueError(f"unknown degradation '{kind}' (known: {', '.join(AES_DEGRADATIONS)})")
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- recipes on the shared training loop


@dataclass
class _Recipe:
    kind: str  # "clip" | "aes"
    model: "torch.nn.Module"
    batch: Callable[[np.random.Generator], dict[str, Any]]  # data of one step, from that step's rng
    loss: Callable[[dict[str, Any]], tuple["torch.Tensor", dict[str, float]]]
    lr: float
    weight_decay: float
    warmup: int
    export: Callable[[Path, dict[str, Any]], list[Path]]
    after_step: Callable[[], None] | None = None


class _RecipeTask(Task):
    """A reward recipe as a task of the shared loop: the step's batch from ``rng([seed, step])``."""

    shardable = False

    def __init__(self, recipe: _Recipe, seed: int) -> None:
        self.recipe, self.seed, self.name = recipe, seed, f"mini-{recipe.kind}"

    def modules(self) -> dict[str, Any]:
        return {"model": self.recipe.model}

    def param_groups(self) -> list[dict[str, Any]]:
        named = list(self.recipe.model.named_parameters())
        decay = [p for n, p in named if p.ndim >= 2 and "embedding" not in n]
        no_decay = [p for n, p in named if not (p.ndim >= 2 and "embedding" not in n)]
        return [{"params": decay, "weight_decay": self.recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]

    def batch(self, step: int) -> dict[str, Any]:
        return self.recipe.batch(np.random.default_rng([self.seed, step]))

    def loss(self, batch: dict[str, Any], step: int) -> tuple[Any, dict[str, float]]:
        return self.recipe.loss(batch)

    def after_step(self, step: int) -> None:
        if self.recipe.after_step:
            self.recipe.after_step()


def _run(
    recipe: _Recipe,
    out_dir: str | os.PathLike,
    seed: int,
    steps: int,
    device: str,
    resume: bool,
    checkpoint_every: int | None,
    progress: bool,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Train a reward recipe with the shared loop: AdamW (betas 0.9/0.98, decay on matrices only), linear warm-up,
    then cosine decay to 10% of the rate, gradient norm clipped at 1; checkpoints in ``out_dir``/checkpoint."""
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(device)
    recipe.model.to(device)
    ckpt = out / CKPT_DIR
    if not resume:
        shutil.rmtree(ckpt, ignore_errors=True)
    spec = LoopSpec(
        steps=steps,
        lr=recipe.lr,
        schedule=Schedule("cosine", warmup=recipe.warmup, floor=0.1, warmup_style="ramp"),
        betas=(0.9, 0.98),
        max_grad_norm=1.0,
        ckpt_every=checkpoint_every or max(25, steps // 10),
        seed=seed,
    )
    recipe.model.train()
    loop = Loop(
        _RecipeTask(recipe, seed), spec, ckpt, device=device, progress=progress, desc=f"mini train {recipe.kind}"
    )
    result = loop.run(stop_after)
    history = result.history
    if result.steps < steps:
        return {
            "steps": result.steps,
            "wall_s": round(result.wall_s, 1),
            "files": {},
            "final": history[-1] if history else result.last_logs,
            "stopped": True,
        }
    recipe.model.eval()
    info = {
        "seed": seed,
        "steps": steps,
        "wall_s": round(result.wall_s, 1),
        "device": str(device),
        "torch": torch.__version__,
        "history": history[-5:],
    }
    files = recipe.export(out, info)
    return {
        "steps": steps,
        "wall_s": round(result.wall_s, 1),
        "device": str(device),
        "files": {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files},
        "final": history[-1] if history else result.last_logs,
    }


# --------------------------------------------------------------------------- mini-clip: recipe

CLIP_BATCH = 48
CLIP_NEGATIVES = 3
CLIP_GENEVAL_SHARE = 0.75  # the rest: random scenes with free captions
CLIP_AUG_PROB = 0.25  # mild blur/noise/jpeg so generated (VAE-soft) images are in distribution


def _clip_examples(rng: np.random.Generator, n: int, pool: Sequence[dict[str, Any]]) -> tuple[list[Any], list[str]]:
    from craft_bench.mini import prompts as P
    from craft_bench.mini.scenes import random_scene

    scenes, captions = [], []
    for _ in range(n):
        if rng.random() < CLIP_GENEVAL_SHARE:
            meta = pool[int(rng.integers(len(pool)))]
            scenes.append(P.scene_for(meta, rng))
            options = [meta["prompt"], *P.paraphrases(meta)]
            captions.append(options[0] if rng.random() < 0.5 else options[int(rng.integers(len(options)))])
        else:
            scene = random_scene(rng)
            scenes.append(scene)
            captions.append(P.caption_for(scene, rng))
    return scenes, captions


def _augment(images: np.ndarray, rng: np.random.Generator, prob: float) -> np.ndarray:
    from craft_bench.mini.scenes import degrade

    out = images.copy()
    for i in range(len(out)):
        if rng.random() < prob:
            kind = ("blur", "noise", "jpeg")[int(rng.integers(3))]
            out[i] = degrade(out[i], kind, rng, float(rng.uniform(0.2, 1.0)))
    return out


def train_clip(
    out_dir: str | os.PathLike,
    seed: int = 0,
    steps: int = 3600,
    device: str = "cpu",
    resume: bool = True,
    *,
    batch_size: int = CLIP_BATCH,
    checkpoint_every: int | None = None,
    progress: bool = True,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Train mini-clip from scratch into ``out_dir`` (model.safetensors in fp16, config.json, mini-clip.json).

    Every step renders fresh scenes from ``rng([seed, step])``: 75% from GenEval-style training prompts
    (prompt seed TRAIN_PROMPT_SEED, apart from evaluation), captioned with the prompt or a paraphrase, 25% random
    scenes with free captions; each image also gets CLIP_NEGATIVES hard-negative captions.

    ``resume`` continues from ``out_dir``/checkpoint (bit-identical to an uninterrupted run with the same
    ``steps``); ``stop_after`` ends this call after that step, with a checkpoint. Returns
    ``{steps, wall_s, device, files: {name: sha256}, final}``.
    """
    import torch
    import torch.nn.functional as F

    from craft_bench.mini import prompts as P
    from craft_bench.mini.scenes import render_batch

    device = resolve_device(device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _save_json(out / CLIP_ARCH_FILE, CLIP_ARCH)
    torch.manual_seed(seed)
    model, tokenizer = build_clip(out)
    pool = P.geneval_prompts(200, seed=TRAIN_PROMPT_SEED)

    def batch(rng: np.random.Generator) -> dict[str, Any]:
        scenes, captions = _clip_examples(rng, batch_size, pool)
        images = _augment(render_batch(scenes), rng, CLIP_AUG_PROB)
        negs = []
        for c in captions:
            hn = [t for _, t in hard_negatives(c, rng, CLIP_NEGATIVES)]
            negs.append((hn + [hn[0] if hn else c] * CLIP_NEGATIVES)[:CLIP_NEGATIVES] if hn else [c] * CLIP_NEGATIVES)
        negs_flat = [t for row in negs for t in row]
        # Positions that must not count as negatives: the same caption text elsewhere in the batch.
        same = np.array([[a.lower() == b.lower() for b in captions] for a in captions])
        neg_is_pos = np.array([[t.lower() == c.lower() for t in negs_flat] for c in captions])
        return {
            "images": images_to_tensor(images).to(device),
            "texts": tokenizer(captions + negs_flat).to(device),
            "same": torch.from_numpy(same).to(device),
            "neg_is_pos": torch.from_numpy(neg_is_pos).to(device),
        }

    def loss(b: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        img = model.encode_image(b["images"], normalize=True)
        txt = model.encode_text(b["texts"], normalize=True)
        n = img.shape[0]
        scale = model.logit_scale.exp()
        logits = scale * img @ txt.T  # [n, n + n*K]: in-batch captions, then every image's hard negatives
        eye = torch.eye(n, dtype=torch.bool, device=img.device)
        mask = torch.cat([b["same"] & ~eye, b["neg_is_pos"]], 1)
        logits_i2t = logits.masked_fill(mask, float("-inf"))
        logits_t2i = logits[:, :n].T.masked_fill(b["same"] & ~eye, float("-inf"))
        target = torch.arange(n, device=img.device)
        l_i2t, l_t2i = F.cross_entropy(logits_i2t, target), F.cross_entropy(logits_t2i, target)
        own = logits[:, :n].diagonal()
        k = (logits.shape[1] - n) // n
        neg_own = torch.stack([logits[i, n + i * k : n + (i + 1) * k] for i in range(n)])
        hard_acc = (own[:, None] > neg_own).float().mean()
        total = (l_i2t + l_t2i) / 2
        return total, {"loss": total.item(), "hard_acc": hard_acc.item(), "scale": scale.item()}

    def after_step() -> None:
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))

    def export(out: Path, info: dict[str, Any]) -> list[Path]:
        _save_tensors(out / MODEL_FILE, model.state_dict(), dtype=torch.float16)
        scale = model.logit_scale.exp().item()
        _save_json(
            out / CONFIG_FILE,
            {
                "format": "craft-bench mini-clip",
                "version": 1,
                "open_clip_model": CLIP_ARCH_NAME,
                "image_size": IMAGE_SIZE,
                "normalize": "x / 127.5 - 1 (RGB, bilinear resize to image_size)",
                "score": "exp(logit_scale) * cosine(image, text)",
                "logit_scale_exp": round(scale, 4),
                "recipe": {
                    "batch": batch_size,
                    "negatives": CLIP_NEGATIVES,
                    "geneval_share": CLIP_GENEVAL_SHARE,
                    "aug_prob": CLIP_AUG_PROB,
                    "train_prompt_seed": TRAIN_PROMPT_SEED,
                    **info,
                },
            },
        )
        return [out / CLIP_ARCH_FILE, out / CONFIG_FILE, out / MODEL_FILE]

    recipe = _Recipe(
        "clip",
        model,
        batch,
        loss,
        lr=1e-3,
        weight_decay=0.05,
        warmup=min(200, max(1, steps // 20)),
        export=export,
        after_step=after_step,
    )
    return _run(recipe, out_dir, seed, steps, device, resume, checkpoint_every, progress, stop_after)


# --------------------------------------------------------------------------- mini-aes: recipe

AES_BATCH = 32


def _aes_pairs(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n pairs (better, worse) of images. Half compare copies of one scene: clean vs degraded, or mildly vs
    strongly degraded (same kind). The other half compare a clean render with a degraded render of another
    scene, so that the score tracks quality rather than content (how many objects, which colours)."""
    from craft_bench.mini.scenes import random_scene, render

    def degraded(scene: Any, clean: np.ndarray, kind: str, strength: float) -> np.ndarray:
        img = degrade_scene_image(clean, scene, kind, rng, strength)
        if rng.random() < 0.25:  # a second defect on top
            kind2 = AES_DEGRADATIONS[int(rng.integers(len(AES_DEGRADATIONS)))]
            img = degrade_scene_image(img, scene, kind2, rng, float(rng.uniform(0.25, 1.0)))
        return img

    better, worse = [], []
    for _ in range(n):
        scene = random_scene(rng)
        clean = render(scene)
        kind = AES_DEGRADATIONS[int(rng.integers(len(AES_DEGRADATIONS)))]
        s_hi = float(rng.uniform(0.25, 1.0))
        if rng.random() < 0.5:
            other = random_scene(rng)
            better.append(clean)
            worse.append(degraded(other, render(other), kind, s_hi))
            continue
        worse.append(degraded(scene, clean, kind, s_hi))
        if rng.random() < 0.6:
            better.append(clean)
        else:
            better.append(degrade_scene_image(clean, scene, kind, rng, s_hi * float(rng.uniform(0.0, 0.4))))
    return np.stack(better), np.stack(worse)


def aes_calibration_sets(seed: int, n: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """Clean renders and strength-1 degraded copies (every kind in turn), fixed by ``seed``."""
    from craft_bench.mini.scenes import random_scene, render

    rng = np.random.default_rng([seed, 10_007])
    clean, bad = [], []
    for i in range(n):
        scene = random_scene(rng)
        img = render(scene)
        clean.append(img)
        bad.append(degrade_scene_image(img, scene, AES_DEGRADATIONS[i % len(AES_DEGRADATIONS)], rng, 1.0))
    return np.stack(clean), np.stack(bad)


def train_aes(
    out_dir: str | os.PathLike,
    seed: int = 0,
    steps: int = 500,
    device: str = "cpu",
    resume: bool = True,
    *,
    batch_size: int = AES_BATCH,
    checkpoint_every: int | None = None,
    progress: bool = True,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Train mini-aes from scratch into ``out_dir`` (model.safetensors in fp16, config.json).

    Pairwise logistic loss softplus(s_worse - s_better) on pairs from ``_aes_pairs``, plus a small penalty on
    the mean squared raw score that keeps the unbounded ranking scores near zero; after training, an affine
    calibration maps the mean raw score of clean renders to 7 and of strength-1 degradations to 3.
    """
    import torch
    import torch.nn.functional as F

    device = resolve_device(device)
    torch.manual_seed(seed)
    model = build_aes()

    def batch(rng: np.random.Generator) -> dict[str, Any]:
        better, worse = _aes_pairs(rng, batch_size)
        return {"better": images_to_tensor(better).to(device), "worse": images_to_tensor(worse).to(device)}

    def loss(b: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        s = model(torch.cat([b["better"], b["worse"]]))
        margin = s[:batch_size] - s[batch_size:]
        value = F.softplus(-margin).mean() + 1e-3 * s.pow(2).mean()
        return value, {"loss": value.item(), "pair_acc": (margin > 0).float().mean().item()}

    def export(out: Path, info: dict[str, Any]) -> list[Path]:
        clean, bad = aes_calibration_sets(seed)
        with torch.no_grad():
            half = model.to(torch.float16).float()  # calibrate the weights as shipped (fp16-rounded)
            rc = float(half(images_to_tensor(clean).to(device)).mean())
            rb = float(half(images_to_tensor(bad).to(device)).mean())
        scale = (AES_CLEAN_TARGET - AES_DEGRADED_TARGET) / (rc - rb) if rc != rb else 1.0
        _save_tensors(out / MODEL_FILE, model.state_dict(), dtype=torch.float16)
        _save_json(
            out / CONFIG_FILE,
            {
                "format": "craft-bench mini-aes",
                "version": 1,
                "channels": list(AES_CHANNELS),
                "image_size": IMAGE_SIZE,
                "normalize": "x / 127.5 - 1 (RGB, bilinear resize to image_size)",
                "calibration": {
                    "scale": scale,
                    "offset": AES_CLEAN_TARGET - scale * rc,
                    "clean_raw": rc,
                    "degraded_raw": rb,
                },
                "degradations": list(AES_DEGRADATIONS),
                "recipe": {"batch": batch_size, **info},
            },
        )
        return [out / CONFIG_FILE, out / MODEL_FILE]

    recipe = _Recipe(
        "aes", model, batch, loss, lr=2e-3, weight_decay=0.01, warmup=min(100, max(1, steps // 20)), export=export
    )
    return _run(recipe, out_dir, seed, steps, device, resume, checkpoint_every, progress, stop_after)
