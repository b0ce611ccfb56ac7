"""Preference pairs for the DPO family (Diffusion-DPO, MaPO, SmPO): the data a pairwise method trains on, the
denoising errors of a pair that its loss is built from, and Diffusion-DPO's logit (SmPO scales it).

Two sources, one example format (``image_w``, ``image_l``: the preferred and the rejected image; ``prompt``;
``score_w``, ``score_l``: their scores where known):

- ``data=pool`` (the default): the candidate pool every pool-based method shares (``craft_bench.train.pool``: the
  prompts, base-model candidates and reward scores CRAFT draws on). In each group (one original prompt's candidates,
  those of its expansions included) the winner is the best and the loser the worst candidate by the composite score
  CRAFT ranks by (``pool.composite_scores``); groups whose best and worst tie are dropped; at most ``pairs`` pairs
  are kept, the clearest preferences (largest composite gap) first, or a seeded random subset. The pair is
  conditioned on the original prompt. ``labels=random`` is a control (RankDPO's random-label arm): the same pairs,
  each one's winner a seeded coin flip, so what is left of a gain is training on curated own images, not the
  preference signal.
- ``data=<file>``: Pick-a-Pic-style preference data (``craft_bench.train.prefs``): real human labels.

A pair shares its noise and timestep (the trainer draws one per example; both images of a pair are one example),
as Diffusion-DPO's train.py makes them: ``timesteps.chunk(2)[0].repeat(2)``, ``noise.chunk(2)[0].repeat(2, ...)``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from craft_bench.api import Checkpoint, RunContext
from craft_bench.spec import setting
from craft_bench.train.diffusion import denoise
from craft_bench.train.method import TrainableMethod, TrainingData
from craft_bench.train.pool import PoolConfig

PAIR_ORDERS = ("gap", "random")
PAIR_LABELS = ("reward", "random")


@dataclass(frozen=True)
class PairConfig(PoolConfig):
    data: str = setting(
        "pool",
        "preference pairs: pool (best vs worst of each group of the shared candidate pool) or a "
        "Pick-a-Pic-style parquet/JSONL file (caption, image_0, image_1, label_0)",
    )
    pairs: int = setting(100, "at most this many preference pairs")
    pair_order: str = setting(
        "gap",
        "which pairs when there are more: gap (largest composite-score gap first) or random "
        "(seeded by prompt_seed); a file's rows are always taken in a seeded random order",
    )
    labels: str = setting(
        "reward",
        "pool pairs' labels: reward (the composite score's best beats worst) or random (a "
        "control: each pair's winner a seeded coin flip)",
        omit_default=True,
    )
    data_digest: str = setting("", "sha256 of the data file, recorded when a run is resolved (part of its identity)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pairs < 1:
            raise ValueError("pairs must be >= 1")
        if self.pair_order not in PAIR_ORDERS:
            raise ValueError(f"pair_order must be one of {', '.join(PAIR_ORDERS)}")
        if self.labels not in PAIR_LABELS:
            raise ValueError(f"labels must be one of {', '.join(PAIR_LABELS)}")
        if self.labels != "reward" and self.data != "pool":
            raise ValueError("labels=random applies to data=pool (a preference file's labels are people's)")


def pool_pairs(pool: Any, count: int, order: str, seed: int, labels: str = "reward") -> list[dict[str, Any]]:
    """Best vs worst candidate of each group by the composite score; ties dropped; ``count`` pairs in ``order``.
    ``labels=random``: the same pairs, each one's winner and loser swapped on a coin flip (seeded by ``seed``)."""
    from craft_bench.train.pool import composite_scores

    comp = composite_scores(pool)
    groups: dict[int, list[int]] = {}
    for i, c in enumerate(pool.candidates):
        groups.setdefault(c.group, []).append(i)
    pairs = []
    for g, members in groups.items():
        best = max(members, key=lambda i: comp[i])
        worst = min(members, key=lambda i: comp[i])
        if comp[best] <= comp[worst]:
            continue
        w, lo = pool.candidates[best], pool.candidates[worst]
        pairs.append(
            {
                "image_w": w.image_path,
                "image_l": lo.image_path,
                "prompt": w.original,
                "score_w": float(comp[best]),
                "score_l": float(comp[worst]),
                "group": g,
                "image_key_w": w.image_key,
                "image_key_l": lo.image_key,
            }
        )
    if order == "gap":
        pairs.sort(key=lambda p: (-(p["score_w"] - p["score_l"]), p["group"]))
    else:
        pairs = [pairs[i] for i in np.random.default_rng(seed).permutation(len(pairs))]
    pairs = pairs[:count]
    if labels == "random":
        flips = np.random.default_rng([seed, 1]).random(len(pairs)) < 0.5
        pairs = [_swapped(p) if flip else p for p, flip in zip(pairs, flips)]
    return pairs


