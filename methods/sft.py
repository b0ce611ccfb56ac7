"""Supervised fine-tuning on a chosen set: the controls that tell a gain from the preference signal apart from a
gain from training on curated images, and the perfect-data ceiling.

Following RankDPO's control arms (Karthik et al. 2024, arXiv 2410.18013, "SFT on the same images" ablations) and
CRAFT's own "SFT on high-quality images" comparison, on the same candidate pool and trainer as CRAFT:

- ``sft-random``: ``budget`` candidates of the shared pool drawn at random (seeded), no reward involved: what
  training on that many own samples does by itself;
- ``sft-pool``: every candidate of the pool, unfiltered;
- ``sft-renders``: ``budget`` ground-truth renders of the pool's training prompts (mini world only: the renderer
  draws a scene that satisfies each prompt), i.e. perfect data for the same prompts. The ceiling of what a
  filter could select, and the **positive control** of the benchmark: known-good data, so GenEval-mini must rise
  (docs/methods.md, "Positive control").

All train the plain denoising loss (with the trainer's min-SNR weighting when set) on the original prompt.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from craft_bench.api import Checkpoint, RunContext
from craft_bench.errors import UserError
from craft_bench.spec import setting
from craft_bench.train.diffusion import denoising_error
from craft_bench.train.method import TrainableMethod, TrainingData
from craft_bench.train.pool import PoolConfig, pool_method_version

SOURCES = ("random", "pool", "renders")
RENDER_VERSION = "1"  # bump when the renderer or scene_for changes what a prompt's render looks like


@dataclass(frozen=True)
class SFTConfig(PoolConfig):
    data: str = setting(
        "random",
        "what to fine-tune on: random (budget random pool candidates), pool (every candidate) "
        "or renders (budget ground-truth renders of the pool's prompts; mini world only)",
    )
    budget: int = setting(100, "training samples (random, renders)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.data not in SOURCES:
            raise ValueError(f"data must be one of {', '.join(SOURCES)}")
        if self.budget < 1:
            raise ValueError("budget must be >= 1")
        if self.data == "random" and self.budget > self.candidates():
            raise ValueError(
                f"budget {self.budget} is larger than the pool ({self.candidates()} candidates); "
                "lower method.budget or raise method.pool_size"
            )


def render_examples(
    prompts: list[str], metas: list[dict[str, Any]], count: int, seed: int, root: Path
) -> list[dict[str, Any]]:
    """``count`` (image, prompt) examples: round-robin over the prompts, each a fresh scene satisfying the prompt's
    metadata (seeded by (seed, prompt, index)), rendered to a PNG under ``<root>/cache/renders/``."""
    import io

    from PIL import Image

    from craft_bench.mini.prompts import metadata_for, scene_for
    from craft_bench.mini.scenes import render_batch
    from craft_bench.store import atomic_write_bytes

    out = []
    for i in range(count):
        prompt = prompts[i % len(prompts)]
        meta = metas[i % len(prompts)] if metas[i % len(prompts)].get("include") else metadata_for(prompt)
        if meta is None:
            raise UserError(
                f"method.data=renders needs mini-world prompts the renderer can draw; '{prompt[:60]}' is not one"
            )
        k = i // len(prompts)
        h = hashlib.sha256(f"render:{RENDER_VERSION}:{seed}:{prompt}:{k}".encode()).hexdigest()
        path = root / "cache" / "renders" / h[:2] / f"{h}.png"
        if not path.is_file():
            rng = np.random.default_rng(int(h[:16], 16))
            pixels = render_batch([scene_for(meta, rng)])[0]
            buf = io.BytesIO()
            Image.fromarray(pixels).save(buf, format="PNG")
            atomic_write_bytes(path, buf.getvalue())
        out.append({"image": str(path), "prompt": prompt, "render_index": k})
    return out


class SFT(TrainableMethod):
    name = "sft"
    version = pool_method_version("1")  # its own version, then the pool's (train/pool.py POOL_VERSION)
    description = "SFT control: plain fine-tuning on random pool candidates, the whole pool, or ground-truth renders"
    Config = SFTConfig
    budget_field: ClassVar[str] = "budget"
    presets: ClassVar[dict[str, dict[str, Any]]] = {}  # the world's training preset, as every pool method's

    def build_data(self, base: Checkpoint, ctx: RunContext) -> TrainingData:
        from craft_bench.train.pool import build_method_pool, pool_accounting, pool_prompts

        c = self.config
        if c.data == "renders":
            if ctx.world.prompts != "mini":
                raise UserError(
                    "method.data=renders draws ground-truth scenes, which only the mini world has; "
                    "use data=random or data=pool on this model"
                )
            t = time.perf_counter()
            prompts, metas = pool_prompts(c.pool_spec(ctx.seed, ctx.world), ctx.world)
            examples = render_examples(prompts, metas, c.budget, ctx.seed, Path(ctx.store.root))
            return TrainingData(
                examples,
                {
                    "timing": {"render_s": time.perf_counter() - t},
                    "images_generated": 0,
                    "reward_calls": 0,
                    "rewards": [],
                    "pool": {"prompts": len(prompts), "renders": len(examples)},
                },
            )
        pool = build_method_pool(c, base, ctx)
        t = time.perf_counter()
        cands = pool.candidates
        if c.data == "random":
            order = np.random.default_rng([c.prompt_seed, ctx.seed, 0x5F7]).permutation(len(cands))[: c.budget]
            chosen = [cands[i] for i in sorted(order)]
        else:
            chosen = list(cands)
        examples = [{"image": x.image_path, "prompt": x.original, "image_key": x.image_key} for x in chosen]
        return TrainingData(
            examples,
            {
                **pool_accounting(pool, selection_s=time.perf_counter() - t),
                "pool": {"prompts": len(pool.prompts), "candidates": len(cands), "kept": len(chosen)},
            },
        )

    def loss(self, batch: dict[str, Any], model: Any) -> tuple[Any, dict[str, float]]:
        err = denoising_error(model, batch["image"], batch)
        return (batch["snr_weight"] * err).mean(), {"mse": float(err.mean().detach())}


def _with_data(data: str, description: str) -> type[SFT]:
    """A named arm of SFT: the same method with another default ``data`` (its own name in tables and sweeps)."""
    import dataclasses

    cfg = dataclasses.make_dataclass(
        f"SFT{data.title()}Config",
        [("data", str, setting(data, SFTConfig.__dataclass_fields__["data"].metadata["help"]))],
        bases=(SFTConfig,),
        frozen=True,
    )
    return type(f"SFT{data.title()}", (SFT,), {"name": f"sft-{data}", "description": description, "Config": cfg})


SFTRandom = _with_data("random", "control: SFT on budget random candidates of the shared pool (no reward)")
SFTPool = _with_data("pool", "control: SFT on the whole unfiltered candidate pool")
SFTRenders = _with_data(
    "renders", "positive control: SFT on ground-truth renders of the training prompts (mini; perfect data)"
)
