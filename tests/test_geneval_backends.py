"""GenEval on real models: Mask2Former backends (`hf` here; `mmdet` where mmdetection is installed) and the CLIP
colour classifier, on tiny randomly initialised models saved and loaded through the real loading paths."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tiny_rewards as T
import torch
from PIL import Image
from tiny_detectors import BENCH, build_hf_mask2former, build_mmdet_checkpoint

from craft_bench.api import Detection
from craft_bench.detectors.colors import BACKGROUND, TEMPLATES, ClipColorClassifier, masked_crop
from craft_bench.detectors.mask2former import instance_postprocess, mask_to_box, object_names
from craft_bench.errors import UserError
from craft_bench.suites.geneval_rules import COLORS


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("geneval-backends")
    return {"hf": build_hf_mask2former(root / "m2f"), "clip": T.build_openai_clip(root / "clip" / "ViT-L-14.pt")}


def noise(seed: int, h: int = 64, w: int = 80) -> Image.Image:
    return Image.fromarray((np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8))


def test_object_names_are_genevals_coco_order():
    names = object_names()
    assert len(names) == 80 and names[0] == "person" and names[BENCH] == "bench"
    assert names[64:67] == ("computer mouse", "tv remote", "computer keyboard")


def test_instance_postprocess_follows_mmdetection():
    # 2 queries, 3 classes (+ no-object); masks 3x4.
    cls = torch.tensor([[2.0, 0.0, -1.0, 0.5], [0.0, 3.0, 0.0, 0.0]])
    masks = torch.tensor(
        [
            [[1.0, 2.0, -1.0, -1.0], [1.0, 3.0, -2.0, -1.0], [-1.0, -1.0, -1.0, -1.0]],
            [[-1.0, -1.0, -1.0, -1.0], [-1.0, -1.0, 0.5, 0.5], [-1.0, -1.0, 0.5, -1.0]],
        ]
    )
    labels, scores, binary, boxes = instance_postprocess(cls, masks, max_per_image=2)
    probs = torch.softmax(cls, -1)[:, :-1]
    order = sorted(zip(labels.tolist(), scores.tolist(), boxes.tolist()))
    # The two best (query, class) pairs: query 0 class 0 and query 1 class 1.
    m0 = torch.sigmoid(torch.tensor([1.0, 2.0, 1.0, 3.0])).mean()
    m1 = torch.sigmoid(torch.tensor([0.5, 0.5, 0.5])).mean()
    assert [o[0] for o in order] == [0, 1]
    assert order[0][1] == pytest.approx(float(probs[0, 0] * m0), rel=1e-5)
    assert order[1][1] == pytest.approx(float(probs[1, 1] * m1), rel=1e-5)
    assert order[0][2] == [0.0, 0.0, 2.0, 2.0]  # columns 0-1, rows 0-1, +1 at the far edges (mask2bbox)
    assert order[1][2] == [2.0, 1.0, 4.0, 3.0]
    assert binary.dtype == torch.bool and binary.shape == (2, 3, 4)


def test_mask_to_box_of_an_empty_mask_is_zero():
    masks = torch.zeros(2, 5, 5, dtype=torch.bool)
    masks[1, 4, 4] = True
    assert mask_to_box(masks).tolist() == [[0, 0, 0, 0], [4, 4, 5, 5]]


def test_masked_crop_composites_over_999_then_crops():
    image = Image.new("RGB", (8, 6), (10, 200, 30))
    mask = np.zeros((6, 8), bool)
    mask[1:4, 2:5] = True
    crop = np.asarray(masked_crop(image, Detection("cup", 0.9, (1, 1, 6, 5), mask)))
    assert crop.shape == (4, 5, 3)
    assert (crop[:3, 1:4] == (10, 200, 30)).all()  # inside the mask: the image
    assert (crop[3] == (0x99, 0x99, 0x99)).all() and (crop[:, 0] == (0x99, 0x99, 0x99)).all()  # outside: #999
    assert BACKGROUND == "#999"
    unmasked = np.asarray(masked_crop(image, Detection("cup", 0.9, (1, 1, 6, 5), None)))
    assert (unmasked == (10, 200, 30)).all()
    with pytest.raises(ValueError):
        masked_crop(image, Detection("cup", 0.9, (0, 0, 2, 2), np.ones((3, 3), bool)))


def test_colour_classifier_matches_the_official_computation(weights):
    """Logits as GenEval computes them: open_clip's own validation transform on the masked crop, CLIP_benchmark's
    zero-shot classifier (per-template normalised text embeddings, averaged, renormalised), 100 x cosine."""
    import open_clip
    import torch.nn.functional as F

    clf = ClipColorClassifier.load(str(weights["clip"]))
    image = noise(3)
    mask = np.zeros((64, 80), bool)
    mask[10:40, 20:70] = True
    dets = [Detection("bench", 0.9, (18.4, 9.6, 71.2, 41.0), mask), Detection("bench", 0.8, (0, 0, 30, 30), None)]
    ours = clf.logits(image, dets, "bench")

    transform = open_clip.image_transform(
        224, is_train=False, mean=open_clip.OPENAI_DATASET_MEAN, std=open_clip.OPENAI_DATASET_STD
    )
    blank = Image.new("RGB", image.size, color="#999")
    crops = [
        Image.composite(image, blank, Image.fromarray(mask)).crop((18.4, 9.6, 71.2, 41.0)),
        image.crop((0, 0, 30, 30)),
    ]
    model, tok = clf.model, open_clip.get_tokenizer("ViT-L-14")
    with torch.no_grad():
        columns = []
        for c in COLORS:
            e = F.normalize(
                model.encode_text(tok([t.replace("{c}", c).replace("{obj}", "bench") for t in TEMPLATES])), dim=-1
            ).mean(0)
            columns.append(e / e.norm())
        feats = F.normalize(model.encode_image(torch.stack([transform(c) for c in crops])), dim=-1)
        reference = 100.0 * feats @ torch.stack(columns, 1)
    torch.testing.assert_close(ours, reference, atol=1e-4, rtol=1e-4)
    assert clf.classify(image, dets, "bench") == [COLORS[i] for i in reference.argmax(1).tolist()]
    assert clf.classify(image, [], "bench") == []


def test_hf_backend_loads_the_saved_folder_and_detects(weights):
    from craft_bench import registry
    from craft_bench.detectors.hf import HFMask2Former

    assert registry.detectors.get("hf") is HFMask2Former
    det = HFMask2Former.load(weights=str(weights["hf"]), color_weights=str(weights["clip"]))
    found = det.detect([noise(0), noise(1, 80, 64)])
    for dets, (h, w) in zip(found, [(64, 80), (80, 64)]):
        assert len(dets) == 100  # mmdet's max_per_image (12 queries x 80 classes to choose from)
        assert all(d.mask.shape == (h, w) and d.mask.dtype == bool for d in dets)
        best = max(dets, key=lambda d: d.score)
        assert best.label == "bench" and best.score > 0.3  # the favoured class
        x0, y0, x1, y1 = best.box
        ys, xs = np.nonzero(best.mask)
        assert (x0, y0, x1, y1) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


def test_real_model_misses_are_one_line_errors(weights, monkeypatch, tmp_path):
    from craft_bench.detectors.hf import HFMask2Former
    from craft_bench.detectors.mmdetection import CHECKPOINT, MmdetMask2Former, checkpoint_path

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for var in ("CRAFT_BENCH_GENEVAL_HF", "CRAFT_BENCH_GENEVAL_MMDET", "CRAFT_BENCH_CLIP_L14"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(UserError) as err:
        HFMask2Former.preflight()
    T.check_one_line(
        err.value, "config.json", "facebook/mask2former-swin-small-coco-instance", "suite.detector_weights"
    )
    with pytest.raises(UserError) as err:
        HFMask2Former.load(weights=str(tmp_path))  # a folder that is not a saved Mask2Former
    T.check_one_line(err.value, "config.json", str(tmp_path), "suite.detector_weights")
    with pytest.raises(UserError) as err:
        HFMask2Former.preflight(weights=str(weights["hf"]))  # detector there, colour CLIP not
    T.check_one_line(err.value, "open_clip_model.safetensors", "suite.color_weights", "CRAFT_BENCH_CLIP_L14")
    with pytest.raises(UserError) as err:
        checkpoint_path("")
    T.check_one_line(
        err.value, CHECKPOINT, "download.openmmlab.com", "suite.detector_weights", "CRAFT_BENCH_GENEVAL_MMDET"
    )
    with pytest.raises(UserError) as err:
        checkpoint_path(str(tmp_path))  # a folder without the file
    T.check_one_line(err.value, str(tmp_path / CHECKPOINT))
    with pytest.raises(UserError) as err:
        MmdetMask2Former.preflight(weights=str(tmp_path))
    T.check_one_line(err.value, "mmdet")  # not installed: how to install; installed: the missing checkpoint


def test_geneval_with_the_hf_backend_end_to_end(cli, tiny_sdxl, weights, tmp_path):
    """A real-model GenEval run through the CLI: tiny SDXL images, the hf detector and the CLIP colours."""
    lines = [
        {"tag": "single_object", "include": [{"class": "bench", "count": 1}], "prompt": "a photo of a bench"},
        {
            "tag": "colors",
            "include": [{"class": "bench", "count": 1, "color": "red"}],
            "prompt": "a photo of a red bench",
        },
        {
            "tag": "two_object",
            "include": [{"class": "bench", "count": 1}, {"class": "cat", "count": 1}],
            "prompt": "a photo of a bench and a cat",
        },
    ]
    prompts = tmp_path / "meta.jsonl"
    prompts.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "res"
    res = cli.run_json(
        "run",
        "--method",
        "vanilla",
        "--suite",
        "geneval",
        "--model",
        str(tiny_sdxl),
        "--out",
        str(out),
        "--prompts",
        str(prompts),
        "--set",
        "steps=2",
        "--set",
        "suite.images_per_prompt=2",
        "--set",
        "suite.detector=hf",
        "--set",
        f"suite.detector_weights={weights['hf']}",
        "--set",
        f"suite.color_weights={weights['clip']}",
    )
    assert res["metrics"]["single_object"]["value"] == 1.0  # the favoured "bench" is found in every image
    assert res["metrics"]["two_object"]["value"] == 0.0  # a random model sees no confident cat
    run_dir = next((out / "runs" / "geneval").iterdir())
    records = [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]
    colors = [r for r in records if r["tag"] == "colors"]
    for r in colors:  # the colour clause ran: either correct, or the reason names the colours CLIP saw
        assert r["correct"] == 1 or ("expected red bench>=1, found 0 red; and 1 " in r["reason"])
    assert all("bench" in json.loads(r["details"]) for r in records)
    # The official layout is there: every image under geneval/<NNNNN>/samples/<NNNN>.png, hard-linked to the cache.
    for k, line in enumerate(lines):
        assert json.loads((run_dir / "geneval" / f"{k:05d}" / "metadata.jsonl").read_text()) == line
    for r in records:
        k = [line["prompt"] for line in lines].index(r["prompt"])
        png = run_dir / "geneval" / f"{k:05d}" / "samples" / f"{r['index']:04d}.png"
        assert os.path.samefile(png, out / "images" / r["image"][:2] / f"{r['image']}.png")


def test_mmdet_backend_loads_the_official_config_and_detects(cli, tiny_sdxl, tmp_path):
    """Runs where mmdetection is installed (``pip install 'craft-bench[geneval]'``); skipped elsewhere."""
    pytest.importorskip("mmdet.apis", reason="mmdetection not installed (pip install 'craft-bench[geneval]')")
    from craft_bench.detectors.mmdetection import MmdetMask2Former, upgrade_v2_keys

    clip = T.build_openai_clip(tmp_path / "clip" / "ViT-L-14.pt")
    v3 = build_mmdet_checkpoint(tmp_path / "v3" / "mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco.pth")
    v2 = build_mmdet_checkpoint(tmp_path / "v2" / "mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco.pth", v2_names=True)
    sd3 = torch.load(v3, weights_only=True)["state_dict"]
    sd2 = torch.load(v2, weights_only=True)["state_dict"]
    assert any(".attentions.1." in k for k in sd2) and upgrade_v2_keys(sd2).keys() == sd3.keys()

    det = MmdetMask2Former.load(
        weights=str(tmp_path / "v2"), color_weights=str(clip)
    )  # a folder holding the official name
    images = [noise(0), noise(1, 80, 64)]
    found = det.detect(images)
    for dets, im in zip(found, images):
        assert dets and all(d.mask.shape == (im.height, im.width) for d in dets)
        best = max(dets, key=lambda d: d.score)
        assert best.label == "bench" and best.score > 0.3
        ys, xs = np.nonzero(best.mask)
        assert best.box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    assert det.classify_colors(images[0], found[0][:2], "bench")[0] in COLORS
    same = MmdetMask2Former.load(weights=str(v3), color_weights=str(clip)).detect(images[:1])[0]
    assert [(d.label, round(d.score, 5)) for d in same] == [(d.label, round(d.score, 5)) for d in found[0]]

    # Through the suite: real models default to this backend.
    prompts = tmp_path / "meta.jsonl"
    prompts.write_text(
        json.dumps(
            {"tag": "single_object", "include": [{"class": "bench", "count": 1}], "prompt": "a photo of a bench"}
        )
        + "\n"
    )
    res = cli.run_json(
        "run",
        "--method",
        "vanilla",
        "--suite",
        "geneval",
        "--model",
        str(tiny_sdxl),
        "--out",
        str(tmp_path / "res"),
        "--prompts",
        str(prompts),
        "--set",
        "steps=2",
        "--set",
        "suite.images_per_prompt=1",
        "--set",
        f"suite.detector_weights={v2}",
        "--set",
        f"suite.color_weights={clip}",
    )
    assert res["metrics"]["single_object"]["value"] == 1.0 and res["metrics"]["overall"]["n"] == 1


def test_a_missing_detector_stops_the_run_before_training(cli, tiny_sdxl, tmp_path, monkeypatch):
    monkeypatch.delenv("CRAFT_BENCH_GENEVAL_MMDET", raising=False)
    proc = cli(
        "run",
        "--method",
        "redshift",
        "--suite",
        "geneval",
        "--model",
        str(tiny_sdxl),
        "--out",
        str(tmp_path),
        check=False,
    )
    assert proc.returncode == 2 and "mmdet" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())  # nothing trained
