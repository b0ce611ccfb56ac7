"""Test-only plug-ins, registered through CRAFT_BENCH_PLUGINS=toy_plugins (the same route a user's
own plug-in module takes). Nothing here ships in the product."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from craft_bench import registry
from craft_bench.api import Checkpoint, Method, MetricDef, PromptItem, Reward, RunContext, Suite
from craft_bench.errors import UserError
from craft_bench.spec import setting

WORDS = [
    ("a red apple", "warm"),
    ("a blue lake", "cool"),
    ("an orange sunset", "warm"),
    ("a green forest", "cool"),
    ("a yellow lemon", "warm"),
    ("a purple flower", "cool"),
    ("a pink cake", "warm"),
    ("a white cloud", "cool"),
    ("a brown dog", "warm"),
    ("a black cat", "cool"),
    ("a golden crown", "warm"),
    ("a teal wave", "cool"),
]


class ToySuite(Suite):
    """Colour statistics of generated images (test-only)."""

    name = "toy"
    version = "1"
    description = "test-only suite: colour statistics of generated images"

    @dataclass(frozen=True)
    class Config:
        n_prompts: int = setting(8, "number of prompts")
        images_per_prompt: int = setting(2, "images per prompt")
        delay_s: float = setting(0.0, "seconds of sleep per scored image (tests that kill a run while it scores)")

    def items(self, ctx: RunContext, prompts_path: Path | None = None) -> list[PromptItem]:
        if prompts_path is not None:
            lines = [ln.strip() for ln in prompts_path.read_text().splitlines() if ln.strip()]
            if not lines:
                raise UserError(f"--prompts {prompts_path}: no prompts in it")
            return [
                PromptItem(id=f"file-{i}", prompt=p, n_images=self.config.images_per_prompt, stratum="file")
                for i, p in enumerate(lines)
            ]
        return [
            PromptItem(
                id=f"toy-{i}",
                prompt=WORDS[i % len(WORDS)][0],
                n_images=self.config.images_per_prompt,
                stratum=WORDS[i % len(WORDS)][1],
            )
            for i in range(self.config.n_prompts)
        ]

    def metrics(self) -> list[MetricDef]:
        return [
            MetricDef("overall", "Redness", "redness", stratify=True),
            MetricDef("warm", "Redness (warm prompts)", "redness", where_stratum="warm"),
            MetricDef("bright", "Bright images", "bright"),
            MetricDef("all_bright", "Prompts with all images bright", "bright", per_prompt="all"),
        ]

    def score(self, items: Sequence[PromptItem], images: Sequence[Any], ctx: RunContext) -> list[dict[str, Any]]:
        import time

        out = []
        for img in images:
            time.sleep(self.config.delay_s)
            a = np.asarray(img, dtype=np.float64) / 255.0
            redness = float(a[..., 0].mean() - a[..., 1:].mean())
            out.append({"redness": redness, "bright": int(a.mean() > 0.5)})
        return out


class Redness(Reward):
    """Test-only reward: the image's mean red minus its mean green and blue (in [-1, 1]), a quantity any method can
    move quickly, so the direction it moves in tells whether an optimiser follows its reward."""

    name = "redness"
    description = "test-only reward: mean red minus mean green and blue"
    source = "redness-v1"

    @classmethod
    def load(cls, source: str | None = None, device: str = "cpu", dtype: str | None = None) -> "Redness":
        return cls()

    def score(self, images: Sequence[Any], prompts: Sequence[str]) -> Any:
        import torch

        a = [np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0 for im in images]
        return torch.tensor([float(x[..., 0].mean() - x[..., 1:].mean()) for x in a], dtype=torch.float32)


class ComponentShift(Method):
    """Test-only methods that write one edited diffusers component (``component``/ in the checkpoint folder, the
    layout a full fine-tune writes), a measurable change of the model."""

    trainable = True
    component = ""

    def edit(self, module: Any) -> None:
        raise NotImplementedError

    def prepare(self, base: Checkpoint, ctx: RunContext) -> Checkpoint:
        import diffusers
        import torch

        from craft_bench.spec import digest

        h = self.checkpoint_hash(base, ctx)
        final = ctx.store.checkpoint_dir(h)
        with ctx.store.lock(f"ckpt-{h}"):
            if not (final / self.component / "config.json").is_file():
                tmp = ctx.store.temp_dir_for(final)
                shutil.rmtree(tmp, ignore_errors=True)
                cls = diffusers.AutoencoderKL if self.component == "vae" else diffusers.UNet2DConditionModel
                module = cls.from_pretrained(Path(base.base_dir) / self.component)
                with torch.no_grad():
                    self.edit(module)
                module.save_pretrained(tmp / self.component)
                tmp.replace(final)
        return Checkpoint(
            model=base.model,
            base_dir=base.base_dir,
            adapter_dir=str(final),
            digest=digest([base.digest, h]),
            train_info={"samples_used": 0, "steps": 0, "images_generated": 0, "reward_calls": 0},
        )


class RedShift(ComponentShift):
    """Test-only method: shifts the VAE decoder's red output."""

    name = "redshift"
    description = "test-only: shift the VAE decoder's red channel"
    component = "vae"

    @dataclass(frozen=True)
    class Config:
        shift: float = setting(0.6, "added to the decoder's red output bias")

    def edit(self, vae: Any) -> None:
        vae.decoder.conv_out.bias[0] += self.config.shift


