"""SmPO: smoothed preference optimisation via ReNoise inversion (Lu et al., ICML 2025, arXiv 2506.02698;
JaydenLyh/SmPO train.py and preprocessing.py).

Two changes to Diffusion-DPO (methods/diff_dpo.py; its logit is ``train.pairs.dpo_logit``), both from train.py:

1. A soft preference instead of a hard label. Each image's score s (PickScore in the paper) is min-max normalised,
   n = (s - min) / (max - min) with the dataset constants min = 0.11543526500463486, max = 0.28201571106910706 (its
   unscaled PickScore cosine), and p_w = exp(n_w) / (exp(n_w) + exp(n_l)). The DPO logit is scaled by it:
       z = -0.5 * beta * (2 p_w - 1) * 10 * (d_theta - d_ref)                loss = -log sigmoid(z)
   (``scale_term = -0.5 * args.beta_dpo * (2*batch['probs'][0]-1)*10``), beta 5000 for SDXL, 2000 for SD1.5
   (examples/sdxl.sh, sd15.sh).
2. The noise is not drawn but estimated from the image's own trajectory: the clean latents of both images are
   DDIM-inverted with the model being trained (no gradients) through the inverse steps of a 10-step (SDXL) / 5-step
   (SD1.5) schedule that lie below the pair's timestep t, each step's noise prediction averaged with the prediction
   after a first inverse step (ReNoise); the inverted latent x_inv is then the noisy input at t and
   eps = (x_inv - sqrt(abar_t) x_0) / sqrt(1 - abar_t) the target, for the model and the reference alike.

Soft labels here come from the same scores every pool-based method uses: ``label=auto`` is PickScore with the code's
constants where PickScore is among the pool's rewards (real models; our reward reports 100 x the cosine, so the
constants are scaled by 100), else the pool's composite score (mini), min-max normalised over the pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from craft_bench.spec import setting
from craft_bench.train.diffusion import implied_noise
from craft_bench.train.pairs import PairConfig, PairMethod, dpo_logit, pair_errors
from craft_bench.train.pool import pool_method_version
from craft_bench.train.prefs import PICKSCORE_SCALE

# train.py's PickScore range over Pick-a-Pic v2 (unscaled cosine).
PICKSCORE_MIN, PICKSCORE_MAX = 0.11543526500463486, 0.28201571106910706


@dataclass(frozen=True)
class SmPOConfig(PairConfig):
    beta: float | None = setting(None, "DPO beta (default: 5000, SD1.5 2000; examples/*.sh --beta_dpo)")
    label: str = setting(
        "auto",
        "what the soft label is computed from: auto (pickscore where the pool has it, else "
        "composite), composite (the pool's composite score) or a reward of the pool",
    )
    label_scale: float = setting(10.0, "factor on (2 p_w - 1) (train.py: 10)")
    inversion_steps: int | None = setting(None, "DDIM inversion schedule (default: 10, SD1.5 5; train.py)")
    renoise: bool = setting(True, "average each inversion step's prediction with the one after a first step (train.py)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta is not None and not self.beta > 0:
            raise ValueError("beta must be > 0")
        if self.inversion_steps is not None and not 1 <= self.inversion_steps <= 1000:
            raise ValueError("inversion_steps must be in 1..1000")


def soft_label(n_w: Any, n_l: Any) -> Any:
    """p_w = exp(n_w) / (exp(n_w) + exp(n_l)) of normalised scores."""
    return 1.0 / (1.0 + np.exp(np.asarray(n_l, dtype=np.float64) - np.asarray(n_w, dtype=np.float64)))


class SmPO(PairMethod):
    name = "smpo"
    version = pool_method_version("2")  # its own version, then the pool's (train/pool.py POOL_VERSION)
    description = "SmPO: DPO with soft preferences from the same scores and DDIM-inversion (ReNoise) noise"
    Config = SmPOConfig
    number_fields: ClassVar[tuple[str, ...]] = ("p_w",)
    needs_reference: ClassVar[bool] = True
    file_scores: ClassVar[bool] = True
    # examples/sdxl.sh, sd15.sh: full UNet, 200 steps, 8 GPUs x 1 x 128 accumulation = batch 1024, lr 1e-8 with
    # --scale_lr = 1.024e-5, 100 warmup steps (set method.warmup to match); SD1.5 starts from an SFT UNet
    # (--unet_init), not reproduced. Mini: the world's preset (CRAFT's steps, batch and rank) at SmPO's rate.
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "sdxl": {"lr": 1.024e-5, "steps": 200, "batch_size": 1024, "lora_rank": 0},
        "sd15": {"lr": 1.024e-5, "steps": 200, "batch_size": 1024, "lora_rank": 0},
        "mini": {"lr": 1.024e-5},
    }

    def annotate(self, examples: list[dict[str, Any]], pool: Any) -> list[dict[str, Any]]:
        """Each pair's soft label p_w from the label scores of its two images."""
        from craft_bench.errors import UserError
        from craft_bench.train.pool import composite_scores

        names = list(pool.spec.rewards)
        label = self.config.label
        if label == "auto":
            label = "pickscore" if "pickscore" in names else "composite"
        if label == "composite":
            if not names:
                raise UserError(
                    "smpo needs scores for its soft labels: give the file score_0/score_1 columns or a pool"
                )
            values = composite_scores(pool)
            lo, hi = float(values.min()), float(values.max())
        elif label in names:
            values = np.array([c.scores[label] for c in pool.candidates], dtype=np.float64)
            lo, hi = (
                (PICKSCORE_SCALE * PICKSCORE_MIN, PICKSCORE_SCALE * PICKSCORE_MAX)
                if label == "pickscore"
                else (float(values.min()), float(values.max()))
            )
        else:
            raise UserError(
                f"method.label={label}: not a reward of the pool ({', '.join(names) or 'none'}); "
                "use auto, composite or one of them"
            )
        by_key = {c.image_key: float(v) for c, v in zip(pool.candidates, values)}
        span = (hi - lo) or 1.0
        for e in examples:
            n_w, n_l = (by_key[e["image_key_w"]] - lo) / span, (by_key[e["image_key_l"]] - lo) / span
            e["p_w"] = float(soft_label(n_w, n_l))
        return examples

    def loss(self, batch: dict[str, Any], model: Any) -> tuple[Any, dict[str, float]]:
        import torch
        import torch.nn.functional as F

        sd15 = model.family == "sd15"
        beta = self.config.beta if self.config.beta is not None else (2000.0 if sd15 else 5000.0)
        steps = self.config.inversion_steps or (5 if sd15 else 10)
        x0 = torch.cat([batch["image_w"], batch["image_l"]])
        t = batch["timesteps"].repeat(2)
        cond = {k: torch.cat([v, v]) for k, v in batch["cond"].items()}
        inverted = model.invert(x0, t, cond, steps, renoise=self.config.renoise)
        noise_w, noise_l = implied_noise(inverted, x0, model.alphas_cumprod, t).chunk(2)
        err_w, err_l = pair_errors(model, batch, noise_w, noise_l)
        with model.reference():
            ref_w, ref_l = pair_errors(model, batch, noise_w, noise_l)
        scale = (2 * batch["p_w"] - 1) * self.config.label_scale
        z = scale * dpo_logit(err_w, err_l, ref_w, ref_l, beta)
        loss = -F.logsigmoid(z).mean()
        return loss, {
            "mse_w": float(err_w.mean().detach()),
            "mse_l": float(err_l.mean().detach()),
            "implicit_acc": float((z > 0).float().mean()),
            "p_w": float(batch["p_w"].mean()),
        }
