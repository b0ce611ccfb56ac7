"""UNet forward cost of the mini model at several widths (what docs/mini.md's "Throughput" table quotes).

Run: ``pytest tests/bench_mini_unet.py --benchmark-enable -p no:cacheprovider`` (2 CPU threads by default;
``CRAFT_BENCH_THREADS`` overrides). One forward pass at batch 32 = one sampling step of a batch of 16 with
classifier-free guidance; random weights (cost does not depend on them). Compare medians within one run.
"""

from __future__ import annotations

import os

import pytest
import torch

WIDTHS = {
    "shipped-48-64-128": {},
    "first-release-64-128-128": dict(
        block_out_channels=(64, 128, 128), attention_head_dim=(2, 4, 4), norm_num_groups=32
    ),
    "32-64-128": dict(block_out_channels=(32, 64, 128), attention_head_dim=(1, 2, 4), norm_num_groups=32),
    "64-64-64": dict(block_out_channels=(64, 64, 64), attention_head_dim=(2, 2, 2), norm_num_groups=32),
    "48-96-128": dict(block_out_channels=(48, 96, 128), attention_head_dim=(2, 3, 4)),
}


@pytest.mark.parametrize("name", list(WIDTHS))
def test_unet_forward_batch32(benchmark, name):
    from diffusers import UNet2DConditionModel

    from craft_bench.mini.model import IMAGE_SIZE, LATENT_CHANNELS, TEXT_WIDTH, TIME_IDS, unet_config

    torch.set_num_threads(int(os.environ.get("CRAFT_BENCH_THREADS", "2")))
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**{**unet_config(), **WIDTHS[name]}).eval()
    batch = 32
    x = torch.randn(batch, LATENT_CHANNELS, IMAGE_SIZE // 4, IMAGE_SIZE // 4)
    t = torch.randint(0, 1000, (batch,))
    text = torch.randn(batch, 77, 2 * TEXT_WIDTH)
    added = {"text_embeds": torch.randn(batch, TEXT_WIDTH), "time_ids": torch.randn(batch, len(TIME_IDS))}

    def run():
        with torch.inference_mode():
            return unet(x, t, encoder_hidden_states=text, added_cond_kwargs=added).sample

    out = benchmark.pedantic(run, rounds=7, warmup_rounds=2, iterations=1)
    assert out.shape == x.shape and torch.isfinite(out).all()
    benchmark.extra_info["params_M"] = round(sum(p.numel() for p in unet.parameters()) / 1e6, 2)
