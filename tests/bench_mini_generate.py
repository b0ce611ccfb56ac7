"""Generation throughput of the shipped mini model with its default sampler (issue 3 asks >= 10 images/s at batch 16).

Run: ``pytest tests/bench_mini_generate.py --benchmark-enable -p no:cacheprovider`` (2 CPU threads by
default; ``CRAFT_BENCH_THREADS`` overrides). The median of the rounds is the number to quote.
"""

from __future__ import annotations

import os

import pytest
import torch

BATCH = 16


@pytest.fixture(scope="module")
def mini_pipe():
    from craft_bench.models import load_pipeline, resolve_model

    torch.set_num_threads(int(os.environ.get("CRAFT_BENCH_THREADS", "2")))
    spec, sampler, path = resolve_model("mini")
    return load_pipeline(path, spec.family, "cpu", "float32", scheduler=sampler.scheduler), sampler


def test_generate_batch16_default_sampler(benchmark, mini_pipe):
    pipe, sampler = mini_pipe
    prompts = [
        f"a photo of {n} {c} squares"
        for n, c in zip(["two", "three", "four", "two"] * 4, ["red", "blue", "green", "pink"] * 4)
    ]

    def run():
        gens = [torch.Generator().manual_seed(i) for i in range(BATCH)]
        return pipe(
            prompts,
            num_inference_steps=sampler.steps,
            guidance_scale=sampler.guidance_scale,
            height=sampler.height,
            width=sampler.width,
            generator=gens,
            output_type="pil",
        ).images

    images = benchmark.pedantic(run, rounds=5, warmup_rounds=1, iterations=1)
    assert len(images) == BATCH and images[0].size == (64, 64)
    stats = getattr(benchmark, "stats", None)
    if stats is not None and stats.stats.median:
        benchmark.extra_info["images_per_s_median"] = BATCH / stats.stats.median
        benchmark.extra_info["steps"] = sampler.steps
        benchmark.extra_info["threads"] = torch.get_num_threads()
