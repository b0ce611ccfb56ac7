"""Shapes as a detector sees them: the renderer's own geometry fitted to a component's box and seen through
blur (a blurred cross looks like a rounded one, not like the sharp one), and the scene's true objects as
detections (the ground truth detectors are measured against). Shared by every mini detector.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, ClassVar, Sequence

import numpy as np

from craft_bench.api import Detection, Detector
from craft_bench.mini.scenes import CANVAS, CROSS_ARM, SHAPES, Scene, render, shape_mask

_MARGIN = 3
_TEMPLATE_BLURS = (0.0, 0.6, 0.9, 1.2, 1.5, 1.8)  # Gaussian sigmas (px) the templates are seen through
_TEMPLATE_SCALES = (1.0, 1.1, 1.2, 1.3)  # blur pulls corners in, so the true shape may exceed the component's box
_BLUR_PENALTY = 0.03  # IoU given up per px of template blur


def _sharp_variants(shape: str, bw: int, bh: int, arms: tuple[float, ...] = (CROSS_ARM,)) -> list[np.ndarray]:
    """Unblurred masks of ``shape`` fitted to a bw x bh box, in a window with a _MARGIN px border (crosses with
    each arm thickness in ``arms``, as a share of the size)."""
    hh, ww = bh + 2 * _MARGIN, bw + 2 * _MARGIN
    if shape == "cross":
        # Arms are a whole number of pixels wide and may sit half a pixel off-centre (the renderer
        # rasterises at arbitrary sub-pixel positions), which matters at 14 px.
        out = []
        heights = sorted({k for a in arms for k in (max(int(np.floor(bh * a)), 1), int(np.ceil(bh * a)))})
        widths = sorted({k for a in arms for k in (max(int(np.floor(bw * a)), 1), int(np.ceil(bw * a)))})
        for kh in heights:
            for kw in widths:
                if abs(kh / bh - kw / bw) > 0.1:  # arms about equally thick
                    continue
                for r0 in sorted({(bh - kh) // 2, (bh - kh + 1) // 2}):
                    for c0 in sorted({(bw - kw) // 2, (bw - kw + 1) // 2}):
                        m = np.zeros((hh, ww), dtype=bool)
                        m[_MARGIN + r0 : _MARGIN + r0 + kh, _MARGIN : _MARGIN + bw] = True
                        m[_MARGIN : _MARGIN + bh, _MARGIN + c0 : _MARGIN + c0 + kw] = True
                        out.append(m)
        return out
    dx = (np.arange(ww) + 0.5 - ww / 2)[None, :]
    dy = (np.arange(hh) + 0.5 - hh / 2)[:, None]
    # Blur retracts a triangle's apex more than its base: its true centre sits above the box centre.
    shifts = (0.0, 0.5, 1.0) if shape == "triangle" else (0.0,)
    return [shape_mask(shape, dx, dy + sh * s, bw / 2 * s, bh / 2 * s) for s in _TEMPLATE_SCALES for sh in shifts]


@lru_cache(maxsize=1024)
def _templates(bw: int, bh: int, rounded: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every shape's variants fitted to a bw x bh box, seen through every template blur and cut at 0.5
    (what the detector's mask of such a rendered shape looks like). With ``rounded``, also each variant with
    its corners rounded (radius ``_ROUNDINGS`` px; a cross's inner corners filled too): generated shapes are
    drawn that way, and a rounded square is still a square to a person.

    Returns (masks: bool [T, (bh + 2m) * (bw + 2m)], shape index [T], penalty sigma [T]: the blur, or for a
    rounded template half its rounding radius)."""
    from scipy.ndimage import binary_closing, binary_opening, gaussian_filter

    masks, shape_of, sigma_of = [], [], []
    for si, shape in enumerate(SHAPES):
        # Generated crosses are often drawn with thinner arms than the renderer's; a person still sees a cross.
        for sharp in _sharp_variants(shape, bw, bh, _ROUNDED_ARMS if rounded else (CROSS_ARM,)):
            soft = sharp.astype(np.float32)
            for sigma in _TEMPLATE_BLURS:
                masks.append((gaussian_filter(soft, sigma, mode="constant") if sigma > 0 else soft) > 0.5)
                shape_of.append(si)
                sigma_of.append(sigma)
            if not rounded:
                continue
            for radius in _ROUNDINGS:
                disk, pad = _disk(radius), int(np.ceil(radius)) + 1
                round_ = binary_opening(np.pad(sharp, pad), structure=disk)
                if shape == "cross":
                    round_ = binary_closing(round_, structure=disk)
                masks.append(round_[pad:-pad, pad:-pad])
                shape_of.append(si)
                sigma_of.append(radius / 2)
    stack = np.stack(masks).reshape(len(masks), -1)
    stack.setflags(write=False)
    return stack, np.array(shape_of), np.array(sigma_of)


