"""Expected HPS v2.1 scores from the official scorer, for tests/test_rewards_parity.py.

Run once, in a separate virtual environment holding the official package (never in craft-bench's own):

    python -m venv /tmp/venv-hps
    /tmp/venv-hps/bin/pip install torch==2.14.1 torchvision==0.29.1 hpsv2x==1.2.0
    /tmp/venv-hps/bin/python tools/parity/hps_official.py

(``hpsv2x`` is the sdist of ``hpsv2`` that ships its BPE vocab; see docs/rewards.md for the versions seen.)

It builds the official model with ``hpsv2.src.open_clip.create_model_and_transforms`` and the same
arguments as ``hpsv2.img_score.initialize_model``, but a tiny architecture of the same structure (the
official ViT-H-14 needs a 4 GB download); fills it with seeded weights (``seeded.py``), saves them as
``HPS_v2.1_compressed.pt`` (``{"state_dict": ...}``), and scores the fixed images with the official
``hpsv2.img_score.score(image, prompt, cp=...)`` itself, the one place where it is pre-seeded with the
tiny model instead of downloading ViT-H-14. The fixture stores the architecture, the key list, the seed
and the scores -- no official code and no weights.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from importlib.metadata import version
from pathlib import Path

import torch

# Run as a script, so this folder (seeded.py) is on sys.path.
from seeded import PROMPTS, describe, fixed_images, load_images, save_images, seeded_state_dict

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "parity"
ARCH_NAME = "parity-tiny-hps"
# ViT-H-14's structure (GELU, 14 px patches at 224, 77-token context, the full CLIP vocabulary), shrunk.
ARCH = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 128, "head_width": 64, "patch_size": 14},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
SEED = 20261127


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=FIXTURES / "hps.json")
    args = parser.parse_args()

    import hpsv2.img_score as official
    from hpsv2.src.open_clip import add_model_config, create_model_and_transforms

    tmp = Path(tempfile.mkdtemp())
    (tmp / f"{ARCH_NAME}.json").write_text(json.dumps(ARCH))
    add_model_config(tmp / f"{ARCH_NAME}.json")
    model, _, preprocess_val = create_model_and_transforms(
        ARCH_NAME,
        None,
        precision="amp",
        device="cpu",
        jit=False,
        force_quick_gelu=False,
        force_custom_text=False,
        force_patch_dropout=False,
        force_image_size=None,
        pretrained_image=False,
        image_mean=None,
        image_std=None,
        light_augmentation=True,
        aug_cfg={},
        output_dict=True,
        with_score_predictor=False,
        with_region_predictor=False,
    )
    spec = describe(model.state_dict())
    checkpoint = tmp / "HPS_v2.1_compressed.pt"
    torch.save({"state_dict": seeded_state_dict(spec, SEED)}, checkpoint)

    names = save_images(fixed_images(), FIXTURES / "images", "img")
    images = load_images(FIXTURES / "images", names)
    official.model_dict["model"] = model
    official.model_dict["preprocess_val"] = preprocess_val
    scores = [
        float(official.score(im, prompt, cp=str(checkpoint), hps_version="v2.1")[0])
        for im, prompt in zip(images, PROMPTS)
    ]

    fixture = {
        "reward": "hps",
        "official": "hpsv2.img_score.score (hpsv2x %s)" % version("hpsv2x"),
        "versions": {p: version(p) for p in ("torch", "torchvision", "hpsv2x", "numpy", "pillow")},
        "command": "/tmp/venv-hps/bin/python tools/parity/hps_official.py",
        "seed": SEED,
        "arch": ARCH,
        "checkpoint_file": "HPS_v2.1_compressed.pt",
        "keys": spec,
        "images": names,
        "prompts": PROMPTS,
        "expected": scores,
    }
    args.out.write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"wrote {args.out}: {scores}")


if __name__ == "__main__":
    main()
