"""GRPO for diffusion models: online group RL on the shared loop, the positive control beside CRAFT.

CRAFT (arXiv 2603.18991) claims its filtered, advantage-weighted SFT optimises a lower bound of group RL; this is the
group RL itself, as DDPO (Black et al. 2023, arXiv 2305.13301), Flow-GRPO (Liu et al. 2025, arXiv 2505.05470) and
DanceGRPO (Xue et al. 2025, arXiv 2505.07818) train SD-style models. Iteration k (docs/methods.md has every equation
with its source line, and every default's source):

1. P prompts (``prompts_per_iter``) from the method's prompt pool, the pool methods' settings and training prompt seed,
   in per-epoch orders seeded by (seed, epoch), so every prompt is used once per pass over the pool;
2. G rollouts (``group_size``) per prompt with the current weights: stochastic DDIM (eta > 0) with each step's
   log-probability under the guided policy (``craft_bench.train.rollout``); trajectory j's noise from (seed, k, j);
3. the decoded images scored by the configured rewards through the shared reward cache (key: a digest of the image
   bytes and the prompt), combined into CRAFT's composite R (the mean of the rewards' z-scores over the iteration's
   images; with one reward an affine map of it, which step 4 removes);
4. group-normalised advantages A = (R - mean_g R) / (std_g R + 1e-4) (Flow-GRPO's stat_tracking.py);
5. ``inner_steps`` optimiser steps: each trajectory trains on S = int(timestep_fraction x T) of its steps (drawn per
   trajectory from (seed, k)), the trajectories split into ``inner_steps`` minibatches (order from (seed, k)); a
   step's loss over its (trajectory, timestep) samples is the clipped importance-ratio objective plus the KL to the
   starting model (under LoRA the adapter disabled, as for Diffusion-DPO; a frozen copy under full fine-tuning):

       r = exp(log pi_theta(x_prev | x_t) - log pi_old(x_prev | x_t))
       A clipped to [-adv_clip_max, adv_clip_max]
       L = mean( max(-A r, -A clip(r, 1 - eps, 1 + eps)) ) + beta mean( KL_t(pi_theta || pi_ref) )

The iteration's rollout buffer is part of the loop's checkpoint, so a killed run resumes mid-iteration to the weights
of an uninterrupted one. With several processes each makes and scores whole rollout batches r, r + N, ... (the batches
one process would make) and all gather the buffer; training is the loop's DDP.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from craft_bench.api import Checkpoint, RunContext
from craft_bench.errors import UserError
from craft_bench.spec import setting
from craft_bench.train.loop import Task
from craft_bench.train.method import TrainableMethod, TrainingData
from craft_bench.train.pool import PromptPoolConfig, pool_method_version

ADV_EPS = 1e-4  # Flow-GRPO flow_grpo/stat_tracking.py: std + 1e-4


@dataclass(frozen=True)
class GRPOConfig(PromptPoolConfig):
    derived_fields: ClassVar[tuple[str, ...]] = ("steps", "batch_size")  # from the budget; a sweep does not set them
    images: int | None = setting(
        None,
        "images generated in total, the training budget (default: the world's preset); "
        "iterations = images / (prompts_per_iter x group_size)",
    )
    prompts_per_iter: int = setting(8, "prompts per iteration")
    group_size: int = setting(8, "G: rollouts per prompt and iteration (the group advantages are normalised over)")
    inner_steps: int = setting(2, "optimiser steps per iteration (its trajectories split into this many minibatches)")
    timestep_fraction: float = setting(
        0.6, "share of each trajectory's denoising steps trained on (drawn per trajectory)"
    )
    clip_range: float = setting(1e-4, "PPO clip range eps of the importance ratio")
    adv_clip_max: float = setting(5.0, "advantages are clipped to [-adv_clip_max, adv_clip_max]")
    kl_beta: float = setting(0.04, "weight beta of the KL to the starting model (0: no KL term)")
    eta: float = setting(1.0, "DDIM eta of the rollouts (> 0: each step is a Gaussian with a log-probability)")
    sample_steps: int | None = setting(None, "denoising steps of a rollout (default: the run sampler's steps)")
    guidance: float | None = setting(
        None, "guidance scale of the rollouts and of the trained policy (default: the sampler's)"
    )
    same_noise: bool = setting(
        True,
        "a prompt's G rollouts start from the same x_T, so their rewards differ by the policy's "
        "own steps only (DanceGRPO --init_same_noise; false: each its own x_T)",
    )

    def __post_init__(self) -> None:
        import math

        super().__post_init__()
        per_iter = self.prompts_per_iter * self.group_size
        checks = [
            (
                self.steps is None and self.batch_size is None,
                "grpo sets its optimiser steps and batch from method.images, prompts_per_iter, group_size, "
                "inner_steps and "
                "timestep_fraction; drop method.steps and method.batch_size",
            ),
            (self.prompts_per_iter >= 1 and self.group_size >= 2, "prompts_per_iter must be >= 1 and group_size >= 2"),
            (
                self.inner_steps >= 1 and per_iter % self.inner_steps == 0,
                f"inner_steps must divide prompts_per_iter x group_size ({per_iter})",
            ),
            (0 < self.timestep_fraction <= 1, "timestep_fraction must be in (0, 1]"),
            (self.clip_range > 0 and self.adv_clip_max > 0, "clip_range and adv_clip_max must be > 0"),
            (self.kl_beta >= 0 and math.isfinite(self.kl_beta), "kl_beta must be >= 0"),
            (
                self.eta > 0 and math.isfinite(self.eta),
                "eta must be > 0 (eta 0 is deterministic DDIM: no policy to train)",
            ),
            (self.sample_steps is None or self.sample_steps >= 1, "sample_steps must be >= 1"),
            (self.guidance is None or (math.isfinite(self.guidance) and self.guidance >= 0), "guidance must be >= 0"),
            (
                self.images is None or (self.images >= per_iter and self.images % per_iter == 0),
                f"images must be a positive multiple of prompts_per_iter x group_size ({per_iter}), e.g. "
                f"{max(per_iter, (self.images or 0) // per_iter * per_iter)}",
            ),
            (
                self.cond_dropout == 0 and self.snr_gamma == 0 and self.timestep_min == 0,
                "grpo trains its rollouts' own steps: cond_dropout, snr_gamma and timestep_min do not apply",
            ),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)

    def train_steps(self, sample_steps: int) -> int:
        """S: the steps of each trajectory trained on (DDPO: ``int(num_steps * timestep_fraction)``, at least 1)."""
        return max(1, int(sample_steps * self.timestep_fraction))


# --------------------------------------------------------------------------- the equations


def group_advantages(scores: np.ndarray, group_size: int, eps: float = ADV_EPS) -> np.ndarray:
    """A_i = (R_i - mean_g R) / (std_g R + eps) over consecutive groups of ``group_size`` (population std)."""
    r = np.asarray(scores, dtype=np.float64).reshape(-1, group_size)
    return ((r - r.mean(axis=1, keepdims=True)) / (r.std(axis=1, keepdims=True) + eps)).reshape(-1)


def clipped_objective(
    log_prob: Any, old_log_prob: Any, advantages: Any, clip_range: float, adv_clip_max: float
) -> tuple[Any, dict[str, float]]:
    """mean(max(-A r, -A clip(r, 1 - eps, 1 + eps))), r = exp(log_prob - old_log_prob), A clipped to +-adv_clip_max
    (DDPO's and Flow-GRPO's ``unclipped_loss`` / ``clipped_loss``), with the ratio's statistics."""
    import torch

    a = advantages.clamp(-adv_clip_max, adv_clip_max)
    ratio = torch.exp(log_prob - old_log_prob)
    loss = torch.maximum(-a * ratio, -a * ratio.clamp(1 - clip_range, 1 + clip_range)).mean()
    d = (log_prob - old_log_prob).detach()
    return loss, {
        "clipfrac": float(((ratio.detach() - 1).abs() > clip_range).float().mean()),
        "approx_kl": float(0.5 * (d**2).mean()),
        "ratio": float(ratio.detach().mean()),
    }


