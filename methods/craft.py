"""CRAFT (arXiv 2603.18991): Composite Reward Filtering and advantage-weighted fine-tuning on a small set.

The pipeline, each stage a visible, cached step (docs/methods.md has the equations and every default's source):

1. prompt pool: the mini grammar's prompts at a training prompt seed (mini), or a prompt file;
2. prompt expansion: none, template, or an LLM (``craft_bench.train.expand``);
3. K candidates per original and per expanded prompt from the current model (``craft_bench.train.pool``,
   through the image cache);
4. composite reward: every candidate scored once by each configured reward (scores cached);
5. Composite Reward Filtering: a candidate passes when the rewards of its level improve on its reference
   (``single``: any reward; ``ha``: the HPS-like and the AES-like reward; ``hpa``: all rewards); at most
   ``budget`` candidates are kept, best advantage first;
6. group-normalised advantages A = (r - mean_group) / (std_group + eps) of the composite score r (the mean of
   the rewards' pool-wide z-scores), a group being an original prompt's candidates;
7. advantage-weighted denoising loss on the kept samples, L = E[1_CRF A ||eps_theta(x_t, t, c) - eps||^2], with c the
   original prompt by default (the expansion distilled into the prompt users type).

``rounds`` > 1 repeats 3-7 with the updated model (the online variant).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from craft_bench.api import Checkpoint, RunContext
from craft_bench.spec import setting
from craft_bench.train.diffusion import denoise
from craft_bench.train.method import TrainableMethod, TrainingData
from craft_bench.train.pool import PoolConfig, composite_scores, pool_method_version

# Which configured reward plays which of the paper's roles in the ``ha`` level (HPS and AES both improve).
ROLES = {"hps": ("hps", "mini-clip", "pickscore"), "aes": ("aes", "mini-aes")}
FILTERS = ("none", "single", "ha", "hpa")
REFERENCES = ("original_mean", "group_mean", "same_seed")

__all__ = ["Craft", "CraftConfig", "composite_scores", "select"]


@dataclass(frozen=True)
class CraftConfig(PoolConfig):
    filter: str = setting("hpa", "Composite Reward Filtering level: none, single, ha or hpa")
    reference: str = setting("original_mean", "what a candidate must beat: original_mean, group_mean or same_seed")
    budget: int = setting(100, "at most this many kept samples (best advantage first)")
    negatives: str = setting("drop", "candidates with advantage <= 0: drop or keep")
    weighting: str = setting("advantage", "loss weights: advantage (normalised to mean 1) or uniform (plain SFT)")
    condition: str = setting("original", "train on the original or the expanded prompt")
    reg_weight: float = setting(0.0, "weight of matching the starting model's prediction (0: off)")
    rounds: int = setting(1, "rounds of candidates -> filter -> training with the updated model")

    def __post_init__(self) -> None:
        super().__post_init__()
        checks = [
            (self.filter in FILTERS, f"filter must be one of {', '.join(FILTERS)}"),
            (self.reference in REFERENCES, f"reference must be one of {', '.join(REFERENCES)}"),
            (self.negatives in ("drop", "keep"), "negatives must be drop or keep"),
            (self.weighting in ("advantage", "uniform"), "weighting must be advantage or uniform"),
            (self.condition in ("original", "expanded"), "condition must be original or expanded"),
            (self.budget >= 1 and self.rounds >= 1, "budget and rounds must be >= 1"),
            (self.reg_weight >= 0, "reg_weight must be >= 0"),
            (
                self.budget <= self.candidates(),
                f"budget {self.budget} is larger than the pool ({self.candidates()} candidates = "
                "pool_size x (1 + expansions) x k); lower method.budget or raise method.pool_size",
            ),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)


class Craft(TrainableMethod):
    name = "craft"
    version = pool_method_version("2")  # its own version, then the pool's (train/pool.py POOL_VERSION)
    description = "CRAFT: composite-reward-filtered, advantage-weighted fine-tuning on ~100 own samples"
    Config = CraftConfig
    number_fields: ClassVar[tuple[str, ...]] = ("weight",)
    budget_field: ClassVar[str] = "budget"  # what `craft-bench sweep --budgets` sets: kept samples
    reference: ClassVar[bool] = True  # sweep's default --reference: compute to match CRAFT
    # Paper defaults (arXiv 2603.18991): SDXL full fine-tuning, AdamW 5e-5, batch 128, 200 steps; SD1.5 120
    # steps. Mini: the mini world's training preset (craft_bench/mini/world.py), chosen by the ablation in
    # docs/methods.md.
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "sdxl": {"lr": 5e-5, "steps": 200, "batch_size": 128, "lora_rank": 0},
        "sd15": {"lr": 5e-5, "steps": 120, "batch_size": 128, "lora_rank": 0},
    }

    @property
    def needs_reference(self) -> bool:  # type: ignore[override]
        return self.config.reg_weight > 0

    # ---------------------------------------------------------------- rounds
    def prepare(self, base: Checkpoint, ctx: RunContext) -> Checkpoint:
        from craft_bench.train.method import train_checkpoint

        current, infos = base, []
        for _ in range(self.config.rounds):
            current = train_checkpoint(self, current, ctx)
            infos.append(current.train_info)
        if len(infos) > 1:
            total = {
                k: sum(i.get(k, 0) for i in infos)
                for k in ("samples_used", "steps", "images_generated", "reward_calls")
            }
            current.train_info = {
                **infos[-1],
                **total,
                "train_s": round(sum(i["train_s"] for i in infos), 3),
                "rounds": infos,
            }
            current.train_s = current.train_info["train_s"]
        return current

    # ---------------------------------------------------------------- data
    def build_data(self, base: Checkpoint, ctx: RunContext) -> TrainingData:
        import time

        from craft_bench.train.pool import build_method_pool, pool_accounting

        pool = build_method_pool(self.config, base, ctx)
        t = time.perf_counter()
        kept, stats = self.select(pool)
        filter_s = time.perf_counter() - t
        examples = [
            {
                "image": c.image_path,
                "prompt": c.original if self.config.condition == "original" else c.text,
                "weight": w,
                "image_key": c.image_key,
                "advantage": a,
                "reward": {n: float(v) for n, v in c.scores.items()},
            }
            for c, w, a in kept
        ]
        return TrainingData(
            examples,
            {
                **pool_accounting(pool, filter_s=filter_s),
                "pool": {"prompts": len(pool.prompts), "candidates": len(pool.candidates), **stats},
            },
        )

    def select(self, pool: Any) -> tuple[list[tuple[Any, float, float]], dict[str, Any]]:
        """Composite Reward Filtering and advantages (a variant overrides this to change what is kept)."""
        return select(pool, self.config)

    # ---------------------------------------------------------------- loss
    def loss(self, batch: dict[str, Any], model: Any) -> tuple[Any, dict[str, float]]:
        d = denoise(model, batch["image"], batch["noise"], batch["timesteps"], batch["cond"])
        err = d.error
        weighted = (batch["weight"] * batch["snr_weight"] * err).mean()
        logs = {"mse": float(err.mean().detach())}
        loss = weighted
        if self.config.reg_weight > 0:
            with model.reference():
                ref = model.predict(d.noisy, batch["timesteps"], batch["cond"])
            reg = ((d.pred.float() - ref.float()) ** 2).mean()
            loss = loss + self.config.reg_weight * reg
            logs["reg"] = float(reg.detach())
        return loss, logs


def select(pool: Any, config: CraftConfig, eps: float = 1e-6) -> tuple[list[tuple[Any, float, float]], dict[str, Any]]:
    """The kept candidates with their loss weight and advantage, best advantage first, and filter statistics."""
    names = list(pool.spec.rewards)
    comp = composite_scores(pool)
    cands = pool.candidates
    groups: dict[int, list[int]] = {}
    for i, c in enumerate(cands):
        groups.setdefault(c.group, []).append(i)
    advantage = np.zeros(len(cands))
    passes = np.zeros(len(cands), dtype=bool)
    roles = {role: next((n for n in names if n in members), None) for role, members in ROLES.items()}
    level = [n for n in (roles["hps"], roles["aes"]) if n] if config.filter == "ha" else names
    for members in groups.values():
        r = comp[members]
        advantage[members] = (r - r.mean()) / (r.std() + eps)
        originals = [i for i in members if not cands[i].expanded]
        for i in members:
            better = []
            for n in level:
                if config.reference == "original_mean":
                    ref = np.mean([cands[j].scores[n] for j in originals])
                elif config.reference == "group_mean":
                    ref = np.mean([cands[j].scores[n] for j in members])
                else:  # same_seed: the original prompt's candidate with the same index
                    ref = next(cands[j].scores[n] for j in originals if cands[j].index == cands[i].index)
                better.append(cands[i].scores[n] > ref)
            passes[i] = config.filter == "none" or (any(better) if config.filter == "single" else all(better))
    eligible = [i for i in range(len(cands)) if passes[i] and (config.negatives == "keep" or advantage[i] > 0)]
    eligible.sort(key=lambda i: -advantage[i])
    kept = eligible[: config.budget]
    if config.weighting == "advantage":
        w = advantage[kept]
        w = w / (np.abs(w).mean() + eps) if len(kept) else w
    else:
        w = np.ones(len(kept))
    stats = {
        "passed_filter": int(passes.sum()),
        "eligible": len(eligible),
        "kept": len(kept),
        "kept_from_expanded": int(sum(cands[i].expanded for i in kept)),
        "kept_groups": len({cands[i].group for i in kept}),
        "reward_means_all": {n: float(np.mean([c.scores[n] for c in cands])) for n in names},
        "reward_means_kept": {n: float(np.mean([cands[i].scores[n] for i in kept])) if kept else None for n in names},
        "advantage_kept_mean": float(np.mean(advantage[kept])) if kept else None,
    }
    return [(cands[i], float(wi), float(advantage[i])) for i, wi in zip(kept, w)], stats
