"""Expected LAION aesthetic scores from the official code, for tests/test_rewards_parity.py.

The predictor has no package; its official code is ``simple_inference.py`` of
christophschuhmann/improved-aesthetic-predictor, a script (it scores ``test.jpg`` at import), plus
openai/CLIP's ``clip`` package. Run once, in a separate virtual environment:

    python -m venv /tmp/venv-ir
    /tmp/venv-ir/bin/pip install torch==2.14.1 torchvision==0.29.1 openai-clip==1.0.1 "setuptools<81" pytorch-lightning
    git clone https://github.com/christophschuhmann/improved-aesthetic-predictor /tmp/iap   # not committed here
    /tmp/venv-ir/bin/python tools/parity/aes_official.py --official /tmp/iap/simple_inference.py

From ``simple_inference.py`` only the ``MLP`` class and the ``normalized`` function are taken (parsed
with ``ast`` and executed; the script's top level would load files and a GPU). The CLIP is built with the
official ``clip.model.build_model`` (what ``clip.load`` does after downloading) from a seeded OpenAI-layout
state dict of a tiny ViT with ViT-L/14's structure (14 px patches, 224 px, QuickGELU, fp16 weights as in the
real file), and an embedding of 768 so the script's ``MLP(768)`` runs unchanged. Scoring follows the
script line by line: ``preprocess`` -> ``encode_image`` -> ``normalized`` -> ``MLP``.
"""

from __future__ import annotations

import argparse
import ast
import json
from importlib.metadata import version
from pathlib import Path

import torch

# Run as a script, so this folder (seeded.py) is on sys.path.
from seeded import PROMPTS, describe, fixed_images, load_images, save_images, seeded_state_dict

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "parity"
SEED = 20261128
CLIP_SEED = 20261129
TINY = dict(
    embed_dim=768,
    image_resolution=224,
    vision_layers=2,
    vision_width=128,
    vision_patch_size=14,
    context_length=77,
    vocab_size=49408,
    transformer_width=64,
    transformer_heads=1,
    transformer_layers=1,
)


def official_definitions(path: Path) -> dict:
    """Execute only ``class MLP`` and ``def normalized`` from the official script."""
    import pytorch_lightning as pl
    import torch.nn as nn
    import torch.nn.functional as F

    tree = ast.parse(path.read_text())
    keep = [n for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef)) and n.name in ("MLP", "normalized")]
    assert len(keep) == 2, "simple_inference.py no longer defines MLP and normalized"
    namespace = {"pl": pl, "nn": nn, "torch": torch, "F": F}
    exec(compile(ast.Module(body=keep, type_ignores=[]), str(path), "exec"), namespace)
    return namespace


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--official", type=Path, required=True, help="improved-aesthetic-predictor/simple_inference.py")
    parser.add_argument("--out", type=Path, default=FIXTURES / "aes.json")
    args = parser.parse_args()

    import clip
    from clip.model import CLIP, build_model, convert_weights

    ns = official_definitions(args.official)
    template = CLIP(**TINY)
    convert_weights(template)  # the released OpenAI checkpoints hold these weights in fp16
    clip_spec = describe(template.state_dict())
    clip_sd = seeded_state_dict(clip_spec, CLIP_SEED)
    model2 = build_model({k: v.clone() for k, v in clip_sd.items()}).to("cpu").float()  # as clip.load on CPU
    preprocess = clip.clip._transform(model2.visual.input_resolution)

    model = ns["MLP"](768)
    mlp_spec = describe(model.state_dict())
    model.load_state_dict(seeded_state_dict(mlp_spec, SEED))
    model.eval()

    names = save_images(fixed_images(), FIXTURES / "images", "img")
    scores = []
    for pil_image in load_images(FIXTURES / "images", names):
        image = preprocess(pil_image).unsqueeze(0)
        with torch.no_grad():
            image_features = model2.encode_image(image)
        im_emb_arr = ns["normalized"](image_features.cpu().detach().numpy())
        with torch.no_grad():
            prediction = model(torch.from_numpy(im_emb_arr).type(torch.FloatTensor))
        scores.append(float(prediction.item()))

    fixture = {
        "reward": "aes",
        "official": "improved-aesthetic-predictor simple_inference.py (MLP, normalized) + openai-clip %s"
        % version("openai-clip"),
        "versions": {
            p: version(p) for p in ("torch", "torchvision", "openai-clip", "pytorch-lightning", "numpy", "pillow")
        },
        "command": "/tmp/venv-ir/bin/python tools/parity/aes_official.py --official /tmp/iap/simple_inference.py",
        "seed": SEED,
        "clip_seed": CLIP_SEED,
        "clip_arch": TINY,
        "checkpoint_file": "sac+logos+ava1-l14-linearMSE.pth",
        "clip_keys": clip_spec,
        "mlp_keys": mlp_spec,
        "images": names,
        "prompts": PROMPTS,
        "expected": scores,
    }
    args.out.write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"wrote {args.out}: {scores}")


if __name__ == "__main__":
    main()
