"""Stochastic DDIM rollouts with per-step log-probabilities: the policy online RL on a diffusion model trains (GRPO;
DDPO is the same family), its math in one place.

DDIM with eta > 0 (Song et al. 2021, arXiv 2010.02502, eqs. 12 and 16) read as a policy, as DDPO formulates it (Black
et al. 2023, arXiv 2305.13301, Sec. 4.3: each denoising step is an isotropic Gaussian, so its log-density is exact).
With a_t = alphas_cumprod[t], a_prev that of the schedule's next (less noisy) timestep and the model's output at
(x_t, t), guided when w > 1 (eps_hat = eps_u + w (eps_c - eps_u), the diffusers pipelines' convention):

    x0_hat = (x_t - sqrt(1 - a_t) eps_hat) / sqrt(a_t)                                   (epsilon models)
    x0_hat = sqrt(a_t) x_t - sqrt(1 - a_t) v,   eps_hat = sqrt(a_t) v + sqrt(1 - a_t) x_t  (v-prediction)
    sigma_t^2 = eta^2 (1 - a_prev) / (1 - a_t) (1 - a_t / a_prev)                        (DDIM eq. 16)
    mu_t = sqrt(a_prev) x0_hat + sqrt(1 - a_prev - sigma_t^2) eps_hat                    (DDIM eq. 12)
    x_prev = mu_t + sigma_t z,   z ~ N(0, I)
    log pi(x_prev | x_t) = mean over latent dims of [ -(x_prev - mu_t)^2 / (2 sigma_t^2) - log sigma_t
                                                      - log sqrt(2 pi) ]

The mean over latent dimensions (not the sum) is DDPO's convention (ddpo-pytorch, ddpo_pytorch/diffusers_patch/
ddim_with_logprob.py: "mean along all but batch dimension"); it scales the log-ratio, not its sign. The KL between
the trained policy's step and the reference's, two Gaussians with the same sigma_t, is Flow-GRPO's (arXiv 2505.05470;
flow_grpo scripts/train_sd3.py:
``((prev_sample_mean - prev_sample_mean_ref) ** 2).mean(dim=(1,2,3)) / (2 * std_dev_t ** 2)``):

    KL_t = mean over latent dims of (mu_theta - mu_ref)^2 / (2 sigma_t^2)

The schedule is DDIM's, built from the model's own scheduler config (same betas, timestep spacing and offset) with
``clip_sample`` off (a latent is not an image) and ``set_alpha_to_one`` off, so the last step goes to a_0 (as the SD
DDIM config DDPO sampled with) and every step has sigma_t > 0. A step goes to the schedule's next timestep: for
leading and trailing spacing this is diffusers' ``DDIMScheduler.step`` exactly (tested).

Every trajectory draws its initial noise and each step's z from its own CPU generator, so a trajectory does not depend
on the batch it is sampled in, the device, or the number of processes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


@dataclass(frozen=True)
class DDIMSchedule:
    """The timesteps of a stochastic DDIM rollout and, per step, a_t, a_prev and sigma_t."""

    timesteps: tuple[int, ...]  # noisiest first
    alphas: tuple[float, ...]  # a_t
    alphas_prev: tuple[float, ...]  # a_prev (the final step's: a_0)
    eta: float

    @classmethod
    def from_config(cls, scheduler_config: Any, steps: int, eta: float) -> "DDIMSchedule":
        from diffusers import DDIMScheduler

        if steps < 1 or not eta > 0:
            raise ValueError("a stochastic DDIM rollout needs steps >= 1 and eta > 0")
        sched = DDIMScheduler.from_config(scheduler_config, clip_sample=False, set_alpha_to_one=False)
        sched.set_timesteps(steps)
        ac = sched.alphas_cumprod
        ts = [int(t) for t in sched.timesteps]
        prev = [float(ac[t]) for t in ts[1:]] + [float(sched.final_alpha_cumprod)]
        return cls(tuple(ts), tuple(float(ac[t]) for t in ts), tuple(prev), float(eta))

    def __len__(self) -> int:
        return len(self.timesteps)

    def sigma(self, a_t: Any, a_prev: Any) -> Any:
        return ddim_sigma(a_t, a_prev, self.eta)


def ddim_sigma(a_t: Any, a_prev: Any, eta: float) -> Any:
    """sigma_t = eta sqrt((1 - a_prev) / (1 - a_t) (1 - a_t / a_prev)) (DDIM eq. 16), elementwise."""
    return eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)) ** 0.5


def _col(v: Any) -> Any:
    return v.reshape(-1, *([1] * 3)) if v.dim() == 1 else v


def step_mean(model_output: Any, x_t: Any, a_t: Any, a_prev: Any, sigma: Any, prediction_type: str) -> Any:
    """mu_t of a DDIM step from the model's (guided) output; ``a_t``, ``a_prev``, ``sigma`` per example [B]."""
    a_t, a_prev, sigma = _col(a_t), _col(a_prev), _col(sigma)
    if prediction_type == "epsilon":
        eps = model_output
        x0 = (x_t - (1 - a_t).sqrt() * eps) / a_t.sqrt()
    elif prediction_type == "v_prediction":
        x0 = a_t.sqrt() * x_t - (1 - a_t).sqrt() * model_output
        eps = a_t.sqrt() * model_output + (1 - a_t).sqrt() * x_t
    else:
        raise ValueError(f"stochastic DDIM supports epsilon and v_prediction models, not '{prediction_type}'")
    return a_prev.sqrt() * x0 + (1 - a_prev - sigma**2).sqrt() * eps


