"""Scenes of the mini world and their renderer: 1-4 flat shapes in GenEval's ten colours on a gray background.

A scene is a frozen value; rendering is a pure function of it (no randomness), so the same scene always
gives the same pixels. Coordinates are pixels of the 64-px canvas (``CANVAS``); rendering at another size
scales them. Shapes are rasterised at pixel centres without anti-aliasing, so every object pixel carries
exactly its palette colour (what the exact detector relies on).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

CANVAS = 64
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross")

# GenEval's colour list, in its order (djghosh13/geneval evaluation/evaluate_images.py, COLORS).
# RGBs chosen far apart from each other and from the background (min pairwise distance ~ 95).
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (250, 140, 0),
    "yellow": (245, 225, 30),
    "green": (30, 160, 50),
    "blue": (30, 70, 225),
    "purple": (135, 40, 180),
    "pink": (250, 135, 205),
    "brown": (115, 65, 20),
    "black": (15, 15, 15),
    "white": (245, 245, 245),
}
BACKGROUND: tuple[int, int, int] = (140, 140, 140)

MIN_SIZE = 14.0  # PLATFORM.md: 12-px crosses/diamonds blur through the VAE; 14 px survives
MAX_SIZE = 22.0
GAP = 2.0  # minimum free pixels between two objects' boxes
CROSS_ARM = 1.0 / 3.0  # arm thickness as a fraction of the cross's size
DEGRADATIONS = ("blur", "noise", "jpeg")


@dataclass(frozen=True)
class Obj:
    """One shape: centre (x, y) and size (full width = full height) in canvas pixels."""

    shape: str
    color: str
    x: float
    y: float
    size: float

    @property
    def box(self) -> tuple[float, float, float, float]:
        h = self.size / 2
        return (self.x - h, self.y - h, self.x + h, self.y + h)


@dataclass(frozen=True)
class Scene:
    objects: tuple[Obj, ...]
    background: tuple[int, int, int] = BACKGROUND


# --------------------------------------------------------------------------- geometry


def shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, half_w: float, half_h: float) -> np.ndarray:
    """Which points (offsets from the centre) lie inside ``shape`` with the given half extents.

    Shared by the renderer and the detector's templates, so both agree on what a shape is.
    """
    u = dx / half_w
    v = dy / half_h
    if shape == "circle":
        return u * u + v * v <= 1.0
    if shape == "square":
        return (np.abs(u) <= 1.0) & (np.abs(v) <= 1.0)
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    if shape == "triangle":  # apex up, base down
        return (v >= -1.0) & (v <= 1.0) & (np.abs(u) <= (v + 1.0) / 2.0)
    if shape == "cross":
        arm = CROSS_ARM
        return ((np.abs(u) <= 1.0) & (np.abs(v) <= arm)) | ((np.abs(v) <= 1.0) & (np.abs(u) <= arm))
    raise ValueError(f"unknown shape '{shape}' (known: {', '.join(SHAPES)})")


def _paint(canvas: np.ndarray, obj: Obj, scale: float, value: Any = None) -> None:
    """Paint ``obj``'s pixels of ``canvas`` with its colour (or with ``value``, e.g. a depth)."""
    h, w = canvas.shape[:2]
    cx, cy, half = obj.x * scale, obj.y * scale, obj.size * scale / 2
    x0, x1 = max(int(np.floor(cx - half)) - 1, 0), min(int(np.ceil(cx + half)) + 1, w)
    y0, y1 = max(int(np.floor(cy - half)) - 1, 0), min(int(np.ceil(cy + half)) + 1, h)
    if x0 >= x1 or y0 >= y1:
        return
    dx = (np.arange(x0, x1) + 0.5 - cx)[None, :]
    dy = (np.arange(y0, y1) + 0.5 - cy)[:, None]
    mask = shape_mask(obj.shape, dx, dy, half, half)
    canvas[y0:y1, x0:x1][mask] = COLORS[obj.color] if value is None else value


def render(scene: Scene, size: int = 64) -> np.ndarray:
    """The scene as a uint8 (size, size, 3) array; later objects paint over earlier ones."""
    canvas = np.empty((size, size, 3), dtype=np.uint8)
    canvas[:] = scene.background
    scale = size / CANVAS
    for obj in scene.objects:
        _paint(canvas, obj, scale)
    return canvas


def render_layers(scene: Scene, values: Sequence[float], size: int = 64, background: float = 0.0) -> np.ndarray:
    """A float32 (size, size) map: ``background`` everywhere, each object's pixels set to its entry of
    ``values``, painted in layer order as ``render`` paints colours (a later object covers an earlier one)."""
    if len(values) != len(scene.objects):
        raise ValueError(f"{len(values)} values for {len(scene.objects)} objects")
    canvas = np.full((size, size), background, dtype=np.float32)
    scale = size / CANVAS
    for obj, value in zip(scene.objects, values):
        _paint(canvas, obj, scale, float(value))
    return canvas


