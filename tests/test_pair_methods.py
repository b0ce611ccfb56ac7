"""The DPO family: each loss pinned to its source's equation on tiny tensors (numbers computed by hand with the math
module), the pairs drawn from the shared pool, SmPO's soft labels and its DDIM inversion against diffusers'
DDIMInverseScheduler, and one real training step of each method on a tiny SDXL."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fake_models import FakeModel

from craft_bench import registry
from craft_bench.methods.diff_dpo import DiffusionDPO, DiffusionDPOConfig, dpo_logit
from craft_bench.methods.mapo import MaPO, MaPOConfig, mapo_loss, phi
from craft_bench.methods.smpo import PICKSCORE_MAX, PICKSCORE_MIN, SmPO, SmPOConfig, soft_label
from craft_bench.train.pairs import pool_pairs
from craft_bench.train.pool import Candidate, PoolSpec


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def test_registered_with_aliases_budget_fields_and_presets():
    assert registry.methods.get("dpo") is DiffusionDPO and registry.methods.get("diffusion-dpo") is DiffusionDPO
    assert registry.methods.get("mapo") is MaPO and registry.methods.get("smpo") is SmPO
    from craft_bench.methods.craft import Craft
    from craft_bench.mini.world import MINI
    from craft_bench.train.method import settings_for

    craft = settings_for(Craft(), MINI)
    for cls in (DiffusionDPO, MaPO, SmPO):
        assert cls.budget_field == "pairs" and cls.image_fields == ("image_w", "image_l")
        mini = settings_for(cls(), MINI)  # identical conditions: the mini world's (CRAFT's) steps, batch and rank
        assert {k: mini[k] for k in ("steps", "batch_size", "lora_rank")} == {
            k: craft[k] for k in ("steps", "batch_size", "lora_rank")
        }
        assert cls.presets["mini"] == {"lr": mini["lr"]}  # only the paper's rate is the method's own
    assert settings_for(DiffusionDPO(), MINI)["lr"] == 2.048e-5 and settings_for(MaPO(), MINI)["lr"] == 1e-5
    assert settings_for(SmPO(), MINI)["lr"] == 1.024e-5
    assert DiffusionDPO.needs_reference and SmPO.needs_reference and not MaPO.needs_reference


@pytest.mark.parametrize(
    "cls,bad",
    [
        (DiffusionDPOConfig, dict(beta=0.0)),
        (DiffusionDPOConfig, dict(pairs=0)),
        (DiffusionDPOConfig, dict(pair_order="best")),
        (MaPOConfig, dict(snr_value=0.0)),
        (SmPOConfig, dict(inversion_steps=0)),
        (SmPOConfig, dict(k=1)),
    ],
)
def test_bad_settings_are_refused(cls, bad):
    with pytest.raises(ValueError):
        cls(**bad)


# --------------------------------------------------------------------------- the losses by hand


def test_dpo_logit_and_loss_by_hand():
    # err_w 0.2, err_l 0.5, ref 0.3 / 0.4, beta 10: z = -5 ((0.2 - 0.5) - (0.3 - 0.4)) = -5 (-0.2) = 1.0
    z = dpo_logit(torch.tensor([0.2]), torch.tensor([0.5]), torch.tensor([0.3]), torch.tensor([0.4]), 10.0)
    assert float(z) == pytest.approx(1.0)
    assert float(-torch.nn.functional.logsigmoid(z)) == pytest.approx(0.31326169, abs=1e-7)  # log(1 + e^-1)
    # a model no different from its reference: z = 0, loss log 2, whatever beta
    z0 = dpo_logit(torch.tensor([0.2]), torch.tensor([0.5]), torch.tensor([0.2]), torch.tensor([0.5]), 5000.0)
    assert float(z0) == 0.0


def test_mapo_phi_and_loss_by_hand():
    s = 0.5
    assert float(phi(torch.tensor([0.2]), s)) == pytest.approx(0.1 / math.expm1(0.1), rel=1e-6)  # 0.950833
    assert float(phi(torch.tensor([0.0]), s)) == pytest.approx(1.0)  # the limit of x / (e^x - 1)
    assert float(phi(torch.tensor([1e-9]), s)) == pytest.approx(1.0, abs=1e-8)
    err_w, err_l = torch.tensor([0.2, 0.3], dtype=torch.float64), torch.tensor([0.2002, 0.25], dtype=torch.float64)
    loss, margin = mapo_loss(err_w, err_l, beta=0.1, s=s, steps=1000)

    def ph(x: float) -> float:
        return s * x / math.expm1(s * x)

    m = [ph(0.2) - ph(0.2002), ph(0.3) - ph(0.25)]
    expect = (0.2 + 0.3) / 2 - 0.1 * (log_sigmoid(1000 * m[0]) + log_sigmoid(1000 * m[1])) / 2
    assert margin.tolist() == pytest.approx(m, rel=1e-4)
    assert float(loss) == pytest.approx(expect, rel=1e-5)
    assert m[0] > 0 > m[1]  # a lower error on the winner is a positive margin


def test_smpo_soft_label_by_hand():
    assert float(soft_label(1.0, 0.0)) == pytest.approx(math.e / (math.e + 1))  # 0.731059
    assert float(soft_label(0.3, 0.3)) == pytest.approx(0.5)
    # the factor on the DPO logit: (2 p_w - 1) * 10
    assert (2 * float(soft_label(1.0, 0.0)) - 1) * 10 == pytest.approx(4.621172, rel=1e-6)


def pair_batch(p_w=None):
    g = torch.Generator().manual_seed(0)
    w, lo, n = (torch.randn(2, 4, 2, 2, generator=g) for _ in range(3))
    batch = {
        "image_w": w,
        "image_l": lo,
        "noise": n,
        "timesteps": torch.tensor([100, 700]),
        "cond": {"embeds": torch.zeros(2, 3, 2)},
        "snr_weight": torch.ones(2),
    }
    if p_w is not None:
        batch["p_w"] = torch.tensor(p_w)
    return batch


def errors(model, x, n, t, scale):
    return ((scale * model.noisy(x, n, t) - n) ** 2).mean(dim=(1, 2, 3))


def test_dpo_loss_on_a_batch():
    b, m = pair_batch(), FakeModel()
    loss, logs = DiffusionDPO(DiffusionDPOConfig(beta=2.0)).loss(b, m)
    t, n = b["timesteps"], b["noise"]
    d = errors(m, b["image_w"], n, t, 0.5) - errors(m, b["image_l"], n, t, 0.5)
    d_ref = errors(m, b["image_w"], n, t, 0.25) - errors(m, b["image_l"], n, t, 0.25)
    z = -0.5 * 2.0 * (d - d_ref)
    assert float(loss) == pytest.approx(float(-torch.nn.functional.logsigmoid(z).mean()), rel=1e-6)
    assert logs["implicit_acc"] == pytest.approx(float((z > 0).float().mean()))


def test_mapo_loss_on_a_batch_is_reference_free():
    b, m = pair_batch(), FakeModel()
    loss, _ = MaPO(MaPOConfig()).loss(b, m)
    t, n = b["timesteps"], b["noise"]
    lw, ll = errors(m, b["image_w"], n, t, 0.5), errors(m, b["image_l"], n, t, 0.5)
    expect, _ = mapo_loss(lw, ll, 0.1, 0.5, 1000)
    assert float(loss) == pytest.approx(float(expect), rel=1e-6) and not m.ref


def test_smpo_loss_uses_the_inverted_noise_and_the_soft_label():
    b, m = pair_batch(p_w=[0.7, 0.55]), FakeModel()
    loss, _ = SmPO(SmPOConfig(beta=3.0)).loss(b, m)
    t = b["timesteps"]
    a = m.alphas[t].view(-1, 1, 1, 1)

    def eps(x):
        return (0.9 * x + 0.1 - a.sqrt() * x) / (1 - a).sqrt()

    nw, nl = eps(b["image_w"]), eps(b["image_l"])
    d = errors(m, b["image_w"], nw, t, 0.5) - errors(m, b["image_l"], nl, t, 0.5)
    d_ref = errors(m, b["image_w"], nw, t, 0.25) - errors(m, b["image_l"], nl, t, 0.25)
    z = -0.5 * 3.0 * (2 * torch.tensor([0.7, 0.55]) - 1) * 10 * (d - d_ref)
    assert float(loss) == pytest.approx(float(-torch.nn.functional.logsigmoid(z).mean()), rel=1e-6)


# --------------------------------------------------------------------------- pairs and soft labels


def pool(groups, rewards=("mini-clip", "mini-aes")):
    cands = []
    for g, rows in groups.items():
        for i, (a, b) in enumerate(rows):
            cands.append(
                Candidate(
                    group=g,
                    original=f"p{g}",
                    text=f"p{g}" if i < 2 else f"p{g}, expanded",
                    expanded=i >= 2,
                    index=i,
                    image_key=f"{g}-{i}",
                    image_path=f"{g}-{i}.png",
                    scores={rewards[0]: a, rewards[1]: b},
                )
            )
    return SimpleNamespace(
        spec=PoolSpec(prompts="mini", size=len(groups), prompt_seed=0, k=2, rewards=rewards), candidates=cands
    )


def test_pairs_are_best_vs_worst_by_the_composite_score_clearest_first():
    from craft_bench.train.pool import composite_scores

    p = pool(
        {
            0: [(1.0, 1.0), (2.0, 2.0), (0.0, 3.0), (3.0, 3.0)],  # best 0-3 (expanded), worst 0-0
            1: [(1.5, 1.5), (1.5, 1.5)],  # a tie: dropped
            2: [(2.0, 1.0), (1.0, 2.0), (0.5, 0.4), (2.5, 2.0)],
        }
    )
    comp = composite_scores(p)
    pairs = pool_pairs(p, 10, "gap", 0)
    assert [(q["image_w"], q["image_l"]) for q in pairs] == [("0-3.png", "0-0.png"), ("2-3.png", "2-2.png")]
    assert pairs[0]["prompt"] == "p0"  # conditioned on the original prompt
    assert pairs[0]["score_w"] == pytest.approx(comp[3]) and pairs[0]["score_l"] == pytest.approx(comp[0])
    gaps = [q["score_w"] - q["score_l"] for q in pairs]
    assert gaps == sorted(gaps, reverse=True)
    assert len(pool_pairs(p, 1, "gap", 0)) == 1 and pool_pairs(p, 1, "gap", 0)[0]["group"] == 0
    assert {q["group"] for q in pool_pairs(p, 10, "random", 3)} == {0, 2}


def test_random_labels_keep_the_pairs_and_flip_a_seeded_share_of_winners():
    """dpo-random's control: the same pairs as diff-dpo, each winner a coin flip (seeded), images and keys swapped
    together; about half flipped over many groups."""
    p = pool({g: [(float(g % 3), 0.0), (10.0 + g, 5.0)] for g in range(40)})
    honest, shuffled = pool_pairs(p, 40, "gap", 0), pool_pairs(p, 40, "gap", 0, labels="random")
    assert pool_pairs(p, 40, "gap", 0, labels="random") == shuffled  # seeded
    assert [q["group"] for q in shuffled] == [q["group"] for q in honest]
    flipped = 0
    for h, r in zip(honest, shuffled):
        assert {r["image_w"], r["image_l"]} == {h["image_w"], h["image_l"]}
        if r["image_w"] != h["image_w"]:
            flipped += 1
            assert (r["image_key_w"], r["score_w"], r["score_l"]) == (h["image_key_l"], h["score_l"], h["score_w"])
    assert 10 <= flipped <= 30
    from craft_bench.registry import methods

    cls = methods.get("dpo-random")
    assert cls.Config().labels == "random" and "control" in cls.description
    with pytest.raises(ValueError, match="labels"):
        cls.Config(labels="coin")


def test_smpo_soft_labels_from_the_composite_or_pickscore_with_the_code_constants():
    p = pool({0: [(1.0, 1.0), (3.0, 3.0)], 1: [(2.0, 2.0), (0.0, 0.0)]})
    from craft_bench.train.pool import composite_scores

    comp = composite_scores(p)
    ex = SmPO(SmPOConfig()).annotate(pool_pairs(p, 10, "gap", 0), p)
    lo, hi = comp.min(), comp.max()
    by_w = {e["image_w"]: e["p_w"] for e in ex}
    # group 1: 1-0 (2, 2) beats 1-1 (0, 0), the pool's minimum -> n_l = 0
    n_w, n_l = (comp[2] - lo) / (hi - lo), (comp[3] - lo) / (hi - lo)
    assert by_w["1-0.png"] == pytest.approx(1 / (1 + math.exp(n_l - n_w)))
    ps = pool({0: [(20.0, 1.0), (25.0, 3.0)]}, rewards=("pickscore", "aes"))
    (e,) = SmPO(SmPOConfig()).annotate(pool_pairs(ps, 10, "gap", 0), ps)  # auto: pickscore, the code's constants
    span = 100 * (PICKSCORE_MAX - PICKSCORE_MIN)
    assert e["p_w"] == pytest.approx(1 / (1 + math.exp(-(25.0 - 20.0) / span)))
    from craft_bench.errors import UserError

    with pytest.raises(UserError, match="not a reward of the pool"):
        SmPO(SmPOConfig(label="hps")).annotate(pool_pairs(ps, 10, "gap", 0), ps)


# --------------------------------------------------------------------------- DDIM inversion (SmPO's estimate)


def test_ddim_inversion_matches_diffusers_inverse_scheduler(tiny_sdxl):
    from diffusers import DDIMInverseScheduler

    from craft_bench.train.diffusion import DiffusionModel

    model = DiffusionModel(tiny_sdxl, "sdxl", "cpu")
    cond = {k: v.unsqueeze(0).repeat(2, *([1] * v.dim())) for k, v in model.empty_condition().items()}
    x0 = torch.randn(2, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([999, 350])
    out = model.invert(x0, t, cond, steps=10, renoise=True)
    sched = DDIMInverseScheduler.from_pretrained(str(tiny_sdxl), subfolder="scheduler", clip_sample=False)
    sched.set_timesteps(10)
    assert sched.timesteps.tolist() == [1, 101, 201, 301, 401, 501, 601, 701, 801, 901]  # leading, offset 1

    def unet(x, s):
        with torch.no_grad():
            return model.predict(x, torch.tensor([s]), {k: v[:1] for k, v in cond.items()})

    for i, limit in enumerate((999, 350)):
        x = x0[i : i + 1].clone()
        for s in [s for s in sched.timesteps.tolist() if s < limit]:  # SmPO: timesteps < t
            pred = unet(x, s)
            pred = (pred + unet(sched.step(pred, s, x).prev_sample, s)) / 2
            x = sched.step(pred, s, x).prev_sample
        assert torch.allclose(out[i : i + 1], x, atol=1e-5), i
    assert not torch.allclose(out[1], x0[1])
    same = model.invert(x0, torch.tensor([1, 0]), cond, steps=10)  # no inverse step below t: the latents unchanged
    assert torch.equal(same, x0)


# --------------------------------------------------------------------------- one real step each


@pytest.mark.parametrize("name", ["diff-dpo", "mapo", "smpo"])
def test_one_real_step_on_a_tiny_sdxl(name, tiny_sdxl, tmp_path):
    """Through the shared trainer with LoRA: at step 1 the adapter is zero, so the policy is its reference and a
    DPO-style loss is exactly log 2."""
    from PIL import Image

    from craft_bench.train.diffusion import fit, resolved

    rng = np.random.default_rng(0)
    examples = []
    for i in range(4):
        paths = []
        for side in ("w", "l"):
            path = tmp_path / f"{i}{side}.png"
            Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
            paths.append(str(path))
        examples.append({"image_w": paths[0], "image_l": paths[1], "prompt": f"a photo of shape {i}", "p_w": 0.7})
    method = registry.methods.get(name)()
    settings = resolved(method.Config(lr=1e-3, steps=2, batch_size=4, lora_rank=4), {})
    r = fit(
        examples,
        method.loss,
        base_dir=tiny_sdxl,
        family="sdxl",
        results_root=tmp_path,
        work_dir=tmp_path / "w",
        out_dir=tmp_path / "o",
        settings=settings,
        seed=0,
        device="cpu",
        image_fields=method.image_fields,
        number_fields=method.number_fields,
        needs_reference=method.needs_reference,
        progress=False,
    )
    import json

    log = [json.loads(x) for x in (tmp_path / "w" / "train_log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log] == [1, 2] and all(math.isfinite(row["loss"]) for row in log)
    if name != "mapo":
        assert log[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert r.files == ["pytorch_lora_weights.safetensors"]