def _swapped(pair: dict[str, Any]) -> dict[str, Any]:
    out = dict(pair)
    for a, b in (("image_w", "image_l"), ("score_w", "score_l"), ("image_key_w", "image_key_l")):
        out[a], out[b] = pair[b], pair[a]
    return out


class PairMethod(TrainableMethod):
    """A method that learns from preference pairs; subclasses give ``Config`` (a ``PairConfig``), ``presets`` and
    ``loss``, and may add per-pair numbers in ``annotate``."""

    image_fields: ClassVar[tuple[str, ...]] = ("image_w", "image_l")
    budget_field: ClassVar[str] = "pairs"

    def build_data(self, base: Checkpoint, ctx: RunContext) -> TrainingData:
        c = self.config
        if c.data == "pool":
            from craft_bench.train.pool import build_method_pool, pool_accounting

            pool = build_method_pool(c, base, ctx)
            t = time.perf_counter()
            examples = pool_pairs(pool, c.pairs, c.pair_order, c.prompt_seed, c.labels)
            examples = self.annotate(examples, pool)
            accounting = {
                **pool_accounting(pool, pairs_s=time.perf_counter() - t),
                "pool": {"prompts": len(pool.prompts), "candidates": len(pool.candidates), "pairs": len(examples)},
            }
        else:
            from craft_bench.train.prefs import file_pairs

            examples, pool, accounting = file_pairs(Path(c.data).expanduser(), c, ctx, self.file_scores)
            examples = self.annotate(examples, pool)
        return TrainingData(examples, accounting)

    # What ranks a file's images for this method besides the human label: nothing (DPO, MaPO); SmPO: its label reward.
    file_scores: ClassVar[bool] = False

    def annotate(self, examples: list[dict[str, Any]], pool: Any) -> list[dict[str, Any]]:
        """Per-pair numbers a loss needs beyond the images (SmPO: its soft label); default: none."""
        return examples

    @classmethod
    def resolve_config(cls, config: Any) -> Any:
        """A preference file's content is part of the run's identity: its digest is recorded in ``data_digest``."""
        import dataclasses

        if config.data == "pool":
            return dataclasses.replace(config, data_digest="")
        from craft_bench.store import file_digest
        from craft_bench.train.prefs import check_file

        return dataclasses.replace(config, data_digest=file_digest(check_file(Path(config.data).expanduser())))


def dpo_logit(err_w: Any, err_l: Any, ref_w: Any, ref_l: Any, beta: float) -> Any:
    """Diffusion-DPO's logit (methods/diff_dpo.py quotes its source), shared with SmPO, which scales it:
    z = -0.5 beta ((err_w - err_l) - (ref_w - ref_l)), positive when the model fits the winner better, relative to the
    reference, than the loser."""
    return -0.5 * beta * ((err_w - err_l) - (ref_w - ref_l))


def pair_errors(model: Any, batch: dict[str, Any], noise_w: Any = None, noise_l: Any = None) -> tuple[Any, Any]:
    """Per-pair mean squared errors of the model's predictions for the winner and the loser, both noised at the
    pair's timestep with the pair's noise (or the given noises), in one forward pass over the 2B images as the
    reference code runs them. Returns (err_w, err_l), each [B]."""
    import torch

    x0 = torch.cat([batch["image_w"], batch["image_l"]])
    noise = torch.cat([batch["noise"] if noise_w is None else noise_w, batch["noise"] if noise_l is None else noise_l])
    t = batch["timesteps"].repeat(2)
    cond = {k: torch.cat([v, v]) for k, v in batch["cond"].items()}
    err_w, err_l = denoise(model, x0, noise, t, cond).error.chunk(2)
    return err_w, err_l
