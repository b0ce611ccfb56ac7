"""Suite ``controlnet-canny``: edge F1 (and MS-SSIM) between a canny condition and the canny edges of the output.

Conditions and re-estimated edges both come from ``craft_bench.controls.canny`` (kornia, thresholds 0.1 / 0.2, as
ControlNet++ evaluates); the metric functions and everything else are shared with ``controlnet-depth`` in
``suites/controlnet.py``. docs/controlnet.md.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from craft_bench.api import MetricDef, RunContext
from craft_bench.suites.controlnet import ControlNetSuite, edge_f1, edge_ssim


class ControlNetCanny(ControlNetSuite):
    name = "controlnet-canny"
    version = "1"
    description = (
        "ControlNet canny: edge F1 / MS-SSIM of outputs against their canny condition, plus rewards "
        "(ControlNet++ protocol)"
    )
    control = "canny"
    headline_column = "edge_f1"
    headline_display = "edge F1"

    def extract(self, image: np.ndarray, ctx: RunContext) -> np.ndarray:
        from craft_bench.controls import canny

        return canny([image])[0]

    def extra_metrics(self) -> list[MetricDef]:
        return [MetricDef("ssim", "edge MS-SSIM", "edge_ssim")]

    def measure(
        self, conditions: Sequence[np.ndarray], images: Sequence[Any], ctx: RunContext
    ) -> list[dict[str, float]]:
        from craft_bench.controls import canny

        edges = canny(list(images))
        return [{"edge_f1": edge_f1(e, c), "edge_ssim": edge_ssim(e, c)} for e, c in zip(edges, conditions)]
