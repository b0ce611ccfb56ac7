"""Parity with the official scorers (run alone with ``pytest -k parity``).

Each fixture in tests/fixtures/parity/ was written by a script in tools/parity/ running the official code
in its own virtual environment on seeded weights in the official checkpoint format. Here the same seeded
checkpoint is rebuilt, written in that format, loaded through craft-bench's real loading path, and must
give the official scores (fp32, atol 1e-4). PickScore has no package: its README formula is computed
directly with transformers.
"""

from __future__ import annotations

import json
from pathlib import Path

import tiny_rewards as T
import torch
from seeded import PROMPTS, fixed_images, load_images, seeded_state_dict

from craft_bench.rewards.aes import LaionAesthetic
from craft_bench.rewards.hps import HPS
from craft_bench.rewards.imagereward import ImageReward

FIXTURES = Path(__file__).parent / "fixtures" / "parity"
ATOL = 1e-4


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def images(fx: dict):
    return load_images(FIXTURES / "images", fx["images"])


def test_hps_parity(tmp_path):
    fx = fixture("hps")
    arch = tmp_path / "parity-tiny-hps.json"
    arch.write_text(json.dumps(fx["arch"]))
    torch.save({"state_dict": seeded_state_dict(fx["keys"], fx["seed"])}, tmp_path / fx["checkpoint_file"])
    reward = HPS.load(str(tmp_path), device="cpu", arch=str(arch))
    scores = reward.score(images(fx), fx["prompts"])
    torch.testing.assert_close(scores, torch.tensor(fx["expected"]), atol=ATOL, rtol=0)


def test_aes_parity(tmp_path):
    fx = fixture("aes")
    torch.save(seeded_state_dict(fx["clip_keys"], fx["clip_seed"]), tmp_path / "ViT-L-14.pt")
    torch.save(seeded_state_dict(fx["mlp_keys"], fx["seed"]), tmp_path / fx["checkpoint_file"])
    reward = LaionAesthetic.load(
        str(tmp_path / fx["checkpoint_file"]), device="cpu", clip_source=str(tmp_path / "ViT-L-14.pt")
    )
    scores = reward.score(images(fx), fx["prompts"])
    torch.testing.assert_close(scores, torch.tensor(fx["expected"]), atol=ATOL, rtol=0)


def test_imagereward_parity(tmp_path):
    fx = fixture("imagereward")
    (tmp_path / "vocab.txt").write_text("\n".join(fx["vocab"]) + "\n")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "model_max_length": 512}))
    (tmp_path / "med_config.json").write_text(json.dumps(fx["med_config"]))
    torch.save(seeded_state_dict(fx["keys"], fx["seed"]), tmp_path / "ImageReward.pt")
    reward = ImageReward.load(str(tmp_path), device="cpu")
    scores = reward.score(images(fx), fx["prompts"])
    torch.testing.assert_close(scores, torch.tensor(fx["expected"]), atol=ATOL, rtol=0)


def test_pickscore_parity_with_readme_formula(tmp_path):
    """yuvalkirstain/PickScore README: processor(images/text, padding, truncation, max_length=77),
    normalised get_image_features / get_text_features, logit_scale.exp() * text @ image.T, softmax."""
    from transformers import CLIPModel, CLIPProcessor

    from craft_bench.rewards.base import pooled
    from craft_bench.rewards.pickscore import PickScore

    folder = T.build_pickscore(tmp_path / "pickscore")
    model = CLIPModel.from_pretrained(folder).eval()
    processor = CLIPProcessor.from_pretrained(folder)
    ims = fixed_images()
    prompt = PROMPTS[2]
    with torch.no_grad():
        image_inputs = processor(images=ims, padding=True, truncation=True, max_length=77, return_tensors="pt")
        text_inputs = processor(text=prompt, padding=True, truncation=True, max_length=77, return_tensors="pt")
        image_embs = pooled(model.get_image_features(**image_inputs))
        image_embs = image_embs / torch.norm(image_embs, dim=-1, keepdim=True)
        text_embs = pooled(model.get_text_features(**text_inputs))
        text_embs = text_embs / torch.norm(text_embs, dim=-1, keepdim=True)
        expected = model.logit_scale.exp() * (text_embs @ image_embs.T)[0]
        expected_probs = torch.softmax(expected, dim=-1)

    reward = PickScore.load(str(folder), device="cpu")
    torch.testing.assert_close(reward.score(ims, [prompt] * len(ims)), expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(reward.probabilities(ims, prompt), expected_probs, atol=1e-5, rtol=0)