def log_prob(x_prev: Any, mean: Any, sigma: Any) -> Any:
    """Per example: the mean over latent dims of the Gaussian log-density of ``x_prev`` under N(mean, sigma^2 I)."""
    sigma = _col(sigma)
    lp = -((x_prev.detach() - mean) ** 2) / (2 * sigma**2) - sigma.log() - LOG_SQRT_2PI
    return lp.mean(dim=tuple(range(1, lp.dim())))


def step_kl(mean: Any, mean_ref: Any, sigma: Any) -> Any:
    """Per example: KL(N(mean, sigma^2 I) || N(mean_ref, sigma^2 I)) / dims = mean over dims (mean - mean_ref)^2 / (2
    sigma^2)."""
    d = (mean - mean_ref) ** 2 / (2 * _col(sigma) ** 2)
    return d.mean(dim=tuple(range(1, d.dim())))


def guided_output(model: Any, x: Any, t: Any, cond: dict[str, Any], uncond: dict[str, Any], guidance: float) -> Any:
    """The model's output with classifier-free guidance w (one forward over [uncond; cond]); no guidance at w <= 1."""
    import torch

    if guidance <= 1:
        return model.predict(x, t, cond)
    both = {k: torch.cat([uncond[k], cond[k]]) for k in cond}
    u, c = model.predict(torch.cat([x, x]), torch.cat([t, t]), both).chunk(2)
    return u + guidance * (c - u)


@dataclass
class Rollouts:
    latents: Any  # [B, T + 1, C, H, W]: x_T first, the final latent last
    log_probs: Any  # [B, T]: log pi_old(x_{i+1} | x_i) of each step as sampled


def trajectory_generator(*key: Any) -> Any:
    """The CPU generator of one trajectory, seeded by a hash of ``key`` (e.g. run seed, iteration, slot)."""
    import hashlib

    import torch

    h = hashlib.sha256(":".join(["craft-bench-rollout", *map(str, key)]).encode()).digest()
    return torch.Generator("cpu").manual_seed(int.from_bytes(h[:8], "little") & ((1 << 63) - 1))


def rollout(
    model: Any,
    cond: dict[str, Any],
    uncond: dict[str, Any],
    schedule: DDIMSchedule,
    guidance: float,
    generators: Sequence[Any],
    shape: tuple[int, int, int],
    init_generators: Sequence[Any] | None = None,
) -> Rollouts:
    """Sample one trajectory per row of ``cond`` with the model's current weights (no gradients): x_T and every
    step's z from that row's generator (x_T from ``init_generators`` when given: trajectories whose init generators are
    seeded alike start from the same noise). ``uncond``: the unconditional conditioning, one row per trajectory."""
    import torch

    dev = model.device
    b = len(generators)
    x = torch.stack([torch.randn(shape, generator=g) for g in (init_generators or generators)]).to(dev)
    latents, lps = [x], []
    with torch.no_grad():
        for i, t in enumerate(schedule.timesteps):
            a_t = torch.full((b,), schedule.alphas[i], device=dev)
            a_prev = torch.full((b,), schedule.alphas_prev[i], device=dev)
            sigma = schedule.sigma(a_t, a_prev)
            out = guided_output(model, x, torch.full((b,), t, device=dev, dtype=torch.long), cond, uncond, guidance)
            mean = step_mean(out.float(), x, a_t, a_prev, sigma, model.prediction_type)
            z = torch.stack([torch.randn(shape, generator=g) for g in generators]).to(dev)
            x = mean + _col(sigma) * z
            lps.append(log_prob(x, mean, sigma))
            latents.append(x)
    return Rollouts(torch.stack(latents, dim=1).cpu(), torch.stack(lps, dim=1).cpu())
