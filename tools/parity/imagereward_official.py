"""Expected ImageReward scores from the official package, for tests/test_rewards_parity.py.

Run once, in a separate virtual environment (``image-reward`` 1.5 does not import beside transformers 5,
nor beside 4.57, and needs undeclared ``openai-clip`` and ``setuptools<81``):

    python -m venv /tmp/venv-ir
    /tmp/venv-ir/bin/pip install torch==2.14.1 torchvision==0.29.1 image-reward==1.5 openai-clip==1.0.1 \
        "setuptools<81" "transformers==4.44.2" "diffusers==0.30.3" "huggingface-hub<0.26"
    /tmp/venv-ir/bin/python tools/parity/imagereward_official.py

The official ``ImageReward.load(path, device, med_config)`` and ``ImageReward.score(prompt, image)`` run
unchanged. Two construction helpers of the package are replaced, because they reach the network or fix
ViT-L's size: ``blip_pretrain.init_tokenizer`` (``BertTokenizer.from_pretrained('bert-base-uncased')``)
loads a small local WordPiece vocabulary and adds BLIP's ``[DEC]``/``[ENC]`` tokens exactly as the original;
``blip_pretrain.create_vit`` returns the package's own ``VisionTransformer`` at a smaller width and depth
(same code path as 'large', 64-wide heads). The text encoder is the package's ``BertModel`` from a shrunk
``med_config.json`` whose hidden size stays 768, since ``ImageReward`` hard-codes ``MLP(768)``.
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
SEED = 20261130
VISION = dict(width=128, depth=2)  # ViT-L: 1024 wide, 24 deep, 16 heads of 64; patch 16 at 224 kept
WORDS = (
    "a an the of on in at and to red green blue cat cats dog dogs bird birds photo cube table wooden horse moon "
    "astronaut riding highly detailed digital art two three park sunset oil painting style old master very long "
    "prompt that goes past thirty five tokens for sure"
).split()


def vocabulary() -> list[str]:
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789")
    return (
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        + list(",.!?-'")
        + chars
        + ["##" + c for c in chars]
        + sorted(set(WORDS))
    )


def med_config(vocab_size: int) -> dict:
    return {
        "architectures": ["BertModel"],
        "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": 768,
        "initializer_range": 0.02,
        "intermediate_size": 256,
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": 64,
        "model_type": "bert",
        "num_attention_heads": 12,
        "num_hidden_layers": 2,
        "pad_token_id": 0,
        "type_vocab_size": 2,
        "vocab_size": vocab_size,
        "encoder_width": VISION["width"],
        "add_cross_attention": True,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=FIXTURES / "imagereward.json")
    args = parser.parse_args()

    import ImageReward as RM
    from ImageReward.models.BLIP import blip_pretrain
    from ImageReward.models.BLIP.vit import VisionTransformer
    from transformers import BertTokenizer

    tmp = Path(tempfile.mkdtemp())
    vocab = vocabulary()
    (tmp / "vocab.txt").write_text("\n".join(vocab) + "\n")

    def init_tokenizer():  # blip.init_tokenizer with a local vocabulary
        tokenizer = BertTokenizer.from_pretrained(str(tmp))
        tokenizer.add_special_tokens({"bos_token": "[DEC]"})
        tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
        tokenizer.enc_token_id = tokenizer.additional_special_tokens_ids[0]
        return tokenizer

    def create_vit(vit, image_size, use_grad_checkpointing=False, ckpt_layer=0, drop_path_rate=0):
        assert vit == "large"
        width = VISION["width"]
        encoder = VisionTransformer(
            img_size=image_size,
            patch_size=16,
            embed_dim=width,
            depth=VISION["depth"],
            num_heads=width // 64,
            use_grad_checkpointing=use_grad_checkpointing,
            ckpt_layer=ckpt_layer,
            drop_path_rate=0.1 or drop_path_rate,
        )
        return encoder, width

    blip_pretrain.init_tokenizer = init_tokenizer
    blip_pretrain.create_vit = create_vit

    med = med_config(len(vocab) + 2)  # + [DEC], [ENC]
    (tmp / "med_config.json").write_text(json.dumps(med))
    from ImageReward.ImageReward import ImageReward as ImageRewardModel

    template = ImageRewardModel(med_config=str(tmp / "med_config.json"), device="cpu")
    spec = describe(template.state_dict())
    checkpoint = tmp / "ImageReward.pt"
    torch.save(seeded_state_dict(spec, SEED), checkpoint)

    model = RM.load(str(checkpoint), device="cpu", med_config=str(tmp / "med_config.json"))
    names = save_images(fixed_images(), FIXTURES / "images", "img")
    with torch.no_grad():
        scores = [
            float(model.score(prompt, im)) for im, prompt in zip(load_images(FIXTURES / "images", names), PROMPTS)
        ]

    fixture = {
        "reward": "imagereward",
        "official": "ImageReward.load + ImageReward.score (image-reward %s)" % version("image-reward"),
        "versions": {
            p: version(p) for p in ("torch", "torchvision", "image-reward", "transformers", "timm", "numpy", "pillow")
        },
        "command": "/tmp/venv-ir/bin/python tools/parity/imagereward_official.py",
        "seed": SEED,
        "vision": VISION,
        "med_config": med,
        "vocab": vocab,
        "keys": spec,
        "images": names,
        "prompts": PROMPTS,
        "expected": scores,
    }
    args.out.write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"wrote {args.out}: {scores}")


if __name__ == "__main__":
    main()
