"""GRPO: every equation pinned on tiny tensors (numbers computed by hand with the math module), the stochastic DDIM
step against diffusers' DDIMScheduler, rollouts that do not depend on their batch, its settings, and real runs on a
tiny SDXL: the accounting and reward curve it records, resuming a killed run mid-iteration to the weights of an
uninterrupted one."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from craft_bench import registry
from craft_bench.methods.grpo import GRPO, GRPOConfig, clipped_objective, group_advantages
from craft_bench.train.rollout import DDIMSchedule, ddim_sigma, log_prob, step_kl, step_mean

MINI_SCHEDULER = Path(__file__).resolve().parents[1] / "craft_bench" / "mini" / "weights" / "base" / "scheduler"


# --------------------------------------------------------------------------- the equations by hand


def test_ddim_sigma_and_mean_by_hand():
    a_t, a_prev = torch.tensor([0.5]), torch.tensor([0.8])
    # sigma^2 = eta^2 (1 - a_prev) / (1 - a_t) (1 - a_t / a_prev) = (0.2 / 0.5)(1 - 0.625) = 0.15
    sigma = ddim_sigma(a_t, a_prev, 1.0)
    assert float(sigma) == pytest.approx(math.sqrt(0.15), rel=1e-6)
    assert float(ddim_sigma(a_t, a_prev, 0.5)) == pytest.approx(0.5 * math.sqrt(0.15), rel=1e-6)
    # epsilon: x0 = (x - sqrt(1 - a_t) eps) / sqrt(a_t); mu = sqrt(a_prev) x0 + sqrt(1 - a_prev - sigma^2) eps
    x, eps = torch.full((1, 1, 1, 1), 1.0), torch.full((1, 1, 1, 1), 0.5)
    x0 = (1 - math.sqrt(0.5) * 0.5) / math.sqrt(0.5)
    expect = math.sqrt(0.8) * x0 + math.sqrt(1 - 0.8 - 0.15) * 0.5  # 0.929503
    assert float(step_mean(eps, x, a_t, a_prev, sigma, "epsilon")) == pytest.approx(expect, rel=1e-6)
    # v-prediction: x0 = sqrt(a_t) x - sqrt(1 - a_t) v, eps = sqrt(a_t) v + sqrt(1 - a_t) x
    v = torch.full((1, 1, 1, 1), 0.2)
    x0v, epsv = math.sqrt(0.5) * 1 - math.sqrt(0.5) * 0.2, math.sqrt(0.5) * 0.2 + math.sqrt(0.5) * 1
    expect_v = math.sqrt(0.8) * x0v + math.sqrt(0.05) * epsv
    assert float(step_mean(v, x, a_t, a_prev, sigma, "v_prediction")) == pytest.approx(expect_v, rel=1e-6)


def test_log_prob_is_the_mean_gaussian_log_density():
    x = torch.tensor([[[[0.3, -0.1]]], [[[1.0, 2.0]]]])  # 2 examples of 2 latent dims
    mean = torch.tensor([[[[0.1, 0.1]]], [[[0.0, 2.5]]]])
    sigma = torch.tensor([0.5, 2.0])

    def density(v: float, m: float, s: float) -> float:
        return -((v - m) ** 2) / (2 * s * s) - math.log(s) - 0.5 * math.log(2 * math.pi)

    expect = [
        (density(0.3, 0.1, 0.5) + density(-0.1, 0.1, 0.5)) / 2,
        (density(1.0, 0.0, 2.0) + density(2.0, 2.5, 2.0)) / 2,
    ]
    assert log_prob(x, mean, sigma).tolist() == pytest.approx(expect, rel=1e-6)  # [-0.306, -1.7908]
    normal = torch.distributions.Normal(mean, sigma.view(-1, 1, 1, 1))
    assert torch.allclose(log_prob(x, mean, sigma), normal.log_prob(x).mean(dim=(1, 2, 3)), atol=1e-6)


def test_kl_between_two_steps_with_the_same_sigma_by_hand():
    mean, ref = torch.tensor([[[[1.0, 2.0]]]]), torch.zeros(1, 1, 1, 2)
    # mean over dims of (mu - mu_ref)^2 / (2 sigma^2) at sigma 0.5: (1 / 0.5 + 4 / 0.5) / 2 = 5
    assert float(step_kl(mean, ref, torch.tensor([0.5]))) == pytest.approx(5.0)
    p, q = torch.distributions.Normal(mean, 0.5), torch.distributions.Normal(ref, 0.5)
    assert float(step_kl(mean, ref, torch.tensor([0.5]))) == pytest.approx(
        float(torch.distributions.kl_divergence(p, q).mean())
    )
    assert float(step_kl(ref, ref, torch.tensor([0.5]))) == 0.0


def test_clipped_objective_by_hand():
    # advantages +1, -1, +1, -1 at ratios 1.2, 0.5, 0.5, 1.2 with eps 0.1: per sample max(-A r, -A clip(r)) =
    # max(-1.2, -1.1) = -1.1 (clipped binds), max(0.5, 0.9) = 0.9 (clipped binds), max(-0.5, -0.9) = -0.5,
    # max(1.2, 1.1) = 1.2; mean 0.125
    ratio = torch.tensor([1.2, 0.5, 0.5, 1.2], dtype=torch.float64)
    old = torch.tensor([0.1, -0.3, 0.2, 0.0], dtype=torch.float64)
    lp = (old + ratio.log()).requires_grad_(True)
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64)
    loss, stats = clipped_objective(lp, old, adv, clip_range=0.1, adv_clip_max=5.0)
    assert float(loss.detach()) == pytest.approx(0.125)
    assert stats["clipfrac"] == 1.0 and stats["ratio"] == pytest.approx(0.85)
    assert stats["approx_kl"] == pytest.approx(0.5 * (2 * math.log(1.2) ** 2 + 2 * math.log(0.5) ** 2) / 4)
    loss.backward()
    # where the clipped term binds the gradient is 0; elsewhere d/dlp (-A r) / 4 = -A r / 4
    assert lp.grad.tolist() == pytest.approx([0.0, 0.0, -0.5 / 4, 1.2 / 4])
    # the advantage is clipped: A = 100 counts as adv_clip_max at ratio 1
    loss2, _ = clipped_objective(torch.zeros(1), torch.zeros(1), torch.tensor([100.0]), 0.1, 5.0)
    assert float(loss2) == -5.0


def test_group_advantages_by_hand():
    a = group_advantages(np.array([1.0, 2.0, 3.0, 4.0, 0.5, 0.5, 0.5, 0.5]), group_size=4)
    s = math.sqrt(1.25)  # population std of 1..4
    assert a[:4].tolist() == pytest.approx([-1.5 / (s + 1e-4), -0.5 / (s + 1e-4), 0.5 / (s + 1e-4), 1.5 / (s + 1e-4)])
    assert a[4:].tolist() == [0.0] * 4  # a group without spread teaches nothing


# --------------------------------------------------------------------------- the DDIM step against diffusers


@pytest.mark.parametrize(
    "spacing,prediction", [("trailing", "epsilon"), ("leading", "epsilon"), ("trailing", "v_prediction")]
)
def test_stochastic_ddim_step_is_diffusers_ddim_step(spacing, prediction):
    from diffusers import DDIMScheduler, EulerDiscreteScheduler

    config = dict(
        EulerDiscreteScheduler.from_pretrained(MINI_SCHEDULER).config,
        timestep_spacing=spacing,
        prediction_type=prediction,
    )
    ours = DDIMSchedule.from_config(config, steps=10, eta=0.7)
    ref = DDIMScheduler.from_config(config, clip_sample=False, set_alpha_to_one=False)
    ref.set_timesteps(10)
    assert list(ours.timesteps) == ref.timesteps.tolist()
    g = torch.Generator().manual_seed(0)
    for i, t in enumerate(ours.timesteps):
        x, out, z = (torch.randn(2, 4, 3, 3, generator=g) for _ in range(3))
        a_t, a_prev = torch.full((2,), ours.alphas[i]), torch.full((2,), ours.alphas_prev[i])
        sigma = ours.sigma(a_t, a_prev)
        mine = step_mean(out, x, a_t, a_prev, sigma, prediction) + sigma.view(-1, 1, 1, 1) * z
        theirs = ref.step(out, t, x, eta=0.7, variance_noise=z).prev_sample
        assert torch.allclose(mine, theirs, atol=1e-5), (i, t)
    assert ours.alphas_prev[-1] == pytest.approx(float(ref.alphas_cumprod[0]))  # the last step goes to a_0: sigma > 0


def test_rollout_log_probs_and_batch_independence(tiny_sdxl):
    from craft_bench.train.diffusion import DiffusionModel
    from craft_bench.train.rollout import guided_output, rollout, trajectory_generator

    model = DiffusionModel(tiny_sdxl, "sdxl", "cpu")
    sched = DDIMSchedule.from_config(model.scheduler.config, steps=3, eta=1.0)
    cond = model.encode_prompts(["a red apple", "a blue lake", "a green forest"])
    empty = model.empty_condition()
    uncond = {k: v.unsqueeze(0).expand(3, *v.shape) for k, v in empty.items()}
    gens = [trajectory_generator(0, 0, j) for j in range(3)]
    r = rollout(model, cond, uncond, sched, 4.0, gens, (4, 32, 32))
    assert r.latents.shape == (3, 4, 4, 32, 32) and r.log_probs.shape == (3, 3)
    # each stored log-prob is the step's Gaussian log-density recomputed from the stored latents
    for i, t in enumerate(sched.timesteps):
        a_t, a_prev = torch.full((3,), sched.alphas[i]), torch.full((3,), sched.alphas_prev[i])
        sigma = sched.sigma(a_t, a_prev)
        with torch.no_grad():
            out = guided_output(model, r.latents[:, i], torch.full((3,), t), cond, uncond, 4.0)
        mean = step_mean(out, r.latents[:, i], a_t, a_prev, sigma, "epsilon")
        assert torch.allclose(log_prob(r.latents[:, i + 1], mean, sigma), r.log_probs[:, i], atol=1e-4)
    # trajectory 1 alone is trajectory 1 of the batch: its noise is its own generator's
    alone = rollout(
        model,
        {k: v[1:2] for k, v in cond.items()},
        {k: v[1:2] for k, v in uncond.items()},
        sched,
        4.0,
        [trajectory_generator(0, 0, 1)],
        (4, 32, 32),
    )
    assert torch.allclose(alone.latents[0], r.latents[1], atol=1e-4)
    assert not torch.allclose(r.latents[0, -1], r.latents[1, -1])
    # same_noise: trajectories whose init generators are seeded alike share x_T, their own steps still differ
    same = rollout(
        model,
        {k: v[:1].expand(2, *v.shape[1:]) for k, v in cond.items()},
        {k: v[:2] for k, v in uncond.items()},
        sched,
        4.0,
        [trajectory_generator(0, 1, j) for j in range(2)],
        (4, 32, 32),
        [trajectory_generator(0, 0, "init", 0) for _ in range(2)],
    )
    assert torch.equal(same.latents[0, 0], same.latents[1, 0]) and not torch.allclose(
        same.latents[0, 1], same.latents[1, 1]
    )


# --------------------------------------------------------------------------- settings


def test_registered_with_its_budget_field_and_presets():
    assert registry.methods.get("grpo") is GRPO and GRPO.online and GRPO.budget_field == "images"
    assert GRPO(GRPOConfig(kl_beta=0.0)).needs_reference is False and GRPO().needs_reference
    from craft_bench.spec import field_help

    assert all(help_text for _, _, _, help_text in field_help(GRPOConfig))
    assert GRPOConfig().train_steps(10) == 6 and GRPOConfig(timestep_fraction=0.01).train_steps(10) == 1


@pytest.mark.parametrize(
    "bad,needle",
    [
        (dict(steps=10), "drop method.steps"),
        (dict(batch_size=4), "drop method.steps"),
        (dict(images=100), "multiple of prompts_per_iter x group_size (64), e.g. 64"),
        (dict(group_size=1), "group_size >= 2"),
        (dict(inner_steps=3), "inner_steps must divide"),
        (dict(eta=0.0), "eta must be > 0"),
        (dict(timestep_fraction=0.0), "timestep_fraction"),
        (dict(clip_range=0.0), "clip_range"),
        (dict(kl_beta=-1.0), "kl_beta"),
        (dict(cond_dropout=0.1), "do not apply"),
        (dict(pool_size=0), "pool_size"),
    ],
)
def test_bad_settings_are_refused(bad, needle):
    with pytest.raises(ValueError, match=re.escape(needle)):
        GRPOConfig(**bad)


# --------------------------------------------------------------------------- real runs on a tiny SDXL


@pytest.fixture(scope="module")
def prompts(tmp_path_factory):
    path = tmp_path_factory.mktemp("grpo-pool") / "prompts.txt"
    path.write_text("a red apple\na blue lake\na green forest\na white cloud\n")
    return path


def grpo_args(model, prompts, out, method="grpo", *extra):
    sets = [
        f"method.pool={prompts}",
        "method.rewards=mini-clip",
        "method.prompts_per_iter=2",
        "method.group_size=2",
        "method.images=8",
        "method.inner_steps=2",
        "method.timestep_fraction=1",
        "method.lora_rank=4",
        "method.lr=1e-3",
        "method.ckpt_every=1",
        "sampler.steps=2",
        "sampler.batch_size=3",
        "suite.n_prompts=2",
        *extra,
    ]
    return [
        "run",
        "--method",
        method,
        "--suite",
        "toy",
        "--model",
        str(model),
        "--out",
        str(out),
        "--no-progress",
        *[a for s in sets for a in ("--set", s)],
    ]


def checkpoint(out: Path) -> Path:
    (folder,) = [p for p in (out / "checkpoints").iterdir() if (p / "train_info.json").is_file()]
    return folder


def lora(out: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(checkpoint(out) / "pytorch_lora_weights.safetensors"))


def test_a_run_records_its_reward_curve_and_accounting(cli, tiny_sdxl, prompts, tmp_path):
    results = json.loads(cli(*grpo_args(tiny_sdxl, prompts, tmp_path / "r"), "--json").stdout)
    train = results["train"]
    # 2 iterations x 2 prompts x G 2; 2 inner steps each; a step's batch: 4 trajectories / 2 x S 2 samples
    assert train["images_generated"] == 8 and train["reward_calls"] == 8 and train["samples_used"] == 8
    assert train["steps"] == 4 and train["settings"]["batch_size"] == 4 and train["iterations"] == 2
    assert train["rewards"] == ["mini-clip"] and train["reward_evaluations_run"] == 8
    assert {"sampling_s", "reward_s", "optimize_s"} <= set(train["timing"]) and train["peak_memory_bytes"] > 0
    assert train["timing"]["sampling_s"] > 0 and train["timing"]["optimize_s"] > 0
    assert train["rollout"] == {
        "prompts_per_iter": 2,
        "group_size": 2,
        "sample_steps": 2,
        "train_steps": 2,
        "guidance": 5.0,
        "eta": 1.0,
        "same_noise": True,
    }
    log = [json.loads(line) for line in (checkpoint(tmp_path / "r") / "train_log.jsonl").read_text().splitlines()]
    assert [row["iteration"] for row in log] == [1, 1, 2, 2] and [row["images"] for row in log] == [8 / 2, 4, 8, 8]
    assert all({"reward/mini-clip", "kl", "clipfrac", "approx_kl", "ratio", "policy_loss"} <= set(row) for row in log)
    assert log[0]["ratio"] == pytest.approx(1.0, abs=1e-4) and log[0]["kl"] == 0.0  # the first step is on-policy
    assert log[1]["kl"] > 0  # the policy moved from its reference
    examples = (checkpoint(tmp_path / "r") / "examples.jsonl").read_text().splitlines()
    assert len(examples) == 4  # the pool's prompts


def test_a_killed_run_resumes_mid_iteration_to_the_weights_of_an_uninterrupted_one(
    cli, tiny_sdxl, prompts, tmp_path, monkeypatch
):
    from craft_bench.methods import grpo

    cli(*grpo_args(tiny_sdxl, prompts, tmp_path / "whole"))
    real_batch, real_collect = grpo.GRPOTask.batch, grpo.GRPOTask.collect
    calls = []

    def killed_at_3(self, step):
        if step == 3:  # the second step of iteration 1: the checkpoint of step 3 holds iteration 1's rollouts
            raise KeyboardInterrupt
        return real_batch(self, step)

    monkeypatch.setattr(grpo.GRPOTask, "batch", killed_at_3)
    assert cli(*grpo_args(tiny_sdxl, prompts, tmp_path / "killed"), check=False).returncode == 130
    monkeypatch.setattr(grpo.GRPOTask, "batch", real_batch)
    monkeypatch.setattr(grpo.GRPOTask, "collect", lambda self, k: calls.append(k) or real_collect(self, k))
    cli(*grpo_args(tiny_sdxl, prompts, tmp_path / "killed"))
    assert calls == []  # the resumed run trained on the checkpointed rollouts, it did not sample them again
    whole, resumed = lora(tmp_path / "whole"), lora(tmp_path / "killed")
    assert resumed.keys() == whole.keys() and all(torch.equal(whole[k], resumed[k]) for k in whole)
    logs = [
        [
            {k: v for k, v in json.loads(line).items()}
            for line in (checkpoint(tmp_path / name) / "train_log.jsonl").read_text().splitlines()
        ]
        for name in ("whole", "killed")
    ]
    assert logs[0] == logs[1]
    infos = [json.loads((checkpoint(tmp_path / name) / "train_info.json").read_text()) for name in ("whole", "killed")]
    assert infos[1]["images_generated"] == infos[0]["images_generated"] == 8  # counted once, not per attempt


def test_two_processes_train_like_one(cli, tiny_sdxl, prompts, tmp_path):
    """2 gloo processes (torchrun): each samples and scores whole rollout batches, all gather them; DDP training."""
    one = json.loads(cli(*grpo_args(tiny_sdxl, prompts, tmp_path / "one"), "--json").stdout)
    proc = cli.__class__(cli.env)(
        *grpo_args(tiny_sdxl, prompts, tmp_path / "two"), "--json", "--num-processes", "2", subprocess=True, timeout=900
    )
    two = json.loads(proc.stdout)
    assert two["train"]["processes"] == 2 and two["train"]["images_generated"] == one["train"]["images_generated"] == 8
    a, b = lora(tmp_path / "one"), lora(tmp_path / "two")
    base = torch.cat([a[k].flatten() for k in sorted(a)])
    diff = torch.cat([(a[k] - b[k]).flatten() for k in sorted(a)])
    assert float(diff.norm() / base.norm()) < 1e-4  # gradients averaged over processes: float summation order only
    logs = [
        [json.loads(line) for line in (checkpoint(tmp_path / n) / "train_log.jsonl").read_text().splitlines()]
        for n in ("one", "two")
    ]
    assert [r["reward/mini-clip"] for r in logs[0]] == pytest.approx([r["reward/mini-clip"] for r in logs[1]], rel=1e-5)
