"""Core benchmarks (not part of the default test run). Run:

    python -m pytest tests/bench_core.py --benchmark-enable --benchmark-columns=median,iqr,min,rounds \
        --benchmark-json=docs/bench/core_cpu.json   # with commit, versions and device

Quotes medians; machines here are noisy, so compare ratios measured in the same run.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from craft_bench.api import Checkpoint, PromptItem
from craft_bench.generate import plan, sample
from craft_bench.models import load_pipeline, resolve_model


@pytest.fixture(scope="module")
def tiny_pipe(tiny_sdxl):
    spec, sampler, path = resolve_model(str(tiny_sdxl))
    return load_pipeline(path, spec.family, "cpu", "float32"), spec, sampler


@pytest.mark.parametrize("batch", [1, 8])
def test_tiny_sdxl_generation_throughput(benchmark, tiny_pipe, batch):
    """Tiny SDXL, 64x64, 10 Euler steps, CFG 5 (PLATFORM.md's reference setting)."""
    from dataclasses import replace

    pipe, spec, sampler = tiny_pipe
    sampler = replace(sampler, steps=10, guidance_scale=5.0, batch_size=batch)
    items = [PromptItem(f"p{i}", f"a photo of object {i}") for i in range(batch)]
    reqs = plan(items, Checkpoint(model=spec), sampler, 0, "float32")
    images = benchmark.pedantic(sample, args=(pipe, reqs, sampler), rounds=7, warmup_rounds=1)
    assert len(images) == batch
    benchmark.extra_info["images_per_s_median"] = batch / benchmark.stats.stats.median
    print(
        f"\nbatch {batch}: {batch / benchmark.stats.stats.median:.2f} images/s (median of "
        f"{benchmark.stats.stats.rounds})"
    )


def test_help_wall_time(benchmark):
    run = lambda: subprocess.run([sys.executable, "-m", "craft_bench", "--help"], capture_output=True, check=True)  # noqa: E731
    benchmark.pedantic(run, rounds=10, warmup_rounds=1)
    print(f"\n--help median {benchmark.stats.stats.median:.3f} s")


def test_cache_hit_rerun(benchmark, cli, tiny_sdxl, tmp_path):
    args = [
        "run",
        "--method",
        "vanilla",
        "--suite",
        "toy",
        "--model",
        str(tiny_sdxl),
        "--out",
        str(tmp_path),
        "--set",
        "steps=10",
        "--no-progress",
    ]
    cli(*args)  # the finished run
    benchmark.pedantic(lambda: cli(*args, subprocess=True), rounds=5, warmup_rounds=1)
    print(f"\ncache-hit rerun of a finished run (whole process) median {benchmark.stats.stats.median:.3f} s")


def test_plan_image_keys_10k(benchmark):
    """Seeds and cache keys of 10,000 images (every run computes them, cached or not)."""
    from craft_bench.spec import ModelSpec, SamplerSpec

    items = [PromptItem(f"p{i}", f"a photo of object {i}", n_images=4) for i in range(2500)]
    model = ModelSpec("m", "m", "sdxl", "0" * 64)
    reqs = benchmark(plan, items, Checkpoint(model=model), SamplerSpec(), 0, "float32")
    assert len(reqs) == 10_000


def test_cache_listing_1000_images(benchmark, tmp_path):
    """``Store.has_image`` (exists and ends with IEND) over 1,000 cached PNGs: the cost of a cache-hit check."""
    import numpy as np
    from PIL import Image

    from craft_bench.store import Store

    store = Store(tmp_path)
    rng = np.random.default_rng(0)
    keys = [f"{i:064x}" for i in range(1000)]
    for k in keys:
        store.save_image(k, Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)))
    assert benchmark(lambda: sum(store.has_image(k) for k in keys)) == 1000


@pytest.mark.parametrize("path", ["craft-bench", "plain-loop"])
def test_generate_16_images_tiny_sdxl(benchmark, tiny_pipe, tmp_path, path):
    """16 images, 10 steps, CFG 5 on the tiny SDXL: craft-bench's generate() (batches of 8, PNGs written in a background
    thread) vs a plain loop of one pipeline call per prompt, PNG saved after each."""
    from dataclasses import replace

    from craft_bench.generate import generate
    from craft_bench.store import Store

    pipe, spec, sampler = tiny_pipe
    sampler = replace(sampler, steps=10, guidance_scale=5.0, batch_size=8)
    items = [PromptItem(f"p{i}", f"a photo of object {i}") for i in range(16)]
    rounds = iter(range(100))

    def ours():
        store = Store(tmp_path / f"s{next(rounds)}")
        return generate(
            plan(items, Checkpoint(model=spec), sampler, 0, "float32"), store, lambda: pipe, sampler, progress=False
        )

    def plain():
        import torch

        for i, item in enumerate(items):
            image = pipe(
                item.prompt,
                num_inference_steps=10,
                guidance_scale=5.0,
                height=sampler.height,
                width=sampler.width,
                generator=torch.Generator().manual_seed(i),
            ).images[0]
            image.save(tmp_path / f"{i}.png")

    benchmark.pedantic(ours if path == "craft-bench" else plain, rounds=3, warmup_rounds=1)
    benchmark.extra_info["images_per_s_median"] = 16 / benchmark.stats.stats.median
