"""The first `mini` GenEval detector (``mini-v1``, kept so numbers measured with it stay reproducible): exact on
the mini world's renders, unconvinced by anything else.

It judges a generated image by colour flatness as much as by shape: objects with shading, highlights or
gradients fall under GenEval's thresholds although a person sees them plainly (data/mini-judge measures
this; docs/geneval.md). The default ``mini`` detector (detector.py) replaced it.

Classical image processing, no learned weights:

1. Unmix: explain every pixel as the background blended with one of GenEval's 10 palette colours
   (blur, chroma subsampling and anti-aliasing move pixels along these blend lines); a pixel belongs to
   the colour whose blend weight exceeds 0.5.
2. Split each colour into connected components.
3. Classify each component by the IoU of its mask with every shape's template fitted to its box: the
   renderer's own ``shape_mask``, seen through several blurs and scales (a blurred cross looks like a
   rounded one, not like the sharp one), the sharpest explanation preferred.

The confidence is a product of ramps, each 1 for anything the renderer can produce (even blurred,
noisy, JPEG-compressed or colour-cast) and 0 for what it cannot:

* shape fit (template IoU), aspect (mini shapes are as wide as high) and size (14-22 px at 64 px);
* flatness: the offsets of the (3x3-averaged) pixels from their colour's blend line hardly vary on a
  flat object, and vary a lot on a region of a smooth colour field;
* solidity: the mean blend weight inside the component (a soft blob ramps up and down);
* isolation: objects stand on the background, colour-field regions border other colours.

So uniform noise and smooth random colour fields (what an untrained diffusion model draws) stay under
GenEval's 0.3 threshold and an untrained model scores ~0; clean renders score > 0.99 (above counting's
0.9). ``python -m craft_bench.mini.eval_detector`` measures the verdict accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from craft_bench.api import Detection
from craft_bench.mini.scenes import BACKGROUND, CANVAS, COLORS
from craft_bench.mini.shapes import ArrayDetector, best_template, size_preference

_COLOR_NAMES = tuple(COLORS)
_PALETTE = np.array([BACKGROUND] + [COLORS[c] for c in _COLOR_NAMES], dtype=np.float32)  # index 0 = background


def _ramp(x: float, x0: float, x1: float) -> float:
    """0 at x0, 1 at x1, linear between (x0 > x1 gives a falling ramp)."""
    t = (x - x0) / (x1 - x0)
    return float(min(max(t, 0.0), 1.0))


@dataclass(frozen=True)
class MiniDetectorConfig:
    max_residual: float = 60.0  # a pixel farther than this from every background-colour blend is unassigned
    min_area: float = 16.0  # canvas pixels^2; smaller components are ignored
    iou_zero: float = 0.6  # template IoU at which shape confidence is 0 ...
    iou_full: float = 0.85  # ... and 1
    flat_full: float = 15.0  # spread (0-255 RGB) of 3x3-averaged pixels' offsets from the colour's blend line: 1 ...
    flat_zero: float = 24.0  # ... 0
    flat_window: int = 3  # the averaging window (px) for flatness
    isolation_zero: float = 0.5  # share of background around the component at which confidence is 0 ...
    isolation_full: float = 0.8  # ... and 1
    solidity_zero: float = 0.6  # mean blend weight inside the component at which confidence is 0 ...
    solidity_full: float = 0.75  # ... and 1
    aspect_zero: float = 0.5  # min(w,h)/max(w,h) at which the aspect factor is 0 ...
    aspect_full: float = 0.75  # ... and 1
    size_range: tuple[float, float, float, float] = (
        9.0,
        12.0,
        30.0,
        40.0,
    )  # extent ramps: 0 -> 1 ... 1 -> 0 (canvas px)
    max_fill_share: float = 0.15  # holes are filled only when they add at most this share of the area


class MiniDetectorV1(ArrayDetector):
    name = "mini-v1"
    description = "first mini detector: exact on renders, judges colour flatness (kept for reproducing old numbers)"

    Config = MiniDetectorConfig

    def detect_array(self, image: np.ndarray) -> list[Detection]:
        """Detections in one uint8 (H, W, 3) image."""
        from scipy import ndimage

        cfg = self.config
        h, w = image.shape[:2]
        scale = h / CANVAS
        pixels = image.astype(np.float32)
        labels, alpha, resid = _unmix(pixels)
        labels[resid > cfg.max_residual] = -1
        smooth = ndimage.uniform_filter(pixels, size=(cfg.flat_window, cfg.flat_window, 1), mode="nearest")
        out: list[Detection] = []
        for ci, cname in enumerate(_COLOR_NAMES, start=1):
            cmask = labels == ci
            if cmask.sum() < cfg.min_area * scale * scale:
                continue
            comps, n = ndimage.label(cmask, structure=np.ones((3, 3), dtype=bool))
            for k, sl in enumerate(ndimage.find_objects(comps), start=1):
                if sl is None:
                    continue
                local = comps[sl] == k
                area = int(local.sum())
                if area < cfg.min_area * scale * scale:
                    continue
                filled = ndimage.binary_fill_holes(local)
                if filled.sum() - area <= cfg.max_fill_share * filled.sum():
                    local = filled
                det = self._judge(local, sl, smooth, ci, scale, labels, alpha)
                if det is not None:
                    full = np.zeros((h, w), dtype=bool)
                    full[sl] = local
                    out.append(Detection(det[0], det[1], det[2], full, cname))
        out.sort(key=lambda d: -d.score)
        return out

    def _judge(
        self,
        local: np.ndarray,
        sl: tuple[slice, slice],
        smooth: np.ndarray,
        ci: int,
        scale: float,
        labels: np.ndarray,
        alpha: np.ndarray,
    ):
        """(shape, confidence, box) of one colour component, or None when the confidence is 0."""
        cfg = self.config
        ys, xs = sl
        bh, bw = local.shape
        s0, s1, s2, s3 = cfg.size_range
        extent = max(bw, bh) / scale
        size_ok = min(_ramp(extent, s0, s1), _ramp(extent, s3, s2))
        aspect_ok = _ramp(min(bw, bh) / max(bw, bh), cfg.aspect_zero, cfg.aspect_full)
        if size_ok * aspect_ok <= 0.0:
            return None
        shape, iou = best_template(local)
        # Flatness: spread of the (3x3-averaged) pixels' offsets from the blend line of background and
        # colour. A flat object, even blurred or with a colour cast, has a near-constant offset; a region
        # of a smooth colour field has a varying one.
        d = smooth[ys, xs][local] - _BG
        a = np.clip(d @ _DIRS[ci - 1] / _DIRS_N2[ci - 1], 0.0, 1.0)
        off = d - a[:, None] * _DIRS[ci - 1]
        color_dev = float(np.sqrt(((off - off.mean(0)) ** 2).sum(-1)).mean())
        isolation = _isolation(local, sl, labels, ci)
        # Solidity: mean blend weight of the colour inside the component; a flat object (even blurred) is
        # mostly pure colour, a soft blob of a colour field ramps up and down.
        solidity = float(np.clip(alpha[ys, xs, ci - 1][local], 0.0, 1.0).mean())
        score = (
            _ramp(iou, cfg.iou_zero, cfg.iou_full)
            * _ramp(color_dev, cfg.flat_zero, cfg.flat_full)
            * _ramp(isolation, cfg.isolation_zero, cfg.isolation_full)
            * _ramp(solidity, cfg.solidity_zero, cfg.solidity_full)
            * aspect_ok
            * size_ok
        )
        if score <= 0.0:
            return None
        score *= size_preference(int(local.sum()), scale)
        box = (float(xs.start), float(ys.start), float(xs.stop), float(ys.stop))
        return shape, score, box


def _isolation(local: np.ndarray, sl: tuple[slice, slice], labels: np.ndarray, ci: int, ring: int = 2) -> float:
    """Share of the pixels within ``ring`` px around the component that are background (or its own
    colour): objects stand on the background; regions of a random colour field border other colours."""
    from scipy.ndimage import binary_dilation

    ys, xs = sl
    h, w = labels.shape
    y0, y1, x0, x1 = max(ys.start - ring, 0), min(ys.stop + ring, h), max(xs.start - ring, 0), min(xs.stop + ring, w)
    mask = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    mask[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0] = local
    around = binary_dilation(mask, iterations=ring) & ~mask
    near = labels[y0:y1, x0:x1][around]
    return float(np.isin(near, (0, ci)).mean()) if near.size else 1.0


_BG = _PALETTE[0]
_DIRS = _PALETTE[1:] - _BG  # 10 x 3: from the background towards each colour
_DIRS_N2 = (_DIRS**2).sum(-1)


def _unmix(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Explain each pixel as background blended with one palette colour.

    Returns (labels: 0 = background, 1..10 = colour; alpha [H, W, 10]: blend weight of each colour
    (unclipped); residual [H, W]: distance of the pixel from the best colour's blend line). Blur and
    chroma subsampling move edge pixels along these lines, so this is steadier than nearest-colour snapping.
    """
    d = pixels - _BG  # H, W, 3
    proj = d @ _DIRS.T  # H, W, 10: d . dir
    alpha = proj / _DIRS_N2
    a = np.clip(alpha, 0.0, 1.0)
    res2 = (d * d).sum(-1, keepdims=True) - 2.0 * a * proj + a * a * _DIRS_N2  # |d - a dir|^2
    best = res2.argmin(-1)
    resid = np.sqrt(np.maximum(np.take_along_axis(res2, best[..., None], -1)[..., 0], 0.0))
    best_alpha = np.take_along_axis(alpha, best[..., None], -1)[..., 0]
    labels = np.where(best_alpha > 0.5, best + 1, 0)
    return labels, alpha, resid
