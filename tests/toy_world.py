"""A second toy world, all in this one file (test-only): its defaults, a model that lives in it, and their
registration. Loaded through CRAFT_BENCH_PLUGINS=toy_world, the route a user's own world takes; nothing else in
craft-bench changes for runs on ``--model toy-mini`` to pick up these defaults (tests/test_world.py).

The model's weights are the mini model's, in a folder whose craft_bench.json declares ``"world": "toy-world"`` (the
tests make it; ``$CRAFT_BENCH_TOY_MINI`` points the preset at it). The world differs from mini in every default a run
asks it for."""

from __future__ import annotations

from pathlib import Path

from craft_bench import registry
from craft_bench.mini.model import SAMPLER
from craft_bench.models import ModelPreset
from craft_bench.world import World

TOY_WORLD = World(
    name="toy-world",
    description="test-only second toy world: the mini grammar's prompts under other defaults",
    prompts="mini",
    detector="mini-v1",
    judge="mini-aes",
    rewards=("mini-aes",),
    pool_rewards=("mini-aes", "mini-clip"),
    candidate_guidance=2.0,
    paraphrases="toy_world:rewrites",
    controlnet=None,
    depth_estimator="mini",
    train_preset={"lr": 1e-4, "steps": 7, "batch_size": 4, "lora_rank": 2},
)

TOY_MODEL = ModelPreset(
    name="toy-mini",
    family="sdxl",
    description="the mini model's weights in the toy world (test-only)",
    env_var="CRAFT_BENCH_TOY_MINI",
    local_dir=str(Path(__file__).parent / "toy-mini"),
    sampler=SAMPLER,
    missing_hint="copy the mini weights, declare world toy-world, set CRAFT_BENCH_TOY_MINI",
)


def rewrites(prompt: str) -> list[str]:
    return [prompt, f"{prompt}, in toy land", f"toy land: {prompt}"]


registry.worlds.register("toy-world", TOY_WORLD)
registry.models.register("toy-mini", TOY_MODEL)