_ROUNDINGS = (1.5, 2.5, 3.5)
_ROUNDED_ARMS = (0.24, CROSS_ARM)


def _disk(radius: float) -> np.ndarray:
    r = int(np.ceil(radius))
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    return x * x + y * y <= radius * radius


def best_template(local: np.ndarray) -> tuple[str, float]:
    """The shape whose (possibly blurred) template overlaps the component mask best, and that IoU."""
    bh, bw = local.shape
    window = np.zeros((bh + 2 * _MARGIN, bw + 2 * _MARGIN), dtype=bool)
    window[_MARGIN:-_MARGIN, _MARGIN:-_MARGIN] = local
    stack, shape_of, sigma_of = _templates(bw, bh)
    flat = window.reshape(-1)
    inter = (stack & flat).sum(1)
    union = stack.sum(1) + flat.sum() - inter
    iou = inter / np.maximum(union, 1)
    # Heavy blur makes shapes alike (a blurred cross is diamond-like): prefer the sharpest explanation.
    best = int((iou - _BLUR_PENALTY * sigma_of).argmax())
    return SHAPES[int(shape_of[best])], float(iou[best])


def size_preference(area_px: int, scale: float = 1.0) -> float:
    """A factor in [0.999, 1] that grows with the object's area.

    GenEval uses the most confident detections of a class, breaking exact ties by index; flat renders
    would often tie at 1.0, so larger objects are made (very slightly) more confident, as learned
    detectors tend to be. Shared with ``oracle_detections`` so both order objects the same way."""
    return 1.0 - 1e-3 * (1.0 - min(area_px / (scale * scale) / 1024.0, 1.0))


def oracle_detections(scene: Scene, size: int = 64) -> list[Detection]:
    """The scene's true objects as detections (confidence ~1, boxes from their rendered pixels): the
    ground truth the detector is measured against."""
    out = []
    for obj in scene.objects:
        mask = np.any(render(Scene((obj,), scene.background), size) != np.array(scene.background, dtype=np.uint8), -1)
        ys, xs = np.nonzero(mask)
        if len(xs) == 0:
            continue
        box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
        out.append(Detection(obj.shape, size_preference(int(mask.sum()), size / CANVAS), box, mask, obj.color))
    return out


def shape_fits(local: np.ndarray, cut: tuple[int, int, int, int] = (0, 0, 0, 0)) -> np.ndarray:
    """Per shape (in ``SHAPES`` order): the best IoU of a component mask with that shape's templates, less
    the blur penalty of the template (heavy blur makes every shape alike; the sharpest explanation wins).

    ``local`` is the mask in its box. ``cut`` = (top, bottom, left, right): rows / columns of the object
    hidden beyond the image border; the templates are fitted to the whole box and compared on the visible
    part only, so a square cut by the border is still a square."""
    t, b, lf, r = cut
    lh, lw = local.shape
    bh, bw = lh + t + b, lw + lf + r
    window = np.zeros((bh + 2 * _MARGIN, bw + 2 * _MARGIN), dtype=bool)
    window[_MARGIN + t : _MARGIN + t + lh, _MARGIN + lf : _MARGIN + lf + lw] = local
    stack, shape_of, sigma_of = _templates(bw, bh, rounded=True)
    flat = window.reshape(-1)
    if any(cut):
        known = np.ones_like(window)
        if t:
            known[: _MARGIN + t] = False
        if b:
            known[_MARGIN + t + lh :] = False
        if lf:
            known[:, : _MARGIN + lf] = False
        if r:
            known[:, _MARGIN + lf + lw :] = False
        k = known.reshape(-1)
        inter = (stack & flat & k).sum(1)
        union = ((stack | flat) & k).sum(1)
    else:
        inter = (stack & flat).sum(1)
        union = stack.sum(1) + flat.sum() - inter
    iou = inter / np.maximum(union, 1) - _BLUR_PENALTY * sigma_of
    out = np.full(len(SHAPES), -1.0)
    np.maximum.at(out, shape_of, iou)
    return out


class ArrayDetector(Detector):
    """A mini detector: looks at one uint8 (H, W, 3) array at a time (``detect_array``), configured by ``Config``."""

    Config: ClassVar[type]

    def __init__(self, config: Any = None) -> None:
        self.config = config or self.Config()

    @classmethod
    def class_names(cls) -> tuple[str, ...]:
        return tuple(SHAPES)

    def detect(self, images: Sequence[Any]) -> list[list[Detection]]:
        return [self.detect_array(as_rgb_array(img)) for img in images]

    def detect_array(self, image: np.ndarray) -> list[Detection]:
        raise NotImplementedError


def as_rgb_array(img: Any) -> np.ndarray:
    """A PIL image or uint8 array as a uint8 (H, W, 3) array; anything else is a ValueError."""
    arr = img if isinstance(img, np.ndarray) else np.asarray(img.convert("RGB"))
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB image, got shape {arr.shape} dtype {arr.dtype}")
    return arr