def render_batch(scenes: Sequence[Scene], size: int = 64) -> np.ndarray:
    """(N, size, size, 3) uint8."""
    out = np.empty((len(scenes), size, size, 3), dtype=np.uint8)
    scale = size / CANVAS
    for i, scene in enumerate(scenes):
        out[i] = scene.background
        for obj in scene.objects:
            _paint(out[i], obj, scale)
    return out


# --------------------------------------------------------------------------- sampling


def boxes_apart(a: tuple[float, float, float, float], b: tuple[float, float, float, float], gap: float = GAP) -> bool:
    """True when two boxes are separated by at least ``gap`` pixels along x or y."""
    return a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1]


def place(
    specs: Sequence[tuple[str, str]],
    rng: np.random.Generator,
    sizes: Sequence[float] | None = None,
    accept=None,
    tries: int = 200,
) -> tuple[Obj, ...]:
    """Place (shape, colour) specs at random non-overlapping positions inside the canvas.

    ``accept(objs) -> bool`` adds a constraint (e.g. a spatial relation). Sizes shrink towards MIN_SIZE
    when the objects do not fit, so placement always succeeds for up to 4 objects.
    """
    n = len(specs)
    if sizes is None:
        sizes = rng.uniform(MIN_SIZE, MAX_SIZE, size=n)
    sizes = [float(s) for s in sizes]
    for attempt in range(tries):
        if attempt and attempt % 50 == 0:  # crowded: shrink everything a little
            sizes = [max(MIN_SIZE, s * 0.9) for s in sizes]
        objs: list[Obj] = []
        for (shape, color), s in zip(specs, sizes):
            half = s / 2
            for _ in range(30):
                x = float(rng.uniform(half + 1, CANVAS - half - 1))
                y = float(rng.uniform(half + 1, CANVAS - half - 1))
                cand = Obj(shape, color, round(x, 2), round(y, 2), round(s, 2))
                if all(boxes_apart(cand.box, o.box) for o in objs):
                    objs.append(cand)
                    break
            else:
                break
        if len(objs) == n and (accept is None or accept(tuple(objs))):
            return tuple(objs)
    raise RuntimeError(f"could not place {n} objects satisfying the constraint in {tries} tries")


def random_scene(rng: np.random.Generator, n_objects: int | None = None) -> Scene:
    """1-4 non-overlapping shapes with random classes, colours, sizes and positions."""
    n = int(rng.integers(1, 5)) if n_objects is None else int(n_objects)
    if not 0 <= n <= 4:
        raise ValueError(f"n_objects must be 0-4, got {n}")
    color_names = list(COLORS)
    specs = [
        (SHAPES[int(rng.integers(len(SHAPES)))], color_names[int(rng.integers(len(color_names)))]) for _ in range(n)
    ]
    return Scene(place(specs, rng) if n else ())


# --------------------------------------------------------------------------- degradations


def degrade(images: np.ndarray, kind: str, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """A degraded copy of uint8 images ((H,W,3) or (N,H,W,3)).

    strength 1.0 means: blur = Gaussian sigma 1.0 px; noise = Gaussian sigma 12 (of 255) per channel;
    jpeg = quality 50 (quality = 95 - 45 * strength, at least 5; PIL's default 4:2:0 chroma subsampling).
    """
    arr = np.asarray(images)
    single = arr.ndim == 3
    batch = arr[None] if single else arr
    if kind == "blur":
        from scipy.ndimage import gaussian_filter

        sigma = 1.0 * strength
        out = gaussian_filter(batch.astype(np.float32), sigma=(0, sigma, sigma, 0), mode="nearest")
        out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    elif kind == "noise":
        noise = rng.normal(0.0, 12.0 * strength, size=batch.shape)
        out = np.clip(np.rint(batch.astype(np.float64) + noise), 0, 255).astype(np.uint8)
    elif kind == "jpeg":
        from PIL import Image

        quality = int(max(5, round(95 - 45 * strength)))
        out = np.empty_like(batch)
        for i, img in enumerate(batch):
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="JPEG", quality=quality)
            buf.seek(0)
            out[i] = np.asarray(Image.open(buf).convert("RGB"))
    else:
        raise ValueError(f"unknown degradation '{kind}' (known: {', '.join(DEGRADATIONS)})")
    return out[0] if single else out


def color_cast(images: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """Renders whose colours are off the palette, as a generative model draws them: every palette colour of
    every image moves by its own random offset (up to 15 * strength per channel; the background 5 * strength).
    Only exact palette pixels move, so apply it to clean renders (before any ``degrade``)."""
    arr = np.asarray(images)
    single = arr.ndim == 3
    batch = (arr[None] if single else arr).astype(np.int16)
    out = batch.copy()
    palette = [(c, 15.0) for c in COLORS.values()] + [(BACKGROUND, 5.0)]
    for i in range(len(batch)):
        for rgb, amp in palette:
            mask = np.all(batch[i] == rgb, -1)
            a = int(round(amp * strength))
            out[i][mask] += rng.integers(-a, a + 1, 3).astype(np.int16)
    out = np.clip(out, 0, 255).astype(np.uint8)
    return out[0] if single else out
