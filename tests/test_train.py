"""The shared trainer: the loop (resume, NaN guard, schedules, accumulation), fine-tuning a tiny SDXL (LoRA and
full, loadable by plain diffusers), cached encodings, and two processes training like one."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from craft_bench.errors import UserError
from craft_bench.train.loop import Loop, LoopSpec, Schedule, Task

TESTS = Path(__file__).resolve().parent


class Regression(Task):
    """y = Xw + noise, fitted by a linear layer; batches drawn from (seed, step)."""

    name = "regression"

    def __init__(self, nan_at: int | None = None) -> None:
        torch.manual_seed(0)
        self.layer = torch.nn.Linear(8, 1)
        self.w = torch.randn(8, 1)
        self.nan_at = nan_at

    def modules(self):
        return {"layer": self.layer}

    def batch(self, step):
        g = torch.Generator().manual_seed(1000 + step)
        x = torch.randn(16, 8, generator=g)
        return {"x": x, "y": x @ self.w + 0.1 * torch.randn(16, 1, generator=g)}

    def loss(self, batch, step):
        loss = ((self.prepared["layer"](batch["x"]) - batch["y"]) ** 2).mean()
        if self.nan_at is not None and step + 1 >= self.nan_at:
            loss = loss * float("nan")
        return loss, {"mse": float(loss.detach())}


def weights(task):
    return torch.cat([p.detach().flatten() for p in task.layer.parameters()])


def spec(**kw):
    base = dict(steps=10, lr=0.05, ckpt_every=3, ema_decay=0.9, schedule=Schedule("cosine", warmup=2))
    base.update(kw)
    return LoopSpec(**base)


def test_a_killed_run_resumes_to_the_same_weights(tmp_path):
    full = Regression()
    Loop(full, spec(), tmp_path / "a" / "state", progress=False).run()
    part = Regression()
    r1 = Loop(part, spec(), tmp_path / "b" / "state", progress=False).run(stop_after=4)  # "killed" after step 4
    assert r1.steps == 4
    again = Regression()  # a fresh process: new module, state from disk (checkpoint at step 4)
    loop = Loop(again, spec(), tmp_path / "b" / "state", progress=False)
    r2 = loop.run()
    assert r2.resumed_from == 4 and r2.steps == 10
    assert torch.equal(weights(full), weights(again))
    with loop.ema_weights():  # the EMA is checkpointed too
        ema = weights(again)
    full_loop = Loop(Regression(), spec(), tmp_path / "a" / "state", progress=False)
    full_loop._build()
    full_loop._resume()
    with full_loop.ema_weights():
        assert torch.equal(ema, weights(full_loop.task))
    a = (tmp_path / "a" / "train_log.jsonl").read_text().splitlines()
    b = (tmp_path / "b" / "train_log.jsonl").read_text().splitlines()
    assert a == b and len(a) == 10  # the resumed run's log is the uninterrupted run's


def test_training_reduces_the_loss(tmp_path):
    task = Regression()
    result = Loop(
        task, spec(steps=150, lr=0.1, ema_decay=0.0, schedule=Schedule()), tmp_path / "state", progress=False
    ).run()
    assert result.history[-1]["loss"] < 0.05 < result.history[0]["loss"]  # noise floor 0.01


def test_a_nan_loss_stops_with_one_line_and_keeps_the_last_good_checkpoint(tmp_path):
    task = Regression(nan_at=5)
    with pytest.raises(UserError) as err:
        Loop(task, spec(), tmp_path / "state", progress=False).run()
    msg = str(err.value)
    assert "\n" not in msg and "step 5" in msg and "step 3" in msg and "lower the learning rate" in msg
    meta = json.loads((tmp_path / "state" / "state.json").read_text())
    assert meta["step"] == 3  # the checkpoint before the NaN is intact
    resumed = Loop(Regression(), spec(), tmp_path / "state", progress=False)
    assert resumed.run(stop_after=4).resumed_from == 3


def test_schedules():
    s = Schedule("wsd", warmup=10, cooldown=0.2, warmup_style="replace")
    assert s.lr(0, 100, 1.0) == pytest.approx(0.1) and s.lr(50, 100, 1.0) == 1.0
    assert s.lr(90, 100, 1.0) == pytest.approx(0.5) and s.lr(99, 100, 1.0) == pytest.approx(0.05)
    c = Schedule("cosine", warmup=0, floor=0.1)
    assert c.lr(0, 100, 1.0) == 1.0 and c.lr(100, 100, 1.0) == pytest.approx(0.1)
    assert s.resumable(70, 100, 200) and not s.resumable(90, 100, 200) and not c.resumable(5, 100, 200)
    with pytest.raises(ValueError):
        LoopSpec(steps=0, lr=1e-3)
    with pytest.raises(ValueError):
        LoopSpec(steps=1, lr=float("nan"))


def test_resume_refuses_another_task_or_seed(tmp_path):
    Loop(Regression(), spec(), tmp_path / "state", progress=False).run(stop_after=3)
    with pytest.raises(UserError, match="cannot resume"):
        Loop(Regression(), spec(seed=7), tmp_path / "state", progress=False).run()


# --------------------------------------------------------------------------- fine-tuning a tiny SDXL


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    from PIL import Image

    from craft_bench.mini.scenes import random_scene, render

    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    out = []
    for i in range(8):
        path = folder / f"{i}.png"
        Image.fromarray(render(random_scene(rng))).save(path)
        out.append({"image": str(path), "prompt": f"a photo of shape {i % 3}", "weight": 1.0 + i / 8})
    return out


def sft_loss(batch, model):
    from craft_bench.train.diffusion import denoising_error

    err = denoising_error(model, batch["image"], batch)
    return (batch["weight"] * batch["snr_weight"] * err).mean(), {"mse": float(err.detach().mean())}


def fit_tiny(tiny_sdxl, examples, root, lora_rank=0, steps=4, stop_after=None, work="work", out="out", **kw):
    from craft_bench.train.diffusion import TrainConfig, fit, resolved

    settings = resolved(TrainConfig(lr=1e-3, steps=steps, batch_size=4, lora_rank=lora_rank, ckpt_every=2, **kw), {})
    return fit(
        examples,
        sft_loss,
        base_dir=tiny_sdxl,
        family="sdxl",
        results_root=root,
        work_dir=root / work,
        out_dir=root / out,
        settings=settings,
        seed=0,
        device="cpu",
        number_fields=("weight",),
        progress=False,
        stop_after=stop_after,
    )


def test_full_fine_tuning_saves_a_diffusers_unet_that_resumes_exactly(tiny_sdxl, examples, tmp_path):
    from diffusers import UNet2DConditionModel

    whole = fit_tiny(tiny_sdxl, examples, tmp_path, work="w1", out="o1")
    assert whole.files == ["unet/"] and whole.loop.steps == 4
    assert fit_tiny(tiny_sdxl, examples, tmp_path, work="w2", out="o2", stop_after=2) is None  # "killed" at step 2
    resumed = fit_tiny(tiny_sdxl, examples, tmp_path, work="w2", out="o2")
    assert resumed.loop.resumed_from == 2
    a = UNet2DConditionModel.from_pretrained(tmp_path / "o1" / "unet").state_dict()
    b = UNet2DConditionModel.from_pretrained(tmp_path / "o2" / "unet").state_dict()
    base = UNet2DConditionModel.from_pretrained(tiny_sdxl / "unet").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], base[k]) for k in a)  # it did train
    assert resumed.cache_misses == 0 and resumed.cache_hits > 0  # latents and embeddings came from the cache


def test_lora_saves_weights_plain_diffusers_loads(tiny_sdxl, examples, tmp_path):
    from diffusers import StableDiffusionXLPipeline

    result = fit_tiny(tiny_sdxl, examples, tmp_path, lora_rank=4, steps=6)
    assert result.files == ["pytorch_lora_weights.safetensors"]
    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl)
    kwargs = dict(prompt="a photo of shape 1", num_inference_steps=2, output_type="np", height=64, width=64)
    before = pipe(generator=torch.Generator().manual_seed(0), **kwargs).images
    pipe.load_lora_weights(tmp_path / "out")  # plain diffusers, nothing of craft-bench
    after = pipe(generator=torch.Generator().manual_seed(0), **kwargs).images
    assert np.abs(after - before).max() > 0


def test_lora_reference_is_the_base_with_the_adapter_disabled(tiny_sdxl):
    from craft_bench.train.diffusion import DiffusionModel

    model = DiffusionModel(tiny_sdxl, "sdxl", "cpu", lora_rank=4)
    with torch.no_grad():
        for n, p in model.unet.named_parameters():
            if "lora_B" in n:
                p.add_(0.5)  # a trained adapter
    cond = {k: v.unsqueeze(0) for k, v in model.empty_condition().items()}
    x, t = torch.randn(1, 4, 32, 32), torch.tensor([500])
    with torch.no_grad():
        trained = model.predict(x, t, cond)
    with model.reference():
        ref = model.predict(x, t, cond)
    from diffusers import UNet2DConditionModel

    plain = UNet2DConditionModel.from_pretrained(tiny_sdxl / "unet")
    with torch.no_grad():
        expect = plain(
            x,
            t,
            encoder_hidden_states=cond["embeds"],
            added_cond_kwargs={"text_embeds": cond["pooled"], "time_ids": cond["time_ids"]},
        ).sample
    assert torch.allclose(ref, expect, atol=1e-5) and not torch.allclose(trained, expect, atol=1e-3)


def test_sdxl_conditioning_is_what_the_pipeline_uses(tiny_sdxl):
    from diffusers import StableDiffusionXLPipeline

    from craft_bench.train.diffusion import DiffusionModel

    model = DiffusionModel(tiny_sdxl, "sdxl", "cpu")
    mine = model.encode_prompts(["a photo of a red circle"])
    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl)
    embeds, _, pooled, _ = pipe.encode_prompt("a photo of a red circle", do_classifier_free_guidance=False)
    assert torch.allclose(mine["embeds"], embeds, atol=1e-5) and torch.allclose(mine["pooled"], pooled, atol=1e-5)
    assert mine["time_ids"].tolist() == [[64, 64, 0, 0, 64, 64]]  # original size, crop corner, target size


def test_sd15_fine_tuning(tiny_sd15, examples, tmp_path):
    from craft_bench.train.diffusion import TrainConfig, fit, resolved

    settings = resolved(TrainConfig(lr=1e-3, steps=2, batch_size=4, lora_rank=2), {})
    r = fit(
        examples,
        sft_loss,
        base_dir=tiny_sd15,
        family="sd15",
        results_root=tmp_path,
        work_dir=tmp_path / "w",
        out_dir=tmp_path / "o",
        settings=settings,
        seed=0,
        device="cpu",
        number_fields=("weight",),
        progress=False,
    )
    assert r.loop.steps == 2 and (tmp_path / "o" / "pytorch_lora_weights.safetensors").is_file()


def test_two_processes_train_like_one(tiny_sdxl, examples, tmp_path):
    """Two CPU processes (gloo, torchrun) at the same global batch end with the same weights as one."""
    (tmp_path / "examples.json").write_text(json.dumps(examples))
    script = TESTS / "ddp_fit.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(TESTS)}
    for n, name in ((1, "one"), (2, "two")):
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={n}",
            str(script),
            str(tiny_sdxl),
            str(tmp_path / "examples.json"),
            str(tmp_path / name),
        ]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    from diffusers import UNet2DConditionModel

    one = UNet2DConditionModel.from_pretrained(tmp_path / "one" / "out" / "unet").state_dict()
    two = UNet2DConditionModel.from_pretrained(tmp_path / "two" / "out" / "unet").state_dict()
    base = UNet2DConditionModel.from_pretrained(tiny_sdxl / "unet").state_dict()
    d1 = torch.cat([(one[k] - base[k]).flatten() for k in one])
    d2 = torch.cat([(two[k] - base[k]).flatten() for k in one])
    # The same updates up to float summation order (gradients averaged over processes; measured 1.8e-5 relative).
    assert float((d1 - d2).norm() / d1.norm()) < 1e-4
    logs = [(tmp_path / name / "work" / "train_log.jsonl").read_text() for name in ("one", "two")]
    assert logs[0] == logs[1] and len(logs[0].splitlines()) == 3  # same loss and gradient norm at every step
    info = json.loads((tmp_path / "two" / "info.json").read_text())
    assert info == {"processes": 2, "steps": 3}


def test_adafactor_gradient_checkpointing_ema_and_min_snr(tiny_sdxl, examples, tmp_path):
    """The optional parts of the loop run: Adafactor (transformers), gradient checkpointing, EMA, min-SNR, cosine."""
    r = fit_tiny(
        tiny_sdxl,
        examples,
        tmp_path,
        optimizer="adafactor",
        gradient_checkpointing=True,
        ema_decay=0.9,
        snr_gamma=5.0,
        schedule="cosine",
        warmup=1,
        timestep_min=0.5,
    )
    assert r.loop.steps == 4 and all(np.isfinite(h["loss"]) for h in r.loop.history)
    assert r.train_settings["optimizer"] == "adafactor"


def test_sampled_latents_are_kept_decode_to_the_image_and_train(tiny_sdxl, tmp_path):
    """generate(keep_latents=True) stores the latents the sampler produced; the VAE decodes them to the stored
    image (up to 8-bit rounding), and latents=sampled trains on them instead of re-encoding the PNG."""
    from diffusers import AutoencoderKL

    from craft_bench.api import Checkpoint, PromptItem
    from craft_bench.generate import generate, plan
    from craft_bench.models import load_pipeline
    from craft_bench.spec import ModelSpec, SamplerSpec
    from craft_bench.store import Store
    from craft_bench.train.diffusion import TrainConfig, fit, resolved

    store = Store(tmp_path / "res")
    model = ModelSpec(name="tiny", source=str(tiny_sdxl), family="sdxl", digest="d0")
    sampler = SamplerSpec(steps=2, guidance_scale=2.0, height=64, width=64, batch_size=2)
    requests = plan(
        [PromptItem(id="p", prompt="a photo of a circle", n_images=3)], Checkpoint(model=model), sampler, 0, "float32"
    )
    factory = lambda: load_pipeline(tiny_sdxl, "sdxl", "cpu", "float32")  # noqa: E731
    generate(requests, store, factory, sampler, progress=False)  # images first, without latents
    assert not any(store.latent_path(r.key).is_file() for r in requests)
    stats = generate(requests, store, factory, sampler, progress=False, keep_latents=True)
    assert stats.generated == 3  # images without their latents are made again
    vae = AutoencoderKL.from_pretrained(tiny_sdxl / "vae")
    for r in requests:
        z = load_file(str(store.latent_path(r.key)))["latents"]
        with torch.no_grad():
            x = vae.decode(z[None] / vae.config.scaling_factor).sample[0]
        pixels = ((x / 2 + 0.5).clamp(0, 1).permute(1, 2, 0).numpy() * 255).round()
        stored = np.asarray(store.load_image(r.key), dtype=np.float64)
        assert np.abs(pixels - stored).max() <= 1.0
    examples = [
        {"image": str(store.image_path(r.key)), "image_key": r.key, "prompt": "a photo of a circle", "weight": 1.0}
        for r in requests
    ]
    settings = resolved(TrainConfig(lr=1e-3, steps=2, batch_size=2, lora_rank=0, latents="sampled"), {})
    result = fit(
        examples,
        sft_loss,
        base_dir=tiny_sdxl,
        family="sdxl",
        results_root=store.root,
        work_dir=tmp_path / "w",
        out_dir=tmp_path / "o",
        settings=settings,
        seed=0,
        device="cpu",
        number_fields=("weight",),
        progress=False,
    )
    assert (
        result.loop.steps == 2 and not (store.root / "cache" / "latents").exists()
    )  # no latent was encoded: they were read
    with pytest.raises(ValueError, match="latents must be"):
        TrainConfig(latents="pixels")
