"""The `mini` GenEval detector: finds the mini world's shapes in generated images as a person does.

Generated shapes carry shading, white highlights, colour gradients, soft edges and small artefacts (the
mini model paints a tiny multi-coloured dot below most objects). A person ignores all of that: an object is
a region that stands out from the gray background, its class is its outline, its colour the colour most of
its pixels have. So does this detector (classical image processing, no learned weights):

1. Background: the image's median colour. Contrast of a pixel: its RGB distance from the background.
2. Objects: connected regions of contrast above ``seed_contrast`` (opened, so a dot or a one-pixel bridge
   does not join or make objects); each region's mask is then cut at half of its own contrast, the edge a
   person sees whatever the object's colour, shading or blur. Regions that are two touching objects are split
   where eroding them separates two bodies that each fit a shape better than the whole.
3. Class: the shape whose template (the renderer's own geometry, fitted to the mask's box and seen through
   blur; ``shapes.shape_fits``) overlaps the mask best. An object cut by the image border is matched on its
   visible part.
4. Colour: the median of the object's inner pixels in CIELAB, named by the nearest of a few shades per colour
   name (``COLOR_SHADES``): dark green is green, navy is blue, a white highlight on pink changes nothing.
5. Confidence: shape fit, size, aspect, contrast, and whether the object stands on the background (quiet
   surroundings, a steep edge: a region of a smooth colour field has neither), each a ramp, multiplied. A
   clear object scores > 0.9 (GenEval's counting threshold), a doubtful one between 0.3 and 0.9, a blob or
   artefact < 0.3.

``python -m craft_bench.mini.eval_judge`` measures its agreement with a person's labels on generated images
(data/mini-judge); ``python -m craft_bench.mini.eval_detector`` its exactness on renders.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from craft_bench.api import Detection
from craft_bench.mini.scenes import CANVAS, COLORS, SHAPES
from craft_bench.mini.shapes import ArrayDetector, shape_fits, size_preference

# Shades a person gives each colour name (sRGB). The first of each is the mini world's palette colour; the
# others are the darker, lighter and shifted versions generated images show (named as in common usage:
# navy is blue, dark green is green, a reddish brown is brown).
COLOR_SHADES: dict[str, tuple[tuple[int, int, int], ...]] = {
    "red": (COLORS["red"], (255, 0, 0), (180, 20, 25), (140, 15, 20), (235, 55, 45)),
    "orange": (COLORS["orange"], (255, 165, 0), (255, 120, 10), (245, 95, 10)),
    "yellow": (COLORS["yellow"], (255, 255, 0), (250, 215, 20), (230, 220, 90)),
    "green": (COLORS["green"], (0, 128, 0), (0, 90, 30), (0, 60, 20), (0, 40, 15), (120, 200, 90), (60, 180, 60)),
    "blue": (
        COLORS["blue"],
        (0, 0, 255),
        (20, 40, 160),
        (0, 0, 120),
        (80, 130, 240),
        (60, 100, 255),
        (120, 145, 220),
        (100, 115, 215),
    ),
    "purple": (COLORS["purple"], (128, 0, 128), (90, 30, 150), (160, 90, 210), (75, 0, 130), (145, 110, 205)),
    "pink": (COLORS["pink"], (255, 182, 193), (255, 105, 180), (240, 120, 200)),
    "brown": (COLORS["brown"], (139, 69, 19), (90, 55, 25), (70, 45, 25), (150, 80, 30)),
    "black": (COLORS["black"], (0, 0, 0), (40, 40, 40), (30, 25, 20)),
    "white": (COLORS["white"], (255, 255, 255), (225, 225, 225), (240, 230, 240)),
}


def _ramp(x: float, x0: float, x1: float) -> float:
    """0 at x0, 1 at x1, linear between (x0 > x1 gives a falling ramp)."""
    t = (x - x0) / (x1 - x0)
    return float(min(max(t, 0.0), 1.0))


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of sRGB values in 0-255, shape (..., 3)."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = lin @ np.array([[0.4124, 0.2126, 0.0193], [0.3576, 0.7152, 0.1192], [0.1805, 0.0722, 0.9505]])
    xyz = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


_SHADE_NAMES = [name for name, shades in COLOR_SHADES.items() for _ in shades]
_SHADE_LAB = srgb_to_lab(np.array([s for shades in COLOR_SHADES.values() for s in shades]))


def name_color(rgb: Sequence[float]) -> str:
    """The colour name a person gives an sRGB colour: the name of the nearest shade in CIELAB."""
    d = ((_SHADE_LAB - srgb_to_lab(np.asarray(rgb, dtype=np.float64))) ** 2).sum(-1)
    return _SHADE_NAMES[int(d.argmin())]


@dataclass(frozen=True)
class MiniDetectorConfig:
    seed_contrast: float = 45.0  # RGB distance from the background at which a pixel may belong to an object
    edge_share: float = 0.5  # an object's mask: pixels with at least this share of its body's contrast
    min_area: float = 30.0  # canvas px^2: smaller regions are artefacts
    iou_zero: float = 0.55  # shape fit (template IoU less blur penalty) at which confidence is 0 ...
    iou_full: float = 0.72  # ... and 1
    contrast_zero: float = 40.0  # body contrast at which confidence is 0 ...
    contrast_full: float = 65.0  # ... and 1
    quiet_zero: float = 0.5  # share of the ring 3-4 px around an object that is background or another object: 0 ...
    quiet_full: float = 0.75  # ... and 1
    steep_zero: float = 2.6  # area at a quarter of the body contrast over area at three quarters: 0 (a soft blob) ...
    steep_full: float = 2.0  # ... and 1 (generated objects: 1.05-1.6)
    aspect_zero: float = 0.55  # min(w, h) / max(w, h) of an uncut object at which confidence is 0 ...
    aspect_full: float = 0.75  # ... and 1
    size_range: tuple[float, float, float, float] = (
        7.0,
        10.0,
        36.0,
        46.0,
    )  # extent ramps 0 -> 1 ... 1 -> 0 (canvas px)
    dot_color: float = 70.0  # RGB distance from an object's median colour that marks a pixel as not its own ...
    dot_area: float = 24.0  # ... and the largest blob of such pixels on its edge that is dropped (canvas px^2)
    corner_tie: float = 0.06  # circle and square fits this close: decided by the outline's corners ...
    corner_c4: float = -0.035  # ... square when its fourth harmonic is below this
    split_below: float = 0.8  # a region fitting no shape this well may be two touching objects
    split_gain: float = 0.05  # ... and is split when its parts fit this much better on average
    split_color: float = 30.0  # CIELAB distance between a region's two main colours that may make it two objects


class MiniDetector(ArrayDetector):
    name = "mini"
    description = "mini world's detector: the shapes a person sees in generated images"

    Config = MiniDetectorConfig

    def detect_array(self, image: np.ndarray) -> list[Detection]:
        """Detections in one uint8 (H, W, 3) image."""
        from scipy import ndimage

        cfg = self.config
        h, w = image.shape[:2]
        scale = h / CANVAS
        pixels = image.astype(np.float32)
        background = np.median(pixels.reshape(-1, 3), axis=0)
        contrast = np.sqrt(((pixels - background) ** 2).sum(-1))
        seeds = ndimage.binary_opening(contrast > cfg.seed_contrast, structure=np.ones((3, 3), dtype=bool))
        regions, _ = ndimage.label(seeds, structure=np.ones((3, 3), dtype=bool))
        min_area = cfg.min_area * scale * scale
        out: list[Detection] = []
        for k, sl in enumerate(ndimage.find_objects(regions), start=1):
            if sl is None or (regions[sl] == k).sum() < min_area:
                continue
            masks = self._objects(regions == k, pixels, contrast, min_area)
            for i, mask in enumerate(masks):
                # touching objects split from one region are each other's surroundings, not clutter
                siblings = (
                    np.any([m for j, m in enumerate(masks) if j != i], axis=0)
                    if len(masks) > 1
                    else np.zeros_like(mask)
                )
                det = self._judge(mask, pixels, contrast, scale, siblings)
                if det is not None:
                    out.append(det)
        out.sort(key=lambda d: -d.score)
        return out

    def _objects(
        self, region: np.ndarray, pixels: np.ndarray, contrast: np.ndarray, min_area: float
    ) -> list[np.ndarray]:
        """The object masks of one seed region: cut at half its body contrast, without an artefact dot stuck to
        its edge, split where two objects touch."""
        from scipy import ndimage

        cfg = self.config
        body = float(np.percentile(contrast[region], 60))
        grown = ndimage.binary_dilation(region, iterations=2)
        mask = grown & (contrast >= cfg.edge_share * body)
        parts, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
        if n > 1:  # keep the part(s) the seed region lies in
            keep = np.unique(parts[region & mask])
            mask = np.isin(parts, keep[keep > 0])
        objects = _parts(mask, min_area)
        pruned = self._without_dots(mask, pixels, min_area)
        if pruned is not None:
            alt = _parts(pruned, min_area)
            if alt and _mean_fit(alt) > _mean_fit(objects):
                objects = alt
        return [piece for obj in objects for piece in self._split(obj, pixels, min_area)]

    def _without_dots(self, mask: np.ndarray, pixels: np.ndarray, min_area: float) -> np.ndarray | None:
        """``mask`` less the small off-colour blobs on its edge (the dot the mini model paints below objects),
        or None when it has none."""
        from scipy import ndimage

        cfg = self.config
        body = np.median(pixels[mask], axis=0)
        off = mask & (np.sqrt(((pixels - body) ** 2).sum(-1)) > cfg.dot_color)
        blobs, n = ndimage.label(off, structure=np.ones((3, 3), dtype=bool))
        if n == 0:
            return None
        edge = mask & ~ndimage.binary_erosion(mask)
        sizes = ndimage.sum(off, blobs, range(1, n + 1))
        on_edge = ndimage.maximum(edge, blobs, range(1, n + 1))
        drop = [i + 1 for i in range(n) if sizes[i] <= cfg.dot_area * min_area / cfg.min_area and on_edge[i]]
        return mask & ~np.isin(blobs, drop) if drop else None

    def _split(self, mask: np.ndarray, pixels: np.ndarray, min_area: float) -> list[np.ndarray]:
        """Two or more objects if ``mask`` is touching objects, else ``[mask]``: split where the region holds
        two clearly different colours, or where eroding it separates bodies, when the parts each fit a shape
        better than the whole."""
        cfg = self.config
        whole = float(_fit(mask).max())
        if whole >= cfg.split_below:
            return [mask]
        for split in (_split_by_color(mask, pixels, min_area, cfg.split_color), _split_by_erosion(mask, min_area)):
            if len(split) >= 2 and _mean_fit(split) >= whole + cfg.split_gain:
                return split
        return [mask]

    def _judge(
        self, mask: np.ndarray, pixels: np.ndarray, contrast: np.ndarray, scale: float, others: np.ndarray
    ) -> Detection | None:
        """A detection for one object mask (``others``: the objects it touches), or None when its confidence is 0."""
        from scipy import ndimage

        cfg = self.config
        h, w = mask.shape
        ys, xs = np.nonzero(mask)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        bh, bw = y1 - y0, x1 - x0
        cut = _cut(y0, y1, x0, x1, h, w, bh, bw)
        fits = shape_fits(mask[y0:y1, x0:x1], cut)
        best = int(np.argmax(fits))
        circle, square = SHAPES.index("circle"), SHAPES.index("square")
        runner_up = int(np.argsort(fits)[-2])
        if {best, runner_up} == {circle, square} and fits[best] - fits[runner_up] < cfg.corner_tie and not any(cut):
            # A rounded square and a lumpy circle fit both templates alike; corners decide, as for a person:
            # the outline's fourth harmonic is negative for a square (corners on the diagonals), ~0 for a circle.
            best = square if outline_harmonic(mask, 4).real < cfg.corner_c4 else circle
        extent = max(bh + cut[0] + cut[1], bw + cut[2] + cut[3]) / scale
        s0, s1, s2, s3 = cfg.size_range
        aspect = 1.0 if any(cut) else _ramp(min(bw, bh) / max(bw, bh), cfg.aspect_zero, cfg.aspect_full)
        body = float(np.percentile(contrast[mask], 60))
        # An object stands on the background: the ring around it is background (or another object), and its
        # edge is steep. A region of a smooth colour field has neither.
        ring = ndimage.binary_dilation(mask, iterations=4) & ~ndimage.binary_dilation(mask, iterations=2)
        quiet = float(((contrast[ring] < 0.3 * body) | others[ring]).mean()) if ring.any() else 1.0
        near = ndimage.binary_dilation(mask, iterations=4) & ~others
        steep = (near & (contrast >= 0.25 * body)).sum() / max((near & (contrast >= 0.75 * body)).sum(), 1)
        score = (
            _ramp(float(fits[best]), cfg.iou_zero, cfg.iou_full)
            * min(_ramp(extent, s0, s1), _ramp(extent, s3, s2))
            * aspect
            * _ramp(body, cfg.contrast_zero, cfg.contrast_full)
            * _ramp(quiet, cfg.quiet_zero, cfg.quiet_full)
            * _ramp(steep, cfg.steep_zero, cfg.steep_full)
        )
        if score <= 0.0:
            return None
        score *= size_preference(int(mask.sum()), scale)
        inner = ndimage.binary_erosion(mask, iterations=max(1, round(scale)))
        if inner.sum() < 4:
            inner = mask
        color = name_color(np.median(pixels[inner], axis=0))
        box = (float(x0), float(y0), float(x1), float(y1))
        return Detection(SHAPES[best], score, box, mask, color)


def outline_harmonic(mask: np.ndarray, k: int, bins: int = 36) -> complex:
    """The k-th Fourier coefficient of an object's outline radius over angle (around its centroid), relative to
    the mean radius: 0 for a circle; for k = 4 about -0.08 for a square, +0.1 to +0.2 for a diamond."""
    from scipy import ndimage

    ys, xs = np.nonzero(mask)
    edge = mask & ~ndimage.binary_erosion(mask)
    ey, ex = np.nonzero(edge)
    dy, dx = ey - ys.mean(), ex - xs.mean()
    angle_bin = ((np.arctan2(dy, dx) + np.pi) / (2 * np.pi) * bins).astype(int) % bins
    radius = np.zeros(bins)
    np.maximum.at(radius, angle_bin, np.hypot(dx, dy))
    seen = radius > 0
    angles = (np.arange(bins) + 0.5) / bins * 2 * np.pi - np.pi
    return complex(np.mean(radius[seen] * np.exp(-1j * k * angles[seen])) / radius[seen].mean())


def _split_by_color(mask: np.ndarray, pixels: np.ndarray, min_area: float, min_delta: float) -> list[np.ndarray]:
    """The parts of ``mask`` in each of its two main colours (2-means in CIELAB), when the two differ by at
    least ``min_delta`` and each part is an object's size; else []."""
    from scipy import ndimage

    lab = srgb_to_lab(pixels[mask])
    centres = np.percentile(lab, [15, 85], axis=0)  # spread start along the main axis of variation
    for _ in range(8):
        near = ((lab[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)
        if near.min() == near.max():
            return []
        centres = np.stack([lab[near == k].mean(0) for k in (0, 1)])
    if np.sqrt(((centres[0] - centres[1]) ** 2).sum()) < min_delta:
        return []
    owner = np.zeros(mask.shape, dtype=np.int8)
    owner[mask] = near + 1
    out = []
    for k in (1, 2):
        part = ndimage.binary_opening(owner == k)
        labels, n = ndimage.label(part, structure=np.ones((3, 3), dtype=bool))
        if n == 0:
            return []
        largest = 1 + int(np.argmax(ndimage.sum(part, labels, range(1, n + 1))))
        part = ndimage.binary_fill_holes(labels == largest)
        if part.sum() < min_area:
            return []
        out.append(part)
    return out


def _split_by_erosion(mask: np.ndarray, min_area: float) -> list[np.ndarray]:
    """The bodies that eroding ``mask`` separates, each grown back to the pixels nearest it; else []."""
    from scipy import ndimage

    for it in range(1, 5):
        core = ndimage.binary_erosion(mask, iterations=it)
        if not core.any():
            break
        pieces, m = ndimage.label(core, structure=np.ones((3, 3), dtype=bool))
        if m < 2:
            continue
        sizes = ndimage.sum(core, pieces, range(1, m + 1))
        big = [i + 1 for i, size in enumerate(sizes) if size >= min_area / 6]
        if len(big) < 2:
            continue
        seeds = np.where(np.isin(pieces, big), pieces, 0)
        _, (iy, ix) = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
        owner = seeds[iy, ix] * mask
        return [p for p in (owner == b for b in big) if p.sum() >= min_area]
    return []


def _parts(mask: np.ndarray, min_area: float) -> list[np.ndarray]:
    """The connected parts of ``mask`` of at least ``min_area`` pixels, holes filled."""
    from scipy import ndimage

    parts, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    out = [ndimage.binary_fill_holes(parts == i) for i in range(1, n + 1)]
    return [p for p in out if p.sum() >= min_area]


def _mean_fit(masks: Sequence[np.ndarray]) -> float:
    return float(np.mean([_fit(m).max() for m in masks])) if masks else -1.0


def _fit(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    return shape_fits(mask[y0:y1, x0:x1], _cut(y0, y1, x0, x1, *mask.shape, y1 - y0, x1 - x0))


def _cut(y0: int, y1: int, x0: int, x1: int, h: int, w: int, bh: int, bw: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) rows/columns hidden beyond the border, assuming the object is as wide as
    high (every mini shape is): an object reaching the border (within a pixel: edges are soft) on the clearly
    shorter side of its box continues there."""
    t = b = lf = r = 0
    if abs(bw - bh) < max(3, 0.15 * max(bw, bh)):  # as wide as high, within a generated shape's wobble
        return t, b, lf, r
    if bw < bh:
        if x0 <= 1 < w - x1:
            lf = bh - bw
        elif w - x1 <= 1 < x0:
            r = bh - bw
    elif bh < bw:
        if y0 <= 1 < h - y1:
            t = bw - bh
        elif h - y1 <= 1 < y0:
            b = bw - bh
    return t, b, lf, r
