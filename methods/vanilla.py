"""The base model as published: the reference row of every table."""

from __future__ import annotations

from craft_bench.api import Checkpoint, Method, RunContext


class Vanilla(Method):
    name = "vanilla"
    description = "the base model, untouched (the reference every method is compared with)"
    baseline = True

    def prepare(self, base: Checkpoint, ctx: RunContext) -> Checkpoint:
        return base
