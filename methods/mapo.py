"""MaPO: margin-aware preference optimisation without a reference model (Hong et al. 2024, arXiv 2406.06424;
mapo-t2i/mapo, utils.py ``compute_loss``).

With L_w, L_l the per-image mean squared errors of the pair (shared noise and timestep; train.py:
``noise = torch.randn_like(latents).chunk(2)[0].repeat(2, 1, 1, 1)``, ``timesteps ... .repeat(2)``):

    phi(L) = s L / (exp(s L) - 1)                      (s = ``--snr_value`` 0.5)
    margin = phi(L_w) - phi(L_l)
    loss = mean(L_w) - beta * mean(log sigmoid(T * margin))

with T = the scheduler's ``num_train_timesteps`` (1000; "by multiplying T to the inner term, we try to maximize the
margin throughout the overall denoising process") and beta = ``--beta_mapo`` 0.1 (args.py). No reference model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from craft_bench.spec import setting
from craft_bench.train.pairs import PairConfig, PairMethod, pair_errors
from craft_bench.train.pool import pool_method_version


@dataclass(frozen=True)
class MaPOConfig(PairConfig):
    beta: float = setting(0.1, "weight of the margin term (args.py --beta_mapo)")
    snr_value: float = setting(0.5, "s in phi(L) = s L / (exp(s L) - 1) (args.py --snr_value)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.beta >= 0 and self.snr_value > 0):
            raise ValueError("beta must be >= 0 and snr_value > 0")


def phi(err: Any, s: float) -> Any:
    """s L / (exp(s L) - 1), with its limit 1 at L = 0 (the reference divides by exp(sL) - 1 directly)."""
    import torch

    x = s * err
    small = x.abs() < 1e-6
    return torch.where(small, 1.0 - x / 2, x / torch.expm1(torch.where(small, torch.ones_like(x), x)))


def mapo_loss(err_w: Any, err_l: Any, beta: float, s: float, steps: int) -> tuple[Any, Any]:
    """(loss, margin) of MaPO for per-pair errors."""
    import torch.nn.functional as F

    margin = phi(err_w, s) - phi(err_l, s)
    return err_w.mean() - beta * F.logsigmoid(steps * margin).mean(), margin


class MaPO(PairMethod):
    name = "mapo"
    version = pool_method_version("2")  # its own version, then the pool's (train/pool.py POOL_VERSION)
    description = "MaPO: reference-free margin-aware preference optimisation on the same pairs"
    Config = MaPOConfig
    # README (SDXL; 8 GPUs x batch 8 x 2 accumulation = 128): full UNet, lr 1e-5 constant, no warmup, 2000 steps.
    # No SD1.5 recipe in the repository: set lr/steps/batch_size/lora_rank. Mini: the world's preset (CRAFT's steps,
    # batch and rank) at MaPO's rate.
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "sdxl": {"lr": 1e-5, "steps": 2000, "batch_size": 128, "lora_rank": 0},
        "mini": {"lr": 1e-5},
    }

    def loss(self, batch: dict[str, Any], model: Any) -> tuple[Any, dict[str, float]]:
        err_w, err_l = pair_errors(model, batch)
        loss, margin = mapo_loss(err_w, err_l, self.config.beta, self.config.snr_value, len(model.alphas_cumprod))
        return loss, {
            "mse_w": float(err_w.mean().detach()),
            "mse_l": float(err_l.mean().detach()),
            "margin": float(margin.mean().detach()),
            "win_rate": float((margin > 0).float().mean()),
        }
