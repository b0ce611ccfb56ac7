"""ControlNet suites (controlnet-canny, controlnet-depth): metric functions against hand-computed values, the mini
world's conditions and depth estimator, the mini ControlNet recipes (smoke + resume), and both suites end to end on
mini (shipped ControlNets) and on a tiny SDXL / SD1.5 with tiny ControlNets, adapters and a tiny DPT, loaded through
the real loading path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from craft_bench.suites.controlnet import depth_rmse, edge_f1, edge_ssim, msssim_betas

# --------------------------------------------------------------------------- metric functions


def test_edge_f1_hand_computed() -> None:
    pred = np.array([[255, 0], [255, 0]], np.uint8)
    target = np.array([[255, 255], [0, 0]], np.uint8)
    assert edge_f1(pred, target) == pytest.approx(0.5)  # TP 1, FP 1, FN 1: 2 / (2 + 1 + 1)
    assert edge_f1(target, target) == 1.0
    assert edge_f1(np.zeros((3, 3), np.uint8), target[:1, :1].repeat(3, 0).repeat(3, 1)) == 0.0  # nothing found
    assert edge_f1(np.zeros((3, 3)), np.zeros((3, 3))) == 0.0  # torchmetrics' zero-division convention


def test_msssim_scales_follow_image_size() -> None:
    assert msssim_betas(512) == (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
    assert len(msssim_betas(161)) == 5 and len(msssim_betas(160)) == 4
    three = msssim_betas(64)
    assert len(three) == 3 and sum(three) == pytest.approx(1.0) and three[0] == pytest.approx(0.0448 / 0.6305)
    rng = np.random.default_rng(0)
    edges = (rng.random((64, 64)) > 0.9).astype(np.uint8) * 255
    assert edge_ssim(edges, edges) == pytest.approx(1.0, abs=1e-5)
    assert edge_ssim(edges, 255 - edges) < 0.2


def test_depth_rmse_hand_computed() -> None:
    condition = np.array([[0, 100], [200, 50]], np.uint8)  # min-max -> 0, 127.5, 255, 63.75 -> uint8 0, 127, 255, 63
    estimated = np.array([[1.0, 2.0], [4.0, 0.0]])  # / max -> 0.25, 0.5, 1, 0 -> uint8 63, 127, 255, 0
    assert depth_rmse(condition, estimated) == pytest.approx(np.sqrt((63**2 + 63**2) / 4))
    assert depth_rmse(condition, condition.astype(float)) == 0.0  # the condition re-estimated exactly (min 0)
    assert depth_rmse(np.full((2, 2), 7, np.uint8), np.zeros((2, 2))) == 0.0  # flat maps: both all zero


def test_canny_outlines_a_flat_square() -> None:
    from craft_bench.controls import canny
    from craft_bench.mini.scenes import Obj, Scene, render

    image = render(Scene((Obj("square", "blue", 32, 32, 20),)))
    edges = canny([image, np.full((64, 64, 3), 140, np.uint8)])
    assert edges.dtype == np.uint8 and set(np.unique(edges[0])) == {0, 255}
    ys, xs = np.nonzero(edges[0])
    assert 20 <= ys.min() and ys.max() <= 43 and 20 <= xs.min() and xs.max() <= 43  # around the square's border only
    assert not edges[0][26:38, 26:38].any()  # nothing inside the flat interior
    assert not edges[1].any()  # a flat image has no edges


# --------------------------------------------------------------------------- the mini world's conditions


def test_mini_depth_map_is_painted_from_the_scene_and_reestimated_on_renders() -> None:
    from craft_bench.mini.controlnet import MiniDepthEstimator, condition, depth_map, nearness
    from craft_bench.mini.scenes import MAX_SIZE, MIN_SIZE, Obj, Scene, random_scene, render

    scene = Scene((Obj("square", "red", 16, 16, MIN_SIZE), Obj("circle", "blue", 44.5, 44.5, MAX_SIZE)))
    d = depth_map(scene)
    assert d[0, 0] == 0.0 and d[16, 16] == pytest.approx(0.25) and d[44, 44] == pytest.approx(1.0)
    assert nearness(MIN_SIZE - 5) == 0.25 and nearness(MAX_SIZE + 5) == 1.0
    cond = condition(scene, "depth")
    assert cond.dtype == np.uint8 and cond[44, 44] == 255 and cond[16, 16] == 63 and cond[0, 0] == 0

    rng = np.random.default_rng(5)
    scenes = [random_scene(rng) for _ in range(12)]
    estimator = MiniDepthEstimator()
    errors = [depth_rmse(condition(s, "depth"), estimator.estimate([render(s)])[0]) for s in scenes]
    assert max(errors) < 1.0, errors
    blank = estimator.estimate([np.full((64, 64, 3), 140, np.uint8)])[0]
    assert not blank.any()
    assert depth_rmse(condition(scenes[0], "depth"), blank) > 30


def test_mini_controlnet_recipe_resumes_to_the_uninterrupted_weights(tmp_path: Path) -> None:
    import torch
    from diffusers import ControlNetModel
    from safetensors import safe_open
    from safetensors.torch import load_file

    from craft_bench.mini.controlnet import train_controlnet

    kw = dict(steps=4, n_pairs=16, batch_size=4, ckpt_every=2, progress=False, warmup=2)
    whole = train_controlnet("canny", tmp_path / "whole", **kw)
    stopped = train_controlnet("canny", tmp_path / "cut", stop_after=2, **kw)
    assert stopped["stopped"] and stopped["steps"] == 2
    resumed = train_controlnet("canny", tmp_path / "cut", resume=True, **kw)
    assert resumed["steps"] == whole["steps"] == 4
    a, b = (load_file(str(tmp_path / run / "_train" / "state" / "state.safetensors")) for run in ("whole", "cut"))
    assert a.keys() == b.keys() and any(k.startswith("module.controlnet.") for k in a)
    for key in a:  # equal up to float rounding (kernels may pick another summation order after a reload)
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6, msg=key)
    zero_conv = "module.controlnet.controlnet_down_blocks.0.weight"
    assert a[zero_conv].abs().sum() > 0  # the zero convolutions have started to learn
    assert resumed["params"] == ControlNetModel.from_pretrained(tmp_path / "cut").num_parameters()
    with safe_open(str(tmp_path / "cut" / "diffusion_pytorch_model.safetensors"), "pt") as fh:
        assert str(fh.get_tensor(next(iter(fh.keys()))).dtype) == "torch.float16"  # shipped as fp16
    depth = train_controlnet("depth", tmp_path / "depth", **{**kw, "steps": 2})
    assert depth["recipe"] == "controlnet-depth" and depth["steps"] == 2


def test_mini_train_cli_offers_the_controlnet_recipes(cli) -> None:
    from craft_bench.mini.cli import build_parser

    usage = build_parser().format_help() + build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert "controlnet-canny" in usage and "controlnet-depth" in usage and "--base" in usage
    bad = cli("mini", "train", "vae", "--base", "x", check=False)
    assert bad.returncode == 2 and "--base applies" in bad.stderr


# --------------------------------------------------------------------------- image keys


def test_controlnet_weights_enter_image_keys_and_plain_keys_stay() -> None:
    from craft_bench.generate import GENERATION_VERSION, image_key
    from craft_bench.spec import SamplerSpec, digest

    s = SamplerSpec()
    plain = image_key("ck", s, 1, "p", "float32")
    assert plain == digest(
        {
            "checkpoint": "ck",
            "sampler": s.key_fields(),
            "seed": 1,
            "prompt": "p",
            "dtype": "float32",
            "control": None,
            "generation_version": GENERATION_VERSION,
        }
    )
    assert image_key("ck", s, 1, "p", "float32", "c", "cn-a") != image_key("ck", s, 1, "p", "float32", "c", "cn-b")


# --------------------------------------------------------------------------- end to end


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("suite,headline", [("controlnet-canny", "edge_f1"), ("controlnet-depth", "depth_rmse")])
def test_mini_suite_end_to_end_with_and_without_the_controlnet(cli, tmp_path: Path, suite: str, headline: str) -> None:
    out = str(tmp_path / "res")
    common = (
        "--method",
        "vanilla",
        "--suite",
        suite,
        "--limit",
        "12",
        "--set",
        "suite.images_per_prompt=1",
        "--out",
        out,
    )
    with_cn = cli.run_json("run", *common)
    m = with_cn["metrics"]
    assert m["overall"]["n"] == 12 and m["overall"]["ci_low"] <= m["overall"]["value"] <= m["overall"]["ci_high"]
    assert {"mini-clip", "mini-aes"} <= set(m)
    assert with_cn["timing"]["generate_s"] > 0
    run_dir = next((tmp_path / "res" / "runs" / suite).iterdir())
    records = _records(run_dir)
    assert all(headline in r and "mini-clip" in r for r in records)
    assert cli("run", *common, "--no-progress").stderr.startswith("cached")

    without = cli.run_json("run", *common, "--set", "suite.controlnet=none")
    assert without["generation"]["generated"] == 12  # other image keys: no ControlNet
    a, b = m["overall"]["value"], without["metrics"]["overall"]["value"]
    # the shipped ControlNet controls: F1 up, RMSE down, against the same conditions, prompts and seeds
    assert (a > b) if headline == "edge_f1" else (a < b), (a, b)
    cmp = cli(
        "compare",
        str(next(p for p in (tmp_path / "res" / "runs" / suite).iterdir() if p != run_dir)),
        str(run_dir),
        "--json",
    )
    overall = next(c for c in json.loads(cmp.stdout)["metrics"] if c["metric"] == "overall")
    assert overall["verdict"] == "better"  # paired on the same conditions, prompts and seeds


def _data_folder(root: Path, with_ready_depth: bool = False) -> Path:
    """Three reference images (mini renders, 64 px) with captions; optionally one row with a ready depth map."""
    from PIL import Image

    from craft_bench.mini.controlnet import condition
    from craft_bench.mini.prompts import geneval_prompts, scene_for
    from craft_bench.mini.scenes import render

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = []
    for k, meta in enumerate(geneval_prompts(1, 11)[:3]):
        scene = scene_for(meta, rng)
        Image.fromarray(render(scene)).save(root / f"{k}.png")
        row = {"file_name": f"{k}.png", "text": meta["prompt"], "category": "a" if k else "b"}
        if with_ready_depth and k == 0:
            Image.fromarray(condition(scene, "depth", 32)).save(root / "0_depth.png")  # resized to 64 px by the suite
            row["control_depth"] = "0_depth.png"
        lines.append(json.dumps(row))
    (root / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_tiny_sdxl_canny_with_a_unet_adapter_under_a_tiny_controlnet(cli, tiny_sdxl: Path, tmp_path: Path) -> None:
    from tiny_models import build_tiny_controlnet

    cn = build_tiny_controlnet(tiny_sdxl, tmp_path / "cn")
    data = _data_folder(tmp_path / "data")
    out = tmp_path / "res"
    args = (
        "--model",
        str(tiny_sdxl),
        "--suite",
        "controlnet-canny",
        "--out",
        str(out),
        "--set",
        f"suite.controlnet={cn}",
        "--set",
        f"suite.data={data}",
        "--set",
        "suite.rewards=mini-clip",
        "--set",
        "suite.images_per_prompt=2",
        "--set",
        "steps=2",
    )
    shifted = cli.run_json("run", "--method", "unetshift", *args)
    assert shifted["metrics"]["overall"]["n"] == 6 and {"ssim", "mini-clip", "edge_f1.a", "edge_f1.b"} <= set(
        shifted["metrics"]
    )
    vanilla = cli.run_json("run", "--method", "vanilla", *args)
    plain = cli.run_json("run", "--method", "vanilla", *args, "--set", "suite.controlnet=none")
    runs = {
        p.name.split("__")[0] + ("-none" if "none" in (p / "run_spec.json").read_text() else ""): p
        for p in (out / "runs" / "controlnet-canny").iterdir()
    }
    keys = {name: [r["image"] for r in _records(p)] for name, p in runs.items()}
    assert len({tuple(k) for k in keys.values()}) == 3  # adapter, ControlNet and none each give other images
    load = out.parent / "res" / "images"
    from PIL import Image

    def pixels(name: str) -> np.ndarray:
        return np.stack([np.asarray(Image.open(load / k[:2] / f"{k}.png")) for k in keys[name]]).astype(float)

    assert np.abs(pixels("unetshift") - pixels("vanilla")).mean() > 1.0  # the method's UNet is under the ControlNet
    assert np.abs(pixels("vanilla") - pixels("vanilla-none")).mean() > 1.0  # the ControlNet steers
    assert vanilla["metrics"]["overall"]["n"] == plain["metrics"]["overall"]["n"] == 6


def test_tiny_sd15_depth_with_a_tiny_dpt_and_a_lora(cli, tiny_sd15: Path, tmp_path: Path) -> None:
    import torch
    from diffusers import StableDiffusionControlNetPipeline, UNet2DConditionModel
    from tiny_models import build_tiny_controlnet, build_tiny_dpt

    cn = build_tiny_controlnet(tiny_sd15, tmp_path / "cn")
    dpt = build_tiny_dpt(tmp_path / "dpt")
    data = _data_folder(tmp_path / "data", with_ready_depth=True)
    out = tmp_path / "res"
    res = cli.run_json(
        "run",
        "--model",
        str(tiny_sd15),
        "--method",
        "vanilla",
        "--suite",
        "controlnet-depth",
        "--out",
        str(out),
        "--set",
        f"suite.controlnet={cn}",
        "--set",
        f"suite.data={data}",
        "--set",
        f"suite.depth_estimator={dpt}",
        "--set",
        "suite.rewards=mini-aes",
        "--set",
        "suite.images_per_prompt=1",
        "--set",
        "steps=2",
    )
    m = res["metrics"]
    assert m["overall"]["n"] == 3 and m["overall"]["higher_is_better"] is False and 0 <= m["overall"]["value"] <= 255
    assert "mini-aes" in m

    # A LoRA on the UNet is fused under the ControlNet by the one pipeline loader.
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from craft_bench.generate import ImageRequest, sample
    from craft_bench.models import load_pipeline
    from craft_bench.spec import SamplerSpec

    unet = UNet2DConditionModel.from_pretrained(tiny_sd15 / "unet")
    unet.add_adapter(
        LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian", target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    )
    with torch.no_grad():  # a trained LoRA: B is no longer zero
        for name, param in unet.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)
    from diffusers.utils import convert_state_dict_to_diffusers

    lora = tmp_path / "lora"
    StableDiffusionControlNetPipeline.save_lora_weights(
        lora, unet_lora_layers=convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    )
    pipe = load_pipeline(tiny_sd15, "sd15", "cpu", "float32", str(lora), controlnet=cn)
    base = load_pipeline(tiny_sd15, "sd15", "cpu", "float32", None, controlnet=cn)
    assert isinstance(pipe, StableDiffusionControlNetPipeline) and pipe.controlnet.config.cross_attention_dim == 32
    control = next(p for p in (out / "controls").rglob("*.png"))
    req = [ImageRequest("x", "a red circle", 0, 3, "k", str(control))]
    spec = SamplerSpec(steps=2, height=64, width=64)
    a, b = sample(pipe, req, spec)[0], sample(base, req, spec)[0]
    assert (
        a.size == (64, 64) and np.abs(np.asarray(a, float) - np.asarray(b, float)).mean() > 0.5
    )  # the LoRA is applied


def test_bad_controlnet_inputs_are_one_line_errors(cli, tiny_sdxl: Path, tiny_sd15: Path, tmp_path: Path) -> None:
    from tiny_models import build_tiny_controlnet

    out = ("--out", str(tmp_path / "res"))
    missing = cli(
        "run",
        "--method",
        "vanilla",
        "--suite",
        "controlnet-canny",
        "--set",
        "suite.controlnet=/no/such/cn",
        *out,
        check=False,
    )
    assert missing.returncode == 2 and "/no/such/cn" in missing.stderr and "Traceback" not in missing.stderr
    not_cn = cli(
        "run",
        "--model",
        str(tiny_sdxl),
        "--method",
        "vanilla",
        "--suite",
        "controlnet-canny",
        *out,
        "--set",
        f"suite.controlnet={tiny_sdxl}",
        check=False,
    )  # a pipeline folder, not a ControlNet
    assert not_cn.returncode == 2 and "not a ControlNet folder" in not_cn.stderr
    cn15 = build_tiny_controlnet(tiny_sd15, tmp_path / "cn15")
    wrong = cli(
        "run",
        "--model",
        str(tiny_sdxl),
        "--method",
        "vanilla",
        "--suite",
        "controlnet-canny",
        *out,
        "--set",
        f"suite.controlnet={cn15}",
        check=False,
    )
    assert wrong.returncode == 2 and "made for another model" in wrong.stderr
    cn = build_tiny_controlnet(tiny_sdxl, tmp_path / "cn")
    need_data = cli(
        "run",
        "--model",
        str(tiny_sdxl),
        "--method",
        "vanilla",
        "--suite",
        "controlnet-canny",
        *out,
        "--set",
        f"suite.controlnet={cn}",
        check=False,
    )
    assert (
        need_data.returncode == 2
        and "suite.data" in need_data.stderr
        and len(need_data.stderr.strip().splitlines()) == 1
    )
    bad_data = tmp_path / "bad"
    bad_data.mkdir()
    (bad_data / "metadata.jsonl").write_text('{"file_name": "nope.png", "text": "x"}\n')
    missing_file = cli(
        "run",
        "--model",
        str(tiny_sdxl),
        "--method",
        "vanilla",
        "--suite",
        "controlnet-canny",
        *out,
        "--set",
        f"suite.controlnet={cn}",
        "--set",
        f"suite.data={bad_data}",
        check=False,
    )
    assert missing_file.returncode == 2 and "nope.png" in missing_file.stderr
