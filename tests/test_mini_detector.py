"""The `mini` detector: exact round trip on renders, robustness to degradations, and nothing from noise."""

from collections import Counter

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter

from craft_bench import registry
from craft_bench.mini.detector import MiniDetector
from craft_bench.mini.eval_detector import build_cases, verdict_accuracy
from craft_bench.mini.prompts import geneval_prompts
from craft_bench.mini.scenes import color_cast, degrade, random_scene, render, render_batch
from craft_bench.mini.shapes import oracle_detections
from craft_bench.suites.geneval_rules import evaluate_detections


@pytest.fixture(scope="module")
def detector():
    return MiniDetector()


@pytest.fixture(scope="module")
def scenes():
    rng = np.random.default_rng(123)
    return [random_scene(rng) for _ in range(120)]


def _exact(dets, scene, threshold=0.9) -> bool:
    got = Counter((d.label, d.color, d.box) for d in dets if d.score > threshold)
    want = Counter((d.label, d.color, d.box) for d in oracle_detections(scene))
    return got == want


def test_registered(detector):
    assert isinstance(registry.detectors.get("mini")(), MiniDetector)


def test_round_trip_on_clean_renders(detector, scenes):
    images = [Image.fromarray(im) for im in render_batch(scenes)]
    results = detector.detect(images)
    for scene, dets in zip(scenes, results):
        assert _exact(dets, scene), scene  # class, colour and box of every object, above the counting threshold
        assert all(d.score > 0.99 for d in dets)
    d = results[0][0]
    x0, y0, x1, y1 = map(int, d.box)
    assert d.mask.shape == (64, 64) and d.mask.dtype == bool
    ys, xs = np.nonzero(d.mask)
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x0, y0, x1, y1)


def test_round_trip_at_128_px(detector, scenes):
    for scene in scenes[:10]:
        dets = detector.detect([render(scene, 128)])[0]
        assert Counter((d.label, d.color) for d in dets if d.score > 0.9) == Counter(
            (o.shape, o.color) for o in scene.objects
        )


@pytest.mark.parametrize("kind", ["blur", "noise"])
def test_round_trip_survives_blur_and_noise(detector, scenes, kind):
    images = degrade(render_batch(scenes), kind, np.random.default_rng(0), strength=1.0)
    results = detector.detect(list(images))
    ok = [
        Counter((d.label, d.color) for d in ds if d.score > 0.9) == Counter((o.shape, o.color) for o in s.objects)
        for s, ds in zip(scenes, results)
    ]
    assert np.mean(ok) >= 0.98


def test_round_trip_survives_a_colour_cast(detector, scenes):
    # a generative model's colours are near, not on, the palette
    images = color_cast(render_batch(scenes), np.random.default_rng(0), strength=1.0)
    results = detector.detect(list(images))
    assert np.mean([_exact(ds, s) for s, ds in zip(scenes, results)]) >= 0.98


def test_verdict_accuracy_on_clean_and_jpeg_renders(detector):
    metas, cases, _ = build_cases(8, seed=3)
    clean = render_batch(cases)
    assert verdict_accuracy(detector, metas, cases, clean)["all"] == 1.0
    jpeg = degrade(clean, "jpeg", np.random.default_rng(0), strength=0.5)
    assert verdict_accuracy(detector, metas, cases, jpeg)["all"] >= 0.95


def test_uniform_noise_gives_nothing_above_threshold(detector):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (60, 64, 64, 3), dtype=np.uint8)
    assert all(d.score <= 0.3 for ds in detector.detect(list(images)) for d in ds)


def test_smooth_random_blobs_stay_under_threshold(detector):
    # Smooth random colour fields: what a barely trained diffusion model tends to draw.
    rng = np.random.default_rng(1)
    field = gaussian_filter(rng.normal(size=(40, 64, 64, 3)), (0, 4, 4, 0))
    field = (field - field.mean((1, 2), keepdims=True)) / field.std((1, 2), keepdims=True)
    images = np.clip(140 + 60 * field, 0, 255).astype(np.uint8)
    confident = sum(d.score > 0.3 for ds in detector.detect(list(images)) for d in ds)
    assert confident <= 2  # measured: 7 over 200 such images (0.1 per image for sigma 6 fields)


def test_an_untrained_model_scores_about_zero(detector):
    rng = np.random.default_rng(2)
    metas = geneval_prompts(10, seed=5)
    fields = gaussian_filter(rng.normal(size=(len(metas), 64, 64, 3)), (0, 1.5, 1.5, 0))
    images = np.clip(140 + 200 * fields, 0, 255).astype(np.uint8)
    noise = rng.integers(0, 256, (len(metas), 64, 64, 3), dtype=np.uint8)
    verdicts = [
        evaluate_detections(d, m)[0] for batch in (images, noise) for d, m in zip(detector.detect(list(batch)), metas)
    ]
    assert sum(verdicts) == 0


def test_flat_blob_of_wrong_shape_is_not_confident(detector):
    img = np.full((64, 64, 3), 140, np.uint8)
    img[10:14, 10:50] = (220, 30, 30)  # a red bar: aspect 0.1
    img[30:50, 30:36] = (30, 70, 225)  # a blue bar
    assert all(d.score <= 0.3 for d in detector.detect([img])[0])


def test_rejects_non_rgb_input(detector):
    with pytest.raises(ValueError):
        detector.detect([np.zeros((64, 64), np.uint8)])


def test_eval_detector_script_runs_with_a_vae(tmp_path, capsys):
    import torch
    from diffusers import AutoencoderKL

    from craft_bench.mini.eval_detector import main

    torch.manual_seed(0)
    AutoencoderKL(block_out_channels=(8,), norm_num_groups=8, latent_channels=4, layers_per_block=1).save_pretrained(
        tmp_path / "vae"
    )
    main(["--n-per-task", "1", "--strengths", "1", "--vae", str(tmp_path / "vae"), "--detectors", "mini,mini-v1"])
    out = capsys.readouterr().out.splitlines()
    rows = {tuple(line.split()[:2]): line.split()[2:] for line in out[2:-1]}
    conditions = {"clean", "blur@1", "noise@1", "jpeg@1", "cast@1", "vae"}
    assert set(rows) == {(d, c) for d in ("mini", "mini-v1") for c in conditions}
    rows = {c: v for (d, c), v in rows.items() if d == "mini"}
    assert rows["clean"][:7] == ["1.0000"] * 7  # six tasks and all
    assert float(rows["vae"][6]) < 1.0  # a random VAE destroys the images
