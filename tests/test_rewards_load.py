"""Every reward loads a tiny checkpoint saved in its real format through its real loading code, and scores."""

from __future__ import annotations

import pytest
import tiny_rewards as T
import torch
from seeded import PROMPTS, fixed_images

from craft_bench.errors import UserError
from craft_bench.registry import rewards as registry


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("rewards")
    hps_arch = T.build_hps(root / "hps")
    aes_mlp, clip = T.build_aes(root / "aes")
    return {
        "root": root,
        "hps": (str(root / "hps"), {"arch": str(hps_arch)}),
        "aes": (str(aes_mlp), {"clip_source": str(clip)}),
        "clip": (str(clip), {}),
        "pickscore": (str(T.build_pickscore(root / "pickscore")), {}),
        "imagereward": (str(T.build_imagereward(root / "imagereward")), {}),
    }


NAMES = ["hps", "aes", "clip", "pickscore", "imagereward"]


@pytest.fixture(scope="module")
def loaded(tiny):
    return {name: registry.get(name).load(tiny[name][0], device="cpu", **tiny[name][1]) for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_scores_are_float32_cpu_one_per_image(loaded, name):
    reward = loaded[name]
    images = fixed_images()
    scores = reward.score(images, PROMPTS)
    assert scores.dtype == torch.float32 and scores.device.type == "cpu" and scores.shape == (len(images),)
    assert torch.isfinite(scores).all()
    assert reward.name == name and reward.description and reward.higher_is_better


@pytest.mark.parametrize("name", NAMES)
def test_batching_does_not_change_scores(loaded, name):
    reward = loaded[name]
    images = fixed_images()
    whole = reward.score(images, PROMPTS)
    reward.batch_size = 2
    try:
        split = reward.score(images, PROMPTS)
        single = torch.cat([reward.score([im], [p]) for im, p in zip(images, PROMPTS)])
    finally:
        reward.batch_size = 16
    torch.testing.assert_close(split, whole, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(single, whole, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["hps", "clip", "pickscore", "imagereward"])
def test_prompt_changes_text_conditioned_scores(loaded, name):
    images = fixed_images()[:2]
    a = loaded[name].score(images, ["a red cube on a wooden table"] * 2)
    b = loaded[name].score(images, ["a photo of a cat"] * 2)
    assert not torch.allclose(a, b)


def test_aes_ignores_prompts(loaded):
    images = fixed_images()[:2]
    torch.testing.assert_close(loaded["aes"].score(images, ["x", "y"]), loaded["aes"].score(images, ["cat", "dog"]))


def test_hps_is_a_cosine_and_clip_score_is_clamped(loaded):
    images = fixed_images()
    assert loaded["hps"].score(images, PROMPTS).abs().max() <= 1.0 + 1e-6
    clip = loaded["clip"].score(images, PROMPTS)
    assert (clip >= 0).all() and (clip <= 100).all()


def test_imagereward_truncates_prompts_at_35_tokens(loaded):
    reward = loaded["imagereward"]
    long = PROMPTS[4]
    assert len(reward.tokenizer(long).input_ids) >= 35
    images = fixed_images()[:1]
    longer = long + " and red cats and blue dogs"
    torch.testing.assert_close(reward.score(images, [long]), reward.score(images, [longer]))


def test_environment_variable_gives_the_source(tiny, monkeypatch):
    from craft_bench.rewards.hps import HPS

    monkeypatch.setenv("CRAFT_BENCH_HPS", tiny["hps"][0] + "/HPS_v2.1_compressed.pt")
    reward = HPS.load(arch=tiny["hps"][1]["arch"])
    assert reward.score(fixed_images()[:1], ["a cat"]).shape == (1,)


def test_hps_v20_reads_its_own_file(tiny):
    from craft_bench.rewards.hps import HPS

    with pytest.raises(UserError) as err:
        HPS.load(tiny["hps"][0], version="v2.0", arch=tiny["hps"][1]["arch"])
    T.check_one_line(err.value, "HPS_v2_compressed.pt")


@pytest.mark.parametrize(
    "name, env, filename",
    [
        ("hps", "CRAFT_BENCH_HPS", "HPS_v2.1_compressed.pt"),
        ("aes", "CRAFT_BENCH_AES", "sac+logos+ava1-l14-linearMSE.pth"),
        ("imagereward", "CRAFT_BENCH_IMAGEREWARD", "ImageReward.pt"),
        ("clip", "CRAFT_BENCH_CLIP", "open_clip_model.safetensors"),
        ("pickscore", "CRAFT_BENCH_PICKSCORE", "yuvalkirstain/PickScore_v1"),
    ],
)
def test_offline_and_missing_is_one_line_naming_the_file(name, env, filename, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache
    monkeypatch.delenv(env, raising=False)
    with pytest.raises(UserError) as err:
        registry.get(name).load(device="cpu")
    T.check_one_line(err.value, filename, env, f"--source {name}=")


def test_missing_local_path_is_one_line(tmp_path):
    with pytest.raises(UserError) as err:
        registry.get("hps").load(str(tmp_path / "nope" / "HPS_v2.1_compressed.pt"))
    T.check_one_line(err.value, "nope", "CRAFT_BENCH_HPS")


def test_wrong_checkpoint_is_a_user_error(tiny):
    from craft_bench.rewards.hps import HPS

    with pytest.raises(UserError) as err:  # the tiny CLIP checkpoint is not an HPS ViT-H-14
        HPS.load(tiny["clip"][0])
    T.check_one_line(err.value, "does not match")


def test_imagereward_key_mapping_covers_the_official_layout(tiny):
    from craft_bench.rewards.imagereward import split_checkpoint

    sd = torch.load(tiny["imagereward"][0] + "/ImageReward.pt", weights_only=True)
    vision, text, mlp = split_checkpoint(sd)
    assert "embeddings.class_embedding" in vision and "post_layernorm.weight" in vision
    assert "encoder.layers.1.self_attn.qkv.weight" in vision
    assert "encoder.layer.0.crossattention.self.key.weight" in text
    assert sorted(mlp) == sorted(k for k in (f"{i}.{p}" for i in (0, 2, 4, 6, 7) for p in ("weight", "bias")))


def test_pickscore_probabilities_sum_to_one(loaded):
    probs = loaded["pickscore"].probabilities(fixed_images()[:3], "a cat")
    assert probs.shape == (3,) and abs(float(probs.sum()) - 1.0) < 1e-5


@pytest.mark.parametrize("name", NAMES)
def test_reduced_precision_path_runs(tiny, loaded, name):
    """The GPU half-precision code path (autocast for HPS, cast weights elsewhere), exercised on CPU in bf16."""
    reward = registry.get(name).load(tiny[name][0], device="cpu", dtype="bfloat16", **tiny[name][1])
    images = fixed_images()[:2]
    low = reward.score(images, PROMPTS[:2])
    full = loaded[name].score(images, PROMPTS[:2])
    assert low.dtype == torch.float32 and torch.isfinite(low).all()
    scale = float(full.abs().max()) + 1.0
    assert float((low - full).abs().max()) < 0.1 * scale