# --------------------------------------------------------------------------- the method


class GRPO(TrainableMethod):
    name = "grpo"
    version = pool_method_version("1", born="2")  # its own, then the pool's once the pool moves past version 2
    description = "GRPO: online group RL (stochastic DDIM rollouts, group advantages, clipped ratio + KL) on any reward"
    Config = GRPOConfig
    online: ClassVar[bool] = True
    budget_field: ClassVar[str] = "images"  # what `craft-bench sweep --budgets` sets: images generated in training
    # SDXL: a Flow-GRPO fork's config/sdxl.py (LoRA, lr 1e-4); SD1.5: ddpo-pytorch config/base.py (LoRA, lr 1e-4). Their
    # LoRA ranks and image budgets are ours. Mini: full UNet at 1e-4 (the measurements in docs/methods.md, development
    # seed) and 2048 images, about 10 minutes on 2 idle CPU cores.
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "sdxl": {"lr": 1e-4, "lora_rank": 32, "images": 8192},
        "sd15": {"lr": 1e-4, "lora_rank": 4, "images": 8192},
        "mini": {"lr": 1e-4, "lora_rank": 0, "images": 2048},
    }

    @property
    def needs_reference(self) -> bool:  # type: ignore[override]
        return self.config.kl_beta > 0

    # ---------------------------------------------------------------- settings
    def images_budget(self, world: str) -> int:
        images = self.config.images if self.config.images is not None else self.presets.get(world, {}).get("images")
        if images is None:
            raise UserError(f"grpo has no image budget preset for {world} models; set --set method.images=N")
        per_iter = self.config.prompts_per_iter * self.config.group_size
        if images < per_iter or images % per_iter:
            raise UserError(
                f"grpo: images {images} is not a positive multiple of prompts_per_iter x group_size ({per_iter})"
            )
        return int(images)

    def plan(self, base: Checkpoint, ctx: RunContext) -> dict[str, Any]:
        """What the run's settings and sampler make of this config: world, iterations, rollout steps S and T,
        guidance."""
        c = self.config
        world = ctx.world.name
        images = self.images_budget(world)
        sample_steps = c.sample_steps or ctx.spec.sampler.steps
        per_iter = c.prompts_per_iter * c.group_size
        return {
            "world": world,
            "images": images,
            "iterations": images // per_iter,
            "sample_steps": sample_steps,
            "train_steps": c.train_steps(sample_steps),
            "guidance": float(c.guidance if c.guidance is not None else ctx.spec.sampler.guidance_scale),
        }

    def prepare(self, base: Checkpoint, ctx: RunContext) -> Checkpoint:
        from craft_bench.train.method import settings_for, train_checkpoint

        c, p = self.config, self.plan(base, ctx)
        per_step = c.prompts_per_iter * c.group_size // c.inner_steps * p["train_steps"]
        settings = settings_for(self, ctx.world, steps=p["iterations"] * c.inner_steps, batch_size=per_step)
        return train_checkpoint(self, base, ctx, settings=settings)

    # ---------------------------------------------------------------- data: the prompts
    def build_data(self, base: Checkpoint, ctx: RunContext) -> TrainingData:
        from craft_bench.train.pool import POOL_VERSION, PoolSpec, pool_prompts

        t = time.perf_counter()
        c = self.config
        spec = PoolSpec(
            prompts=c.pool,
            size=c.pool_size,
            prompt_seed=c.prompt_seed,
            k=c.group_size,
            rewards=c.reward_names(ctx.world),
            seed=ctx.seed,
            version=POOL_VERSION,
        )
        prompts, _ = pool_prompts(spec, ctx.world)
        return TrainingData(
            [{"prompt": p} for p in prompts],
            {"rewards": list(spec.rewards), "timing": {"prompts_s": time.perf_counter() - t}},
        )

    def make_task(
        self, model: Any, data: TrainingData, base: Checkpoint, ctx: RunContext, settings: dict[str, Any]
    ) -> Task:
        return GRPOTask(
            self,
            model,
            [e["prompt"] for e in data.examples],
            list(data.accounting["rewards"]),
            self.plan(base, ctx),
            ctx,
        )

    # ---------------------------------------------------------------- advantages and loss
    def advantages(self, scores: dict[str, np.ndarray]) -> np.ndarray:
        """Group-normalised advantages of the iteration's composite score (a variant overrides this)."""
        from craft_bench.train.pool import composite

        return group_advantages(composite(scores), self.config.group_size)

    def loss(self, batch: dict[str, Any], model: Any) -> tuple[Any, dict[str, float]]:
        from craft_bench.train.rollout import guided_output, log_prob, step_kl, step_mean

        c = self.config
        w = float(batch["guidance"][0])
        x_t, t, sigma = batch["x_t"], batch["timesteps"], batch["sigma"]
        out = guided_output(model, x_t, t, batch["cond"], batch["uncond"], w)
        mean = step_mean(out.float(), x_t, batch["a_t"], batch["a_prev"], sigma, model.prediction_type)
        lp = log_prob(batch["x_prev"], mean, sigma)
        loss, logs = clipped_objective(lp, batch["old_log_prob"], batch["advantage"], c.clip_range, c.adv_clip_max)
        logs["policy_loss"] = float(loss.detach())
        if c.kl_beta > 0:
            with model.reference():
                ref = guided_output(model, x_t, t, batch["cond"], batch["uncond"], w)
            kl = step_kl(
                mean, step_mean(ref.float(), x_t, batch["a_t"], batch["a_prev"], sigma, model.prediction_type), sigma
            ).mean()
            loss = loss + c.kl_beta * kl
            logs["kl"] = float(kl.detach())
        return loss, logs


