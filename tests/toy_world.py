"""A second toy world, all in this one file (test-only): its defaults, a model that lives in it, and their
registration. Loaded through CRAFT_BENCH_PLUGINS=toy_world, the route a user's own world takes; nothing else in
craft-bench changes for runs on ``--model toy-mini`` to pick up these defaults (tests/test_world.py).

The model is the mini model's shipped weights under another name; the world differs from mini in every default
a run asks it for."""

from __future__ import annotations

import dataclasses

from craft_bench import registry
from craft_bench.mini.model import MINI as MINI_MODEL
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

TOY_MODEL = dataclasses.replace(MINI_MODEL, name="toy-mini", world="toy-world",
                                description="the mini model's weights in the toy world (test-only)")


def rewrites(prompt: str) -> list[str]:
    return [prompt, f"{prompt}, in toy land", f"toy land: {prompt}"]


registry.worlds.register("toy-world", TOY_WORLD)
registry.models.register("toy-mini", TOY_MODEL)
