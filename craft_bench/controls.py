"""Condition maps: what a ControlNet is conditioned on, and what a ControlNet suite re-estimates on its outputs.

One function per kind of map, used for both sides, so a condition and the map measured on the output are the
same quantity:

- ``canny``: binary edges by kornia's Canny (``kornia.filters.canny``) with thresholds 0.1 / 0.2 on an RGB image
  in [0, 1], the setting ControlNet++ evaluates with (liming-ai/ControlNet_Plus_Plus ``eval/eval.py``, task
  ``canny``: ``canny(pil_to_tensor(image) / 255, 0.1, 0.2)[1]``; kornia first converts to grayscale and
  smooths with a 5x5 Gaussian of sigma 1). OpenCV's ``cv2.Canny(100, 200)`` is the other common setting;
  it is not used (kornia is a small pure-Python dependency; OpenCV would add a ~50 MB binary).
- depth: a transformers depth estimator (DPT, Depth Anything, ...: ``AutoModelForDepthEstimation``; a hub id
  or a local ``save_pretrained`` folder holding the model and its image processor), ``HFDepthEstimator``. Its
  raw output (relative inverse depth for DPT/MiDaS: larger = nearer) is resized to the image's size. The
  mini world has its own estimator (``craft_bench.mini.controlnet.MiniDepthEstimator``) with the same
  ``estimate`` method.

Maps are returned as numpy arrays: edges uint8 {0, 255} (H, W), depth float32 (H, W). ``control_image``
turns a map into the RGB image a ControlNet pipeline takes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from craft_bench.errors import UserError

CANNY_LOW, CANNY_HIGH = 0.1, 0.2  # kornia thresholds on [0, 1] gradients (ControlNet++'s evaluation)
DEFAULT_DEPTH_ESTIMATOR = "Intel/dpt-large"  # ControlNet++ re-estimates depth with DPT-Large
DEPTH_ENV = "CRAFT_BENCH_DEPTH_ESTIMATOR"
DEPTH_OPTION = "--set suite.depth_estimator=DIR"


def as_rgb_array(image: Any) -> np.ndarray:
    """A PIL image or an (H, W, 3) / (H, W) uint8 array -> (H, W, 3) uint8."""
    if isinstance(image, np.ndarray):
        arr = image
    else:
        arr = np.asarray(image.convert("RGB"))
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"expected an RGB uint8 image, got {arr.dtype} {arr.shape}")
    return arr


def canny(images: Sequence[Any], low: float = CANNY_LOW, high: float = CANNY_HIGH) -> np.ndarray:
    """Binary Canny edges (N, H, W) uint8 in {0, 255} of same-sized RGB images (kornia, thresholds on [0, 1])."""
    import torch
    from kornia.filters import canny as kornia_canny

    if len(images) == 0:
        return np.zeros((0, 0, 0), np.uint8)
    x = torch.from_numpy(np.stack([as_rgb_array(im) for im in images])).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        _, edges = kornia_canny(x, low, high)
    return (edges[:, 0].numpy() > 0.5).astype(np.uint8) * 255


def control_image(gray: np.ndarray) -> Any:
    """An (H, W) uint8 map as the RGB PIL image ControlNet pipelines take (the map in all three channels)."""
    from PIL import Image

    if gray.dtype != np.uint8 or gray.ndim != 2:
        raise ValueError(f"expected an (H, W) uint8 map, got {gray.dtype} {gray.shape}")
    return Image.fromarray(gray).convert("RGB")


def read_map(path: str | Path) -> np.ndarray:
    """A condition image file as an (H, W) uint8 map (its luminance, as PIL's 'L' conversion)."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("L"))


def depth_to_uint8(depth: np.ndarray) -> np.ndarray:
    """A raw depth map as a condition image: min-max normalised to 0..255 (ControlNet++ normalises its labels
    so; diffusers' depth ControlNets take min-max normalised maps), truncated to uint8."""
    d = np.asarray(depth, dtype=np.float64)
    span = d.max() - d.min()
    if span <= 0:
        return np.zeros(d.shape, np.uint8)
    return ((d - d.min()) / span * 255.0).astype(np.uint8)


class HFDepthEstimator:
    """A transformers depth estimator: ``estimate(images)`` -> raw float32 maps at each image's size."""

    name = "hf"

    def __init__(self, model: Any, processor: Any, device: str = "cpu", source: str = "") -> None:
        self.model = model.to(device).eval()
        self.processor = processor
        self.device = device
        self.source = source

    @staticmethod
    def _source(source: str | None) -> Any:
        from craft_bench.rewards.common import resolve_source

        return resolve_source("depth estimator", DEPTH_ENV, source or None, DEFAULT_DEPTH_ESTIMATOR, DEPTH_OPTION)

    @classmethod
    def preflight(cls, source: str | None = None) -> None:
        """A local folder with a config.json, or a hub repo whose config.json is cached or downloadable -- or one
        line."""
        src = cls._source(source)
        if not src.local:
            from craft_bench.rewards.common import hub_file

            hub_file(src, "config.json")
        elif not (Path(src.value) / "config.json").is_file():
            raise UserError(
                f"depth estimator: '{src.value}' has no config.json (a save_pretrained folder of a depth model "
                f"and its image processor); {src.hint()}"
            )

    @classmethod
    def load(cls, source: str | None = None, device: str = "cpu") -> "HFDepthEstimator":
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        from craft_bench.models import quiet_library_bars
        from craft_bench.rewards.common import load_pretrained

        quiet_library_bars()
        cls.preflight(source)
        src = cls._source(source)
        model, processor = load_pretrained(src, AutoModelForDepthEstimation, AutoImageProcessor, "a depth model")
        return cls(model, processor, device, src.value)

    def estimate(self, images: Sequence[Any]) -> list[np.ndarray]:
        import torch
        import torch.nn.functional as F

        out = []
        for image in images:
            arr = as_rgb_array(image)
            inputs = self.processor(images=[np.array(arr)], return_tensors="pt").to(self.device)
            with torch.inference_mode():
                pred = self.model(**inputs).predicted_depth  # (1, h, w)
            pred = F.interpolate(pred[:, None].float(), size=arr.shape[:2], mode="bilinear", align_corners=False)
            out.append(pred[0, 0].cpu().numpy().astype(np.float32))
        return out