# --------------------------------------------------------------------------- the loop task


def image_digest(image: np.ndarray) -> str:
    """The reward cache's key of an unsaved rollout image: sha256 of its shape and uint8 bytes."""
    return hashlib.sha256(f"{image.shape}".encode() + np.ascontiguousarray(image).tobytes()).hexdigest()


class GRPOTask(Task):
    """The shared loop's task: step s belongs to iteration s // inner_steps; the first step of an iteration samples
    and scores its rollouts (``collect``), every step trains on its minibatch of (trajectory, timestep) samples."""

    name = "grpo"

    def __init__(
        self, method: GRPO, model: Any, prompts: list[str], rewards: list[str], plan: dict[str, Any], ctx: RunContext
    ) -> None:
        import torch

        from craft_bench.parallel import shard_from_env
        from craft_bench.rewards.composite import CompositeScorer
        from craft_bench.train.diffusion import EncodingCache
        from craft_bench.train.rollout import DDIMSchedule

        c = method.config
        self.method, self.model, self.prompts, self.rewards, self.ctx = method, model, prompts, rewards, ctx
        self.seed, self.P, self.G = ctx.seed, c.prompts_per_iter, c.group_size
        self.B, self.inner = self.P * self.G, c.inner_steps
        self.guidance, self.S, self.same_noise = plan["guidance"], plan["train_steps"], c.same_noise
        self.schedule = DDIMSchedule.from_config(model.scheduler.config, plan["sample_steps"], c.eta)
        # The rewards load first: an unknown reward or missing weights stop the run before any rollout.
        self.scorer = CompositeScorer.load(rewards, device=ctx.device)
        rows = EncodingCache(ctx.store.root, model).embeddings(prompts)
        self.cond = {k: torch.stack([r[k] for r in rows]) for k in rows[0]}
        self.empty = model.empty_condition()
        model.release_text_encoders()
        sampler = ctx.spec.sampler
        factor = 2 ** (len(model.vae.config.block_out_channels) - 1)
        self.shape = (int(model.unet.config.in_channels), sampler.height // factor, sampler.width // factor)
        self.rollout_batch = max(1, int(sampler.batch_size))
        self.shard = shard_from_env(ctx.device)
        self.buffer: dict[str, Any] | None = None
        self.counters = {"sampling_s": 0.0, "reward_s": 0.0, "reward_evaluations_run": 0.0, "iterations": 0.0}

    # ---------------------------------------------------------------- the loop's interface
    def modules(self) -> dict[str, Any]:
        return {"unet": self.model.unet}

    def bind(self, prepared: dict[str, Any]) -> None:
        self.prepared = prepared
        self.model.trained_unet = prepared["unet"]

    def state_tensors(self) -> dict[str, Any]:
        import torch

        out = {f"unet.{k}": v for k, v in self.model.trainable_state().items()}
        out["grpo.counters"] = torch.tensor([self.counters[k] for k in sorted(self.counters)], dtype=torch.float64)
        if self.buffer is not None:
            out.update({f"grpo.buffer.{k}": v for k, v in self.buffer.items()})
        return out

    def load_state_tensors(self, tensors: dict[str, Any]) -> None:
        self.model.load_trainable_state({k[5:]: v for k, v in tensors.items() if k.startswith("unet.")})
        if "grpo.counters" in tensors:
            self.counters = dict(zip(sorted(self.counters), tensors["grpo.counters"].tolist()))
        buf = {k[len("grpo.buffer.") :]: v for k, v in tensors.items() if k.startswith("grpo.buffer.")}
        self.buffer = buf or None

    def batch(self, step: int) -> dict[str, Any]:
        import torch

        k, part = divmod(step, self.inner)
        if self.buffer is None or int(self.buffer["iteration"]) != k:
            self.collect(k)
        b = self.buffer
        per = self.B // self.inner
        rows = b["order"][part * per : (part + 1) * per]
        j = rows.repeat_interleave(self.S)
        i = b["train_steps"][rows].reshape(-1)
        a_t = torch.tensor(self.schedule.alphas, dtype=torch.float32)[i]
        a_prev = torch.tensor(self.schedule.alphas_prev, dtype=torch.float32)[i]
        prompt = b["prompt_index"][j]
        dev = self.model.device
        n = len(j)
        return {
            "x_t": b["latents"][j, i].to(dev),
            "x_prev": b["latents"][j, i + 1].to(dev),
            "timesteps": torch.tensor(self.schedule.timesteps, dtype=torch.long)[i].to(dev),
            "a_t": a_t.to(dev),
            "a_prev": a_prev.to(dev),
            "sigma": self.schedule.sigma(a_t, a_prev).to(dev),
            "old_log_prob": b["log_probs"][j, i].to(dev),
            "advantage": b["advantages"][j].float().to(dev),
            "cond": {key: v[prompt].to(dev) for key, v in self.cond.items()},
            "uncond": {key: v.unsqueeze(0).expand(n, *v.shape).to(dev) for key, v in self.empty.items()},
            "guidance": torch.full((n,), self.guidance),
        }

    def loss(self, batch: dict[str, Any], step: int) -> tuple[Any, dict[str, float]]:
        loss, logs = self.method.loss(batch, self.model)
        logs["adv_abs"] = float(batch["advantage"].abs().mean())
        return loss, {**logs, **self.iteration_logs()}

    # ---------------------------------------------------------------- an iteration's rollouts
    def prompt_indices(self, k: int) -> np.ndarray:
        """The P prompts of iteration k: consecutive slices of per-epoch permutations of the pool (seeded by (seed,
        epoch))."""
        n, first, last = len(self.prompts), k * self.P, (k + 1) * self.P
        out = []
        for epoch in range(first // n, (last - 1) // n + 1):
            perm = np.random.default_rng([self.seed, 0x6790, epoch]).permutation(n)
            out.append(perm[max(first - epoch * n, 0) : min(last - epoch * n, n)])
        return np.concatenate(out)

    def collect(self, k: int) -> None:
        """Sample, decode and score iteration k's B = P x G rollouts with the current weights; advantages; the
        iteration's training steps per trajectory and minibatch order (all from (seed, k))."""
        import torch
        from PIL import Image

        from craft_bench.train.pool import cached_scores
        from craft_bench.train.rollout import rollout, trajectory_generator

        t0 = time.perf_counter()
        slot_prompt = np.repeat(self.prompt_indices(k), self.G)
        batches = [list(range(s, min(s + self.rollout_batch, self.B))) for s in range(0, self.B, self.rollout_batch)]
        mine = batches if self.shard is None else self.shard.mine(batches)
        dev = self.model.device
        made = []
        for idx in mine:
            cond = {key: v[slot_prompt[idx]].to(dev) for key, v in self.cond.items()}
            uncond = {key: v.unsqueeze(0).expand(len(idx), *v.shape).to(dev) for key, v in self.empty.items()}
            gens = [trajectory_generator(self.seed, k, j) for j in idx]
            init = [trajectory_generator(self.seed, k, "init", j // self.G) for j in idx] if self.same_noise else None
            r = rollout(self.model, cond, uncond, self.schedule, self.guidance, gens, self.shape, init)
            made.append((idx, r, self.model.decode_images(r.latents[:, -1])))
        t1 = time.perf_counter()
        entries = [
            (image_digest(im), Image.fromarray(im), self.prompts[slot_prompt[j]])
            for idx, _, images in made
            for j, im in zip(idx, images)
        ]
        scores, evaluations = (
            cached_scores(entries, self.rewards, self.ctx.store.root, self.ctx.device, self.scorer)
            if entries
            else ({name: [] for name in self.rewards}, 0)
        )
        t2 = time.perf_counter()
        local = {
            "slots": [j for idx, _, _ in made for j in idx],
            "latents": torch.cat([r.latents for _, r, _ in made]) if made else None,
            "log_probs": torch.cat([r.log_probs for _, r, _ in made]) if made else None,
            "scores": {name: np.asarray(v) for name, v in scores.items()},
            "evaluations": evaluations,
        }
        parts = [local] if self.shard is None else self.shard.gather(local)
        order = np.argsort(np.concatenate([p["slots"] for p in parts]))
        latents = torch.cat([p["latents"] for p in parts if p["latents"] is not None])[order]
        log_probs = torch.cat([p["log_probs"] for p in parts if p["log_probs"] is not None])[order]
        scores = {name: np.concatenate([p["scores"][name] for p in parts])[order] for name in self.rewards}
        advantages = self.method.advantages(scores)
        rng = np.random.default_rng([self.seed, 0x7157, k])
        T = len(self.schedule)
        train_steps = np.stack([rng.permutation(T)[: self.S] for _ in range(self.B)])
        self.buffer = {
            "iteration": torch.tensor([k]),
            "latents": latents,
            "log_probs": log_probs,
            "advantages": torch.from_numpy(advantages),
            "prompt_index": torch.from_numpy(slot_prompt),
            "train_steps": torch.from_numpy(train_steps),
            "order": torch.from_numpy(rng.permutation(self.B)),
            "scores": torch.from_numpy(np.stack([scores[n] for n in self.rewards], axis=1)),
        }
        self.counters["sampling_s"] += (t1 - t0) + (time.perf_counter() - t2)
        self.counters["reward_s"] += t2 - t1
        self.counters["reward_evaluations_run"] += sum(p["evaluations"] for p in parts)
        self.counters["iterations"] = k + 1

    def iteration_logs(self) -> dict[str, float]:
        """The reward curve: the iteration's mean reward (per reward), the spread the groups have to learn from."""
        b = self.buffer
        scores = b["scores"].double()
        k = int(b["iteration"])
        logs = {"iteration": float(k + 1), "images": float((k + 1) * self.B)}
        for n, name in enumerate(self.rewards):
            logs[f"reward/{name}"] = float(scores[:, n].mean())
        spread = scores.reshape(-1, self.G, len(self.rewards)).std(dim=1, unbiased=False)
        logs["flat_groups"] = float((spread.max(dim=1).values < 1e-9).double().mean())  # no signal to learn from
        return logs

    def accounting(self) -> dict[str, Any]:
        images = int(self.counters["iterations"]) * self.B
        timing = {"sampling_s": self.counters["sampling_s"], "reward_s": self.counters["reward_s"]}
        return {
            "timing": timing,
            "in_loop_s": timing["sampling_s"] + timing["reward_s"],
            "images_generated": images,
            "reward_calls": images * len(self.rewards),
            "samples_used": images,
            "reward_evaluations_run": int(self.counters["reward_evaluations_run"]),
            "iterations": int(self.counters["iterations"]),
            "rollout": {
                "prompts_per_iter": self.P,
                "group_size": self.G,
                "sample_steps": len(self.schedule),
                "train_steps": self.S,
                "guidance": self.guidance,
                "eta": self.schedule.eta,
                "same_noise": self.same_noise,
            },
        }
