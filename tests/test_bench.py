"""`craft-bench bench`: the public-config architectures, FLOPs counted from a config, and the command end to end on a
tiny model (figures are measured by the command itself, not asserted here: machines differ)."""

from __future__ import annotations

import json

import pytest


def _params(config: dict) -> int:
    import torch
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        return sum(p.numel() for p in UNet2DConditionModel(**config).parameters())


def test_public_configs_build_the_published_architectures():
    """Parameter counts of the released UNets (SDXL base 1.0: 2,567,463,684; SD 1.5: 859,520,964) and text towers."""
    import torch
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from craft_bench.bench import CLIP_BIGG, CLIP_L, SD15_UNET, SDXL_UNET, SDXL_VAE

    assert _params(SDXL_UNET) == 2_567_463_684
    assert _params(SD15_UNET) == 859_520_964
    with torch.device("meta"):
        vae = sum(p.numel() for p in AutoencoderKL(**SDXL_VAE).parameters())
        te1 = sum(p.numel() for p in CLIPTextModel(CLIPTextConfig(vocab_size=49408, **CLIP_L)).parameters())
        te2 = sum(
            p.numel() for p in CLIPTextModelWithProjection(CLIPTextConfig(vocab_size=49408, **CLIP_BIGG)).parameters()
        )
    assert vae == 83_653_863 and te1 == 123_060_480 and te2 == 694_659_840


def test_unet_flops_are_counted_from_the_config_without_weights(tiny_sdxl):
    """Counting on the meta device gives the count of a real forward pass; SDXL's UNet at 1024 px is 6.76 TFLOP per
    image (2 x multiply-adds of every matmul, convolution and attention product)."""
    import torch
    from diffusers import UNet2DConditionModel
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from craft_bench.bench import SD15_UNET, SDXL_UNET, unet_flops, unet_inputs

    unet = UNet2DConditionModel.from_pretrained(tiny_sdxl / "unet")
    x, t, cond = unet_inputs(unet, 2, 8, "sdxl")
    # The math backend spells attention as matmuls, which the counter sees on any device (the CPU's fused kernel it
    # does not count; on the meta device attention is counted either way).
    with FlopCounterMode(display=False) as real, torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        unet(x, t, **cond)
    assert unet_flops(unet.config, 2, 8, "sdxl") == real.get_total_flops() > 0
    sdxl = unet_flops(SDXL_UNET, 1, 128, "sdxl")
    assert sdxl == pytest.approx(6.761e12, rel=1e-3)
    assert unet_flops(SDXL_UNET, 2, 128, "sdxl") == 2 * sdxl  # linear in the batch
    assert unet_flops(SD15_UNET, 1, 64, "sd15") == pytest.approx(0.8033e12, rel=1e-3)


def test_bench_command_on_a_tiny_model(cli, tiny_sdxl, tmp_path):
    out = tmp_path / "bench.json"
    proc = cli(
        "bench",
        "--model",
        str(tiny_sdxl),
        "--steps",
        "2",
        "--images",
        "2",
        "--batch",
        "2",
        "--repeats",
        "1",
        "--train-steps",
        "1",
        "--train-batch",
        "2",
        "--channels-last",
        "--json",
        str(out),
    )
    assert "UNet" in proc.stdout and "plain diffusers" in proc.stdout and "trainer" in proc.stdout
    res = json.loads(out.read_text())
    assert (
        res["resolution"] == 64
        and res["family"] == "sdxl"
        and "git_commit" in res["versions"]
        and res["device"].startswith("cpu")
    )
    u = res["unet"]
    assert (
        u["batch"] == 4
        and u["flops"] > 0
        and u["step_s"] > 0
        and u["mfu"] is None
        and u["attention"] == "AttnProcessor2_0"
    )
    g = res["generate"]
    assert g["plain"]["images_per_s"] > 0 and g["craft_bench"]["images_per_s"] > 0 and g["craft_bench"]["channels_last"]
    assert g["speedup"] == pytest.approx(g["craft_bench"]["images_per_s"] / g["plain"]["images_per_s"])
    t = res["train"]
    assert t["cached"]["median_step_s"] > 0 and t["per_step"]["median_step_s"] > 0 and t["lora_rank"] == 4


@pytest.mark.parametrize(
    "args, expect",
    [
        (["--model", "sdxl-random"], "pass --resolution"),
        (["--model", "sd15-random", "--resolution", "256"], "trainer benchmark needs a GPU"),
        (["--model", "mini", "--parts", "unet,speed"], "choose from unet, generate, train"),
        (["--model", "mini", "--steps", "0"], "--steps 0: give a positive number"),
    ],
)
def test_bench_bad_input_is_one_line(cli, args, expect):
    proc = cli("bench", "--device", "cpu", *args, check=False)
    assert proc.returncode == 2 and expect in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
