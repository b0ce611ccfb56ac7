"""The mini base model: real CLIP tokenizer, tiny SDXL built from configs, training recipes, shipped weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from craft_bench.errors import UserError

TINY = dict(batch_size=2, ckpt_every=1, progress=False)


# --------------------------------------------------------------------------- tokenizer


def test_tokenizer_ids_match_open_clip(tmp_path):
    import open_clip

    from craft_bench.mini.tokenizer import VOCAB_SIZE, build_tokenizers

    tok1, tok2 = build_tokenizers(tmp_path)
    assert len(tok1) == VOCAB_SIZE == len(tok2)
    texts = [
        "a photo of a red circle",
        "A photo of THREE squares,  left of a blue triangle",
        "",
        "pink crosses? 123 naïve",
    ]
    ref = open_clip.tokenize(texts)
    for tok, pad in ((tok1, 49407), (tok2, 0)):
        ids = tok(texts, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
        assert ids.shape == (4, 77)
        for row, ref_row in zip(ids, ref):
            n = int((ref_row == 49407).nonzero()[0]) + 1  # through the first end-of-text
            assert row[:n].tolist() == ref_row[:n].tolist()
            assert (row[n:] == pad).all()
    # OpenAI CLIP's ids: <|startoftext|> a photo of a red circle <|endoftext|>
    assert ids[0][:8].tolist() == [49406, 320, 1125, 539, 320, 736, 7117, 49407]


# --------------------------------------------------------------------------- architecture


def test_built_pipeline_matches_sdxl_conditioning(tmp_path):
    from craft_bench.mini.model import build_pipeline, encode_prompts

    pipe = build_pipeline(seed=0, work_dir=tmp_path / "tok")
    assert pipe.unet.config.addition_embed_type == "text_time"
    assert pipe.vae_scale_factor == 4 and pipe.unet.config.sample_size == 16
    prompts = ["a photo of a red circle", "a photo of two squares"]
    ids = [
        t(prompts, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
        for t in (pipe.tokenizer, pipe.tokenizer_2)
    ]
    with torch.no_grad():
        ours = encode_prompts(pipe.text_encoder, pipe.text_encoder_2, *ids)
        ref = pipe.encode_prompt(prompts, device="cpu", do_classifier_free_guidance=True)
    assert ours[0].shape == (2, 77, 128) and ours[1].shape == (2, 64)
    torch.testing.assert_close(ours[0], ref[0])
    torch.testing.assert_close(ours[1], ref[2])
    assert torch.count_nonzero(ref[1]) == 0  # empty negative prompt -> zeros, what training drops to


# --------------------------------------------------------------------------- recipes


@pytest.fixture(scope="module")
def tiny_vae(tmp_path_factory) -> Path:
    from craft_bench.mini.train import train_vae

    out = tmp_path_factory.mktemp("vae")
    stats = train_vae(out, seed=3, steps=2, device="cpu", freeze_encoder_at=1, **TINY)
    assert stats["steps"] == 2 and stats["wall_s"] > 0
    assert set(stats["files"]) == {"config.json", "diffusion_pytorch_model.safetensors"}
    return out


def test_vae_recipe_writes_a_loadable_fp16_vae(tiny_vae):
    from diffusers import AutoencoderKL
    from safetensors.torch import load_file

    weights = load_file(str(tiny_vae / "diffusion_pytorch_model.safetensors"))
    assert {v.dtype for v in weights.values()} == {torch.float16}
    vae = AutoencoderKL.from_pretrained(str(tiny_vae), torch_dtype=torch.float32)
    cfg = json.loads((tiny_vae / "config.json").read_text())
    assert cfg["scaling_factor"] == vae.config.scaling_factor and cfg["scaling_factor"] != 1.0
    assert json.loads((tiny_vae / "_train" / "state" / "state.json").read_text())["step"] == 2
    # after freeze_encoder_at only the decoder trains: the encoder exported then is the final one
    frozen = load_file(str(tiny_vae / "_train" / "frozen-encoder" / "diffusion_pytorch_model.safetensors"))
    for key, value in weights.items():
        if key.startswith(("encoder.", "quant_conv.")):
            assert torch.equal(frozen[key], value), key
    assert any(not torch.equal(frozen[k], v) for k, v in weights.items() if k.startswith("decoder."))
    assert (
        json.loads((tiny_vae / "_train" / "frozen-encoder" / "config.json").read_text())["scaling_factor"]
        == cfg["scaling_factor"]
    )


def test_vae_recipe_refuses_to_overwrite_and_checks_seed(tiny_vae):
    from craft_bench.mini.train import train_vae

    with pytest.raises(UserError, match="--resume"):
        train_vae(tiny_vae, seed=3, steps=2, device="cpu", **TINY)
    with pytest.raises(UserError, match="seed"):
        train_vae(tiny_vae, seed=4, steps=2, device="cpu", resume=True, **TINY)


def _states(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "_train" / "state" / "state.safetensors"))


def test_base_recipe_resume_continues_the_same_run(tiny_vae, tmp_path):
    from craft_bench.mini.train import train_base

    kw = dict(vae_dir=tiny_vae, n_pairs=8, snapshot_every=2, **TINY)
    straight = train_base(tmp_path / "a", seed=1, steps=3, device="cpu", **kw)
    train_base(tmp_path / "b", seed=1, steps=1, device="cpu", **kw)  # "killed" after its step-1 checkpoint
    resumed = train_base(tmp_path / "b", seed=1, steps=3, device="cpu", resume=True, **kw)
    assert straight["steps"] == resumed["steps"] == 3
    a, b = _states(tmp_path / "a"), _states(tmp_path / "b")
    assert a.keys() == b.keys()
    for key in a:  # equal up to float rounding (kernels may pick another summation order after a reload)
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6, msg=key)
    other = train_base(tmp_path / "c", seed=2, steps=1, device="cpu", **kw)
    key = "module.unet.conv_in.weight"
    assert not torch.equal(_states(tmp_path / "c")[key], _states(tmp_path / "b")[key])
    assert other["files"]["unet/config.json"] == straight["files"]["unet/config.json"]
    assert (tmp_path / "a" / "_train" / "snapshots" / "step-000002" / "model_index.json").is_file()

    from craft_bench.models import load_pipeline

    pipe = load_pipeline(tmp_path / "a", "sdxl", "cpu", "float32")
    images = pipe(
        ["a photo of a red circle"],
        num_inference_steps=2,
        height=64,
        width=64,
        output_type="np",
        generator=torch.Generator().manual_seed(0),
    ).images
    assert images.shape == (1, 64, 64, 3) and np.isfinite(images).all()

    # The recipe's folders (final and snapshots) sample as the mini preset, not as SDXL (50 steps, batch 4).
    from craft_bench.mini.model import SAMPLER
    from craft_bench.models import resolve_model

    for folder in (tmp_path / "a", tmp_path / "a" / "_train" / "snapshots" / "step-000002"):
        assert resolve_model(str(folder))[1] == SAMPLER


def test_base_lr_schedule_is_warmup_stable_decay():
    from craft_bench.train.loop import Schedule

    wsd = Schedule("wsd", warmup=10, cooldown=0.2, warmup_style="replace")  # the base recipe's schedule
    lr = wsd.lr
    assert lr(0, 100, 1.0) == pytest.approx(0.1)
    assert lr(9, 100, 1.0) == 1.0
    # Before the cooldown the rate does not depend on the run length: a longer run resumes exactly.
    assert [lr(s, 100, 1.0) for s in range(80)] == [lr(s, 500, 1.0) for s in range(80)]
    decay = [lr(s, 100, 1.0) for s in range(80, 100)]
    assert decay[0] == 1.0 and decay[-1] == pytest.approx(0.05) and all(a > b for a, b in zip(decay, decay[1:]))
    assert Schedule("wsd", warmup=10, cooldown=0.0).lr(5000, 100, 1.0) == 1.0


def test_base_resume_refuses_to_extend_a_cooled_down_run(tiny_vae, tmp_path):
    from craft_bench.mini.train import train_base

    kw = dict(vae_dir=tiny_vae, n_pairs=8, snapshot_every=0, warmup=1, cooldown=0.5, **TINY)
    train_base(tmp_path / "a", seed=1, steps=4, device="cpu", **kw)
    with pytest.raises(UserError, match="cooldown"):
        train_base(tmp_path / "a", seed=1, steps=8, device="cpu", resume=True, **kw)


def test_folder_sampler_hint_is_validated(tmp_path, tiny_sdxl):
    import shutil

    from craft_bench.models import SDXL, resolve_model

    folder = tmp_path / "m"
    shutil.copytree(tiny_sdxl, folder)
    plain = resolve_model(str(folder))[1]
    assert (plain.steps, plain.batch_size, plain.height) == (SDXL.sampler.steps, SDXL.sampler.batch_size, 64)
    (folder / "craft_bench.json").write_text(json.dumps({"sampler": {"steps": "7", "guidance_scale": 2}}))
    hinted = resolve_model(str(folder))[1]
    assert (hinted.steps, hinted.guidance_scale, hinted.height) == (7, 2.0, 64)
    for bad in ("{not json", json.dumps({"sampler": {"stpes": 7}}), json.dumps({"sampler": {"steps": None}}), "[1]"):
        (folder / "craft_bench.json").write_text(bad)
        with pytest.raises(UserError, match="craft_bench.json"):
            resolve_model(str(folder))


def test_cli_validates_input(tmp_path):
    from craft_bench.mini.cli import main

    with pytest.raises(UserError, match="invalid choice"):
        main(["train", "unet"])
    with pytest.raises(UserError, match="--steps"):
        main(["train", "vae", "--steps", "0", "--out", str(tmp_path)])
    with pytest.raises(UserError, match="--device"):
        main(["train", "vae", "--device", "tpu", "--out", str(tmp_path)])
    with pytest.raises(UserError, match="--vae"):
        main(["train", "clip", "--vae", str(tmp_path)])
    with pytest.raises(UserError, match="no trained VAE"):
        main(["train", "base", "--vae", str(tmp_path / "nothing"), "--out", str(tmp_path / "b"), "--no-progress"])


def test_cli_runs_a_recipe(tmp_path, capsys):
    from craft_bench.mini.cli import main

    assert (
        main(
            [
                "train",
                "vae",
                "--steps",
                "1",
                "--seed",
                "5",
                "--out",
                str(tmp_path / "v"),
                "--device",
                "cpu",
                "--no-progress",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("vae: ") and "diffusion_pytorch_model.safetensors" in out
    assert (tmp_path / "v" / "config.json").is_file()


# --------------------------------------------------------------------------- shipped weights


def test_shipped_weights_load_through_the_real_path_and_generate_deterministically():
    from craft_bench.mini.model import BASE_DIR, MINI
    from craft_bench.models import load_pipeline, resolve_model

    spec, sampler, path = resolve_model("mini")
    assert path == BASE_DIR and spec.family == "sdxl" and sampler == MINI.sampler
    assert (sampler.height, sampler.width) == (64, 64)
    pipe = load_pipeline(path, spec.family, "cpu", "float32", scheduler=sampler.scheduler)
    assert type(pipe).__name__ == "StableDiffusionXLPipeline"
    prompts = ["a photo of a red circle", "a photo of two blue squares"]

    def sample(seed: int) -> np.ndarray:
        gens = [torch.Generator().manual_seed(seed + i) for i in range(len(prompts))]
        return pipe(
            prompts,
            num_inference_steps=sampler.steps,
            guidance_scale=sampler.guidance_scale,
            height=64,
            width=64,
            generator=gens,
            output_type="np",
        ).images

    a, b, c = sample(0), sample(0), sample(100)
    assert a.shape == (2, 64, 64, 3)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 1e-3
    assert a.std() > 0.05  # a trained model draws shapes, not a flat field
