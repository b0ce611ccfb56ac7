"""The mini world's scenes and renderer: palette, geometry, determinism, speed, degradations."""

import time

import numpy as np
import pytest

from craft_bench.mini.scenes import (
    BACKGROUND,
    CANVAS,
    COLORS,
    MIN_SIZE,
    SHAPES,
    Obj,
    Scene,
    boxes_apart,
    color_cast,
    degrade,
    random_scene,
    render,
    render_batch,
)

GENEVAL_COLORS = ["red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white"]


def test_palette_is_geneval_colors_in_order_and_well_separated():
    assert list(COLORS) == GENEVAL_COLORS
    assert len(SHAPES) >= 5 and len(set(SHAPES)) == len(SHAPES)
    rgbs = np.array(list(COLORS.values()) + [BACKGROUND], dtype=float)
    dist = np.sqrt(((rgbs[:, None] - rgbs[None]) ** 2).sum(-1))
    np.fill_diagonal(dist, np.inf)
    assert dist.min() > 80


def test_render_is_deterministic_and_only_uses_palette_colours():
    rng = np.random.default_rng(0)
    scenes = [random_scene(rng) for _ in range(50)]
    a, b = render_batch(scenes), render_batch(scenes)
    assert a.dtype == np.uint8 and a.shape == (50, 64, 64, 3)
    assert np.array_equal(a, b)
    assert np.array_equal(a[7], render(scenes[7]))
    allowed = {tuple(c) for c in COLORS.values()} | {BACKGROUND}
    assert {tuple(p) for p in a.reshape(-1, 3)} <= allowed


def test_shape_geometry():
    square = render(Scene((Obj("square", "red", 20.0, 20.0, 10.0),)))
    red = np.all(square == COLORS["red"], -1)
    ys, xs = np.nonzero(red)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (15, 24, 15, 24) and red.sum() == 100
    circle = np.all(render(Scene((Obj("circle", "blue", 32.0, 32.0, 20.0),))) == COLORS["blue"], -1)
    assert abs(circle.sum() - np.pi * 100) < 10
    tri = np.all(render(Scene((Obj("triangle", "green", 32.0, 32.0, 20.0),))) == COLORS["green"], -1)
    rows = tri.sum(1)[tri.any(1)]
    assert rows[0] < rows[-1] and abs(tri.sum() - 200) < 15  # apex up, half the box
    diamond = np.all(render(Scene((Obj("diamond", "black", 32.0, 32.0, 20.0),))) == COLORS["black"], -1)
    assert abs(diamond.sum() - 200) <= 20 and not diamond[22, 22]  # corners of the box are empty
    cross = np.all(render(Scene((Obj("cross", "white", 32.0, 32.0, 21.0),))) == COLORS["white"], -1)
    assert cross[32, 22] and cross[22, 32] and not cross[23, 23]
    with pytest.raises(ValueError):
        render(Scene((Obj("hexagon", "red", 32.0, 32.0, 20.0),)))


def test_render_scales_to_other_sizes():
    scene = Scene((Obj("square", "pink", 16.0, 16.0, 8.0),))
    big = render(scene, size=128)
    assert big.shape == (128, 128, 3)
    assert np.all(big == COLORS["pink"], -1).sum() == 4 * np.all(render(scene) == COLORS["pink"], -1).sum()


def test_random_scenes_are_valid_varied_and_seeded():
    rng = np.random.default_rng(1)
    scenes = [random_scene(rng) for _ in range(300)]
    counts = [len(s.objects) for s in scenes]
    assert set(counts) == {1, 2, 3, 4}
    for s in scenes:
        for i, o in enumerate(s.objects):
            assert o.size >= MIN_SIZE - 1e-9 and o.shape in SHAPES and o.color in COLORS
            x0, y0, x1, y1 = o.box
            assert x0 >= 0 and y0 >= 0 and x1 <= CANVAS and y1 <= CANVAS
            assert all(boxes_apart(o.box, p.box) for p in s.objects[i + 1 :])
    sizes = [o.size for s in scenes for o in s.objects]
    assert max(sizes) - min(sizes) > 6
    assert random_scene(np.random.default_rng(5)) == random_scene(np.random.default_rng(5))
    assert len(random_scene(np.random.default_rng(5), n_objects=4).objects) == 4


def test_render_speed_is_thousands_per_second():
    rng = np.random.default_rng(2)
    scenes = [random_scene(rng) for _ in range(1000)]
    t0 = time.perf_counter()
    render_batch(scenes)
    assert time.perf_counter() - t0 < 1.0  # measured ~0.25 s on 2 shared cores


@pytest.mark.parametrize("kind", ["blur", "noise", "jpeg"])
def test_degrade(kind):
    images = render_batch([random_scene(np.random.default_rng(i)) for i in range(4)])
    out = degrade(images, kind, np.random.default_rng(0))
    assert out.shape == images.shape and out.dtype == np.uint8
    assert not np.array_equal(out, images)
    assert np.array_equal(out, degrade(images, kind, np.random.default_rng(0)))
    stronger = degrade(images, kind, np.random.default_rng(0), strength=2.0)
    err = lambda x: np.abs(x.astype(int) - images).mean()  # noqa: E731
    assert err(stronger) > err(out)
    assert degrade(images[0], kind, np.random.default_rng(0)).shape == images[0].shape


def test_degrade_rejects_unknown_kind():
    with pytest.raises(ValueError):
        degrade(np.zeros((64, 64, 3), np.uint8), "sepia", np.random.default_rng(0))


def test_color_cast_moves_each_palette_colour_by_one_offset():
    image = render(Scene((Obj("square", "red", 20.0, 20.0, 10.0), Obj("circle", "red", 45.0, 45.0, 12.0))))
    cast = color_cast(image, np.random.default_rng(3), strength=1.0)
    red = np.all(image == COLORS["red"], -1)
    moved = cast[red]
    assert (moved == moved[0]).all() and not np.array_equal(moved[0], COLORS["red"])
    assert np.abs(moved[0].astype(int) - COLORS["red"]).max() <= 15
    assert np.abs(cast[~red].astype(int) - BACKGROUND).max() <= 5