class UnetShift(ComponentShift):
    """Test-only method: a full-UNet checkpoint whose output is shifted, so a suite sees the method's UNet (also
    under a ControlNet)."""

    name = "unetshift"
    description = "test-only: a unet/ checkpoint with a shifted output bias"
    component = "unet"

    @dataclass(frozen=True)
    class Config:
        shift: float = setting(0.5, "added to the UNet's conv_out bias")

    def edit(self, unet: Any) -> None:
        unet.conv_out.bias += self.config.shift


def _inverted_craft() -> Any:
    """Test-only CRAFT variant with its filter inverted: it keeps the candidates the rewards like least (every reward
    score negated before filtering), the kind of bug a regression gate must catch."""
    from craft_bench.methods.craft import Craft

    class CraftInverted(Craft):
        name = "craft-inverted"
        description = "test-only: CRAFT with its filter inverted (keeps the worst candidates)"

        def select(self, pool: Any) -> Any:
            for c in pool.candidates:
                c.scores = {k: -v for k, v in c.scores.items()}
            return super().select(pool)

    return CraftInverted


def _flipped_dpo() -> Any:
    """Test-only Diffusion-DPO with the sign of its logit flipped (it learns to prefer the rejected image), the kind
    of bug a regression gate must catch."""
    from craft_bench.methods.diff_dpo import DiffusionDPO

    class DiffusionDPOFlipped(DiffusionDPO):
        name = "diff-dpo-flipped"
        description = "test-only: Diffusion-DPO with the logit's sign flipped"

        def logit(self, err_w: Any, err_l: Any, ref_w: Any, ref_l: Any) -> Any:
            return -super().logit(err_w, err_l, ref_w, ref_l)

    return DiffusionDPOFlipped


def _flipped_grpo() -> Any:
    """Test-only GRPO with its advantages' sign flipped (it learns to make what its reward dislikes), the kind of bug
    a regression gate must catch."""
    from craft_bench.methods.grpo import GRPO

    class GRPOFlipped(GRPO):
        name = "grpo-flipped"
        description = "test-only: GRPO with the advantage's sign flipped"

        def advantages(self, scores: Any) -> Any:
            return -super().advantages(scores)

    return GRPOFlipped


registry.suites.register("toy", ToySuite, replace=True)
registry.rewards.register("redness", Redness, replace=True)
registry.methods.register(
    "craft-inverted", "toy_plugins:CRAFT_INVERTED", "test-only: CRAFT with its filter inverted", replace=True
)
registry.methods.register(
    "diff-dpo-flipped",
    "toy_plugins:DPO_FLIPPED",
    "test-only: Diffusion-DPO with the logit's sign flipped",
    replace=True,
)
registry.methods.register(
    "grpo-flipped", "toy_plugins:GRPO_FLIPPED", "test-only: GRPO with the advantage's sign flipped", replace=True
)
registry.methods.register("redshift", RedShift, replace=True)
registry.methods.register("unetshift", UnetShift, replace=True)


def __getattr__(name: str) -> Any:  # the CRAFT variant is built on first use (it imports torch-free craft code)
    if name == "CRAFT_INVERTED":
        return _inverted_craft()
    if name == "DPO_FLIPPED":
        return _flipped_dpo()
    if name == "GRPO_FLIPPED":
        return _flipped_grpo()
    raise AttributeError(name)
