"""Suite ``controlnet-depth``: RMSE between a depth condition and the depth re-estimated on the output.

Depth estimator (``suite.depth_estimator``): a transformers depth model (``craft_bench.controls.HFDepthEstimator``;
default ``Intel/dpt-large``, what ControlNet++ re-estimates with; a hub id or a local folder), or for mini-world
models the mini estimator (``craft_bench.mini.controlnet.MiniDepthEstimator``). The metric functions and
everything else are shared with ``controlnet-canny`` in ``suites/controlnet.py``. docs/controlnet.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from craft_bench.api import RunContext
from craft_bench.spec import setting
from craft_bench.suites.controlnet import ControlNetConfig, ControlNetSuite, depth_rmse


@dataclass(frozen=True)
class DepthConfig(ControlNetConfig):
    depth_estimator: str = setting(
        "auto",
        "auto (the model's world's: the mini estimator on mini models; else "
        "$CRAFT_BENCH_DEPTH_ESTIMATOR or Intel/dpt-large), "
        "mini, or a transformers depth model (hub id or save_pretrained folder)",
    )


class ControlNetDepth(ControlNetSuite):
    name = "controlnet-depth"
    version = "1"
    description = (
        "ControlNet depth: RMSE of the depth re-estimated on outputs against their depth condition, plus rewards "
        "(ControlNet++ protocol)"
    )
    control = "depth"
    headline_column = "depth_rmse"
    headline_display = "depth RMSE (0-255)"
    headline_higher_is_better = False
    Config = DepthConfig

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self._estimator: Any = None

    def _estimator_source(self, ctx: RunContext) -> str:
        value = self.config.depth_estimator
        return ctx.world.depth_estimator if value == "auto" else value

    def preflight(self, ctx: RunContext) -> None:
        from craft_bench.controls import HFDepthEstimator

        if self._estimator_source(ctx) != "mini":
            HFDepthEstimator.preflight(self._estimator_source(ctx) or None)

    def estimator(self, ctx: RunContext) -> Any:
        if self._estimator is None:
            source = self._estimator_source(ctx)
            if source == "mini":
                from craft_bench.mini.controlnet import MiniDepthEstimator

                self._estimator = MiniDepthEstimator()
            else:
                from craft_bench.controls import HFDepthEstimator

                self._estimator = HFDepthEstimator.load(source or None, ctx.device)
        return self._estimator

    def extract(self, image: np.ndarray, ctx: RunContext) -> np.ndarray:
        from craft_bench.controls import depth_to_uint8

        return depth_to_uint8(self.estimator(ctx).estimate([image])[0])

    def measure(
        self, conditions: Sequence[np.ndarray], images: Sequence[Any], ctx: RunContext
    ) -> list[dict[str, float]]:
        estimates = self.estimator(ctx).estimate(list(images))
        return [{"depth_rmse": depth_rmse(c, d)} for c, d in zip(conditions, estimates)]

    def close(self) -> None:
        super().close()
        self._estimator = None
