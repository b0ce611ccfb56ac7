"""Core benchmarks (not part of the default test run). Run:

    python -m pytest tests/bench_core.py --benchmark-enable --benchmark-columns=median,iqr,min,rounds

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
    print(f"\nbatch {batch}: {batch / benchmark.stats.stats.median:.2f} images/s (median of {benchmark.stats.stats.rounds})")


def test_help_wall_time(benchmark):
    run = lambda: subprocess.run([sys.executable, "-m", "craft_bench", "--help"], capture_output=True, check=True)  # noqa: E731
    benchmark.pedantic(run, rounds=10, warmup_rounds=1)
    print(f"\n--help median {benchmark.stats.stats.median:.3f} s")


def test_cache_hit_rerun(benchmark, cli, tiny_sdxl, tmp_path):
    args = ["run", "--method", "vanilla", "--suite", "toy", "--model", str(tiny_sdxl), "--out", str(tmp_path), "--set", "steps=10", "--no-progress"]
    cli(*args)  # the finished run
    benchmark.pedantic(lambda: cli(*args, subprocess=True), rounds=5, warmup_rounds=1)
    print(f"\ncache-hit rerun of a finished run (whole process) median {benchmark.stats.stats.median:.3f} s")
