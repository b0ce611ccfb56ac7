"""Diffusion-DPO (Wallace et al. 2023, arXiv 2311.12908; SalesforceAIResearch/DiffusionDPO train.py).

For a pair (x_w preferred, x_l rejected) sharing the noise eps and the timestep t, with err(x) the per-image mean
squared error of the model's prediction for x noised at t (train.py:
``(model_pred - target).pow(2).mean(dim=[1,2,3])``):

    d_theta = err_theta(x_w) - err_theta(x_l)          d_ref = err_ref(x_w) - err_ref(x_l)
    z = -0.5 * beta * (d_theta - d_ref)                 loss = -log sigmoid(z)   (mean over pairs)

train.py: ``scale_term = -0.5 * args.beta_dpo``, ``inside_term = scale_term * (model_diff - ref_diff)``,
``loss = -1 * F.logsigmoid(inside_term).mean()``; beta = ``--beta_dpo`` 5000 (its default, and both launchers,
launchers/sdxl.sh and sd15.sh). The reference is the frozen starting model (``with model.reference():``: under LoRA
the same UNet with its adapter disabled, not a second copy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from craft_bench.spec import setting
from craft_bench.train.pairs import PairConfig, PairMethod, dpo_logit, pair_errors
from craft_bench.train.pool import pool_method_version

__all__ = ["DiffusionDPO", "DiffusionDPOConfig", "DiffusionDPORandom", "DiffusionDPORandomConfig", "dpo_logit"]


@dataclass(frozen=True)
class DiffusionDPOConfig(PairConfig):
    beta: float = setting(5000.0, "DPO inverse temperature beta (train.py --beta_dpo; 5000 for SDXL and SD1.5)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.beta > 0:
            raise ValueError("beta must be > 0")


class DiffusionDPO(PairMethod):
    name = "diff-dpo"
    version = pool_method_version("2")  # its own version, then the pool's (train/pool.py POOL_VERSION)
    description = "Diffusion-DPO on best-vs-worst pairs of the shared candidate pool (or a preference file)"
    Config = DiffusionDPOConfig
    needs_reference: ClassVar[bool] = True
    # launchers/sdxl.sh, sd15.sh: full UNet, 2000 steps, batch 1 x 128 accumulation per GPU ("Paper used 2048"),
    # lr 1e-8 with --scale_lr (x batch) = 2.048e-5 at batch 2048, constant after a 200 (SDXL) / 500 (SD1.5) step
    # warmup (set method.warmup to match). Mini: the world's preset (CRAFT's steps, batch and rank) at the paper's
    # effective rate.
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "sdxl": {"lr": 2.048e-5, "steps": 2000, "batch_size": 2048, "lora_rank": 0},
        "sd15": {"lr": 2.048e-5, "steps": 2000, "batch_size": 2048, "lora_rank": 0},
        "mini": {"lr": 2.048e-5},
    }

    def logit(self, err_w: Any, err_l: Any, ref_w: Any, ref_l: Any) -> Any:
        return dpo_logit(err_w, err_l, ref_w, ref_l, self.config.beta)

    def loss(self, batch: dict[str, Any], model: Any) -> tuple[Any, dict[str, float]]:
        import torch.nn.functional as F

        err_w, err_l = pair_errors(model, batch)
        with model.reference():
            ref_w, ref_l = pair_errors(model, batch)
        z = self.logit(err_w, err_l, ref_w, ref_l)
        loss = -F.logsigmoid(z).mean()
        return loss, {
            "mse_w": float(err_w.mean().detach()),
            "mse_l": float(err_l.mean().detach()),
            "ref_mse": float(((ref_w + ref_l) / 2).mean()),
            "implicit_acc": float((z > 0).float().mean()),
        }


@dataclass(frozen=True)
class DiffusionDPORandomConfig(DiffusionDPOConfig):
    labels: str = setting(
        "random", "pool pairs' labels: random (each pair's winner a seeded coin flip; this control's point) or reward"
    )


class DiffusionDPORandom(DiffusionDPO):
    """Control (RankDPO's random-label arm): Diffusion-DPO on the same pool pairs with each pair's winner a coin
    flip. A gain it shares with ``diff-dpo`` comes from training on curated own images, not from the preferences."""

    name = "dpo-random"
    description = "control: Diffusion-DPO on the same pool pairs with random labels (each winner a coin flip)"
    Config = DiffusionDPORandomConfig
