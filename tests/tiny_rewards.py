"""Tiny reward checkpoints built offline, saved in the real files and layouts the real weights use.

Every builder writes what the hub would serve (``HPS_v2.1_compressed.pt`` with a ``state_dict``, an OpenAI
CLIP state dict, the aesthetic MLP ``.pth``, a transformers CLIPModel + CLIPProcessor folder,
``ImageReward.pt`` + ``med_config.json`` + a BERT ``vocab.txt``), so tests load them through the same
code paths as the real ones.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools" / "parity"))
from seeded import seeded_state_dict  # noqa: E402

TINY_OPEN_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "head_width": 32, "patch_size": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


# Full-size shapes of the real checkpoints, for benchmarks (tests/bench_rewards.py); tests use the tiny defaults.
OPENAI_VIT_L14 = {
    "width": 1024,
    "layers": 24,
    "patch": 14,
    "image_size": 224,
    "embed": 768,
    "text_width": 768,
    "text_layers": 12,
    "context": 77,
    "vocab": 49408,
}
PICKSCORE_VIT_H14 = {  # laion/CLIP-ViT-H-14-laion2B-s32B-b79K as a transformers CLIPConfig
    "text": {
        "hidden_size": 1024,
        "intermediate_size": 4096,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "hidden_act": "gelu",
    },
    "vision": {
        "hidden_size": 1280,
        "intermediate_size": 5120,
        "num_hidden_layers": 32,
        "num_attention_heads": 16,
        "patch_size": 14,
        "hidden_act": "gelu",
    },
    "projection_dim": 1024,
}
IMAGEREWARD_FULL = {  # BLIP ViT-L/16 + bert-base med_config.json (vocab 30522 + [DEC], [ENC])
    "vision_width": 1024,
    "vision_depth": 24,
    "hidden": 768,
    "layers": 12,
    "heads": 12,
    "intermediate": 3072,
    "max_positions": 512,
    "vocab_size": 30524,
}
SIZES = ("tiny", "full")


def _check_size(size: str) -> None:
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, not {size!r}")


def write_open_clip_config(folder: Path, name: str = "tiny-hps", cfg: dict | None = None) -> Path:
    path = folder / f"{name}.json"
    path.write_text(json.dumps(cfg or TINY_OPEN_CLIP))
    return path


def build_hps(folder: Path, seed: int = 0, filename: str = "HPS_v2.1_compressed.pt") -> Path:
    """(checkpoint folder, arch json): an open_clip tiny CLIP saved as HPSv2 saves it."""
    import open_clip

    folder.mkdir(parents=True, exist_ok=True)
    cfg = write_open_clip_config(folder)
    open_clip.add_model_config(cfg)
    torch.manual_seed(seed)
    model = open_clip.create_model("tiny-hps", pretrained=None)
    torch.save({"state_dict": model.state_dict(), "epoch": 1}, folder / filename)
    return cfg


def openai_clip_spec(
    width: int = 64,
    layers: int = 1,
    patch: int = 32,
    image_size: int = 224,
    embed: int = 32,
    text_width: int = 64,
    text_layers: int = 1,
    context: int = 77,
    vocab: int = 49408,
) -> list[list[Any]]:
    """Keys and shapes of an OpenAI CLIP ViT state dict (openai/CLIP ``clip/model.py`` naming)."""
    grid = image_size // patch
    spec: list[list[Any]] = [
        ["visual.conv1.weight", [width, 3, patch, patch], "float32"],
        ["visual.class_embedding", [width], "float32"],
        ["visual.positional_embedding", [grid * grid + 1, width], "float32"],
        ["visual.ln_pre.weight", [width], "float32"],
        ["visual.ln_pre.bias", [width], "float32"],
        ["visual.ln_post.weight", [width], "float32"],
        ["visual.ln_post.bias", [width], "float32"],
        ["visual.proj", [width, embed], "float32"],
        ["token_embedding.weight", [vocab, text_width], "float32"],
        ["positional_embedding", [context, text_width], "float32"],
        ["ln_final.weight", [text_width], "float32"],
        ["ln_final.bias", [text_width], "float32"],
        ["text_projection", [text_width, embed], "float32"],
        ["logit_scale", [], "float32"],
    ]
    for prefix, w, n in (("visual.transformer", width, layers), ("transformer", text_width, text_layers)):
        for i in range(n):
            p = f"{prefix}.resblocks.{i}"
            spec += [
                [f"{p}.attn.in_proj_weight", [3 * w, w], "float32"],
                [f"{p}.attn.in_proj_bias", [3 * w], "float32"],
                [f"{p}.attn.out_proj.weight", [w, w], "float32"],
                [f"{p}.attn.out_proj.bias", [w], "float32"],
                [f"{p}.ln_1.weight", [w], "float32"],
                [f"{p}.ln_1.bias", [w], "float32"],
                [f"{p}.mlp.c_fc.weight", [4 * w, w], "float32"],
                [f"{p}.mlp.c_fc.bias", [4 * w], "float32"],
                [f"{p}.mlp.c_proj.weight", [w, 4 * w], "float32"],
                [f"{p}.mlp.c_proj.bias", [w], "float32"],
                [f"{p}.ln_2.weight", [w], "float32"],
                [f"{p}.ln_2.bias", [w], "float32"],
            ]
    return spec


def aes_mlp_spec(width: int = 32) -> list[list[Any]]:
    dims = [(1024, width), (128, 1024), (64, 128), (16, 64), (1, 16)]
    spec = []
    for idx, (o, i) in zip((0, 2, 4, 6, 7), dims):
        spec += [[f"layers.{idx}.weight", [o, i], "float32"], [f"layers.{idx}.bias", [o], "float32"]]
    return spec


def build_openai_clip(path: Path, seed: int = 1, **dims: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(seeded_state_dict(openai_clip_spec(**dims), seed), path)
    return path


def build_aes(folder: Path, seed: int = 2, size: str = "tiny") -> tuple[Path, Path]:
    """(MLP .pth, CLIP .pt) for the aesthetic predictor on an OpenAI-layout CLIP: tiny (embed 32) or
    ``size="full"`` (ViT-L/14, embed 768, as the real predictor)."""
    _check_size(size)
    folder.mkdir(parents=True, exist_ok=True)
    dims = OPENAI_VIT_L14 if size == "full" else {}
    clip = build_openai_clip(folder / "ViT-L-14.pt", seed + 1, **dims)
    mlp = folder / "sac+logos+ava1-l14-linearMSE.pth"
    torch.save(seeded_state_dict(aes_mlp_spec(dims.get("embed", 32)), seed), mlp)
    return mlp, clip


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte->printable-character table: printable Latin-1 bytes map to themselves, the rest to 256+."""
    keep = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def write_clip_bpe_tokenizer(folder: Path, n_merges: int = 48894) -> int:
    """A real CLIP BPE tokenizer (vocab.json + merges.txt) from open_clip's shipped merges; returns its size."""
    import open_clip

    bpe = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    merges = gzip.open(bpe).read().decode("utf-8").split("\n")[1 : n_merges + 1]
    symbols = list(_bytes_to_unicode().values())
    vocab = (
        symbols
        + [s + "</w>" for s in symbols]
        + ["".join(m.split()) for m in merges]
        + ["<|startoftext|>", "<|endoftext|>"]
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return len(vocab)


def build_pickscore(folder: Path, seed: int = 3, size: str = "tiny") -> Path:
    """A transformers CLIPModel + CLIPProcessor folder, laid out as yuvalkirstain/PickScore_v1 + processor:
    tiny, or ``size="full"`` (ViT-H-14 shapes, the full 49408-token CLIP BPE)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    _check_size(size)
    tok_dir = folder / "_tok"
    n = write_clip_bpe_tokenizer(tok_dir, n_merges=48894 if size == "full" else 2000)
    tok = CLIPTokenizer.from_pretrained(tok_dir, model_max_length=77)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    CLIPProcessor(image_processor=image_processor, tokenizer=tok).save_pretrained(folder)
    if size == "full":
        text_dims, vision_dims, projection = (
            PICKSCORE_VIT_H14["text"],
            PICKSCORE_VIT_H14["vision"],
            PICKSCORE_VIT_H14["projection_dim"],
        )
    else:
        text_dims = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
        vision_dims = dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, patch_size=32
        )
        projection = 16
    config = CLIPConfig(
        text_config=dict(
            vocab_size=n,
            max_position_embeddings=77,
            bos_token_id=n - 2,
            eos_token_id=n - 1,
            pad_token_id=n - 1,
            **text_dims,
        ),
        vision_config=dict(image_size=224, **vision_dims),
        projection_dim=projection,
    )
    torch.manual_seed(seed)
    CLIPModel(config).save_pretrained(folder)
    return folder


BERT_WORDS = (
    "a an the of on in at and to red green blue cat cats dog dogs bird birds photo cube table wooden horse moon "
    "astronaut riding highly detailed digital art two three park sunset oil painting style old master very long "
    "prompt that goes past thirty five tokens for sure"
).split()


def write_bert_vocab(folder: Path) -> int:
    letters = list("abcdefghijklmnopqrstuvwxyz0123456789")
    vocab = (
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        + list(",.!?-'")
        + letters
        + ["##" + c for c in letters]
        + sorted(set(BERT_WORDS))
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "model_max_length": 512}))
    return len(vocab)


def med_config(
    vocab_size: int,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 2,
    encoder_width: int = 64,
    intermediate: int | None = None,
    max_positions: int = 64,
) -> dict[str, Any]:
    """BLIP's med_config.json fields (a BertConfig with cross-attention), shrunk by default."""
    return {
        "architectures": ["BertModel"],
        "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": hidden,
        "initializer_range": 0.02,
        "intermediate_size": intermediate or 2 * hidden,
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": max_positions,
        "model_type": "bert",
        "num_attention_heads": heads,
        "num_hidden_layers": layers,
        "pad_token_id": 0,
        "type_vocab_size": 2,
        "vocab_size": vocab_size,
        "encoder_width": encoder_width,
        "add_cross_attention": True,
    }


def imagereward_spec(
    med: dict[str, Any], width: int = 64, depth: int = 2, patch: int = 16, image_size: int = 224
) -> list[list[Any]]:
    """Keys and shapes of ImageReward.pt (BLIP ViT in timm layout + med BERT + MLP), shrunk."""
    v = "blip.visual_encoder"
    grid = image_size // patch
    spec: list[list[Any]] = [
        [f"{v}.cls_token", [1, 1, width], "float32"],
        [f"{v}.pos_embed", [1, grid * grid + 1, width], "float32"],
        [f"{v}.patch_embed.proj.weight", [width, 3, patch, patch], "float32"],
        [f"{v}.patch_embed.proj.bias", [width], "float32"],
        [f"{v}.norm.weight", [width], "float32"],
        [f"{v}.norm.bias", [width], "float32"],
    ]
    for i in range(depth):
        b = f"{v}.blocks.{i}"
        spec += [
            [f"{b}.norm1.weight", [width], "float32"],
            [f"{b}.norm1.bias", [width], "float32"],
            [f"{b}.attn.qkv.weight", [3 * width, width], "float32"],
            [f"{b}.attn.qkv.bias", [3 * width], "float32"],
            [f"{b}.attn.proj.weight", [width, width], "float32"],
            [f"{b}.attn.proj.bias", [width], "float32"],
            [f"{b}.norm2.weight", [width], "float32"],
            [f"{b}.norm2.bias", [width], "float32"],
            [f"{b}.mlp.fc1.weight", [4 * width, width], "float32"],
            [f"{b}.mlp.fc1.bias", [4 * width], "float32"],
            [f"{b}.mlp.fc2.weight", [width, 4 * width], "float32"],
            [f"{b}.mlp.fc2.bias", [width], "float32"],
        ]
    h, t = med["hidden_size"], "blip.text_encoder"
    spec += [
        [f"{t}.embeddings.word_embeddings.weight", [med["vocab_size"], h], "float32"],
        [f"{t}.embeddings.position_embeddings.weight", [med["max_position_embeddings"], h], "float32"],
        [f"{t}.embeddings.LayerNorm.weight", [h], "float32"],
        [f"{t}.embeddings.LayerNorm.bias", [h], "float32"],
        [f"{t}.embeddings.position_ids", [1, med["max_position_embeddings"]], "int64"],
    ]
    for i in range(med["num_hidden_layers"]):
        layer = f"{t}.encoder.layer.{i}"
        for att, kv_in in (("attention", h), ("crossattention", width)):
            spec += [
                [f"{layer}.{att}.self.query.weight", [h, h], "float32"],
                [f"{layer}.{att}.self.query.bias", [h], "float32"],
                [f"{layer}.{att}.self.key.weight", [h, kv_in], "float32"],
                [f"{layer}.{att}.self.key.bias", [h], "float32"],
                [f"{layer}.{att}.self.value.weight", [h, kv_in], "float32"],
                [f"{layer}.{att}.self.value.bias", [h], "float32"],
                [f"{layer}.{att}.output.dense.weight", [h, h], "float32"],
                [f"{layer}.{att}.output.dense.bias", [h], "float32"],
                [f"{layer}.{att}.output.LayerNorm.weight", [h], "float32"],
                [f"{layer}.{att}.output.LayerNorm.bias", [h], "float32"],
            ]
        inter = med["intermediate_size"]
        spec += [
            [f"{layer}.intermediate.dense.weight", [inter, h], "float32"],
            [f"{layer}.intermediate.dense.bias", [inter], "float32"],
            [f"{layer}.output.dense.weight", [h, inter], "float32"],
            [f"{layer}.output.dense.bias", [h], "float32"],
            [f"{layer}.output.LayerNorm.weight", [h], "float32"],
            [f"{layer}.output.LayerNorm.bias", [h], "float32"],
        ]
    spec += [
        ["blip.vision_proj.weight", [256, width], "float32"],
        ["blip.vision_proj.bias", [256], "float32"],
        ["blip.text_proj.weight", [256, h], "float32"],
        ["blip.text_proj.bias", [256], "float32"],
    ]
    spec += [[f"mlp.{k}", s, d] for k, s, d in aes_mlp_spec(h)]
    return spec


def build_imagereward(folder: Path, seed: int = 4, hidden: int = 64, size: str = "tiny") -> Path:
    """A folder as THUDM/ImageReward serves it (ImageReward.pt, med_config.json) plus a BERT vocab.txt.

    ``size="full"``: BLIP ViT-L/16 + bert-base shapes (``IMAGEREWARD_FULL``); the word-piece vocabulary stays
    the small test one (ids fit the full 30524-row embedding; padding to 35 tokens keeps the cost the same)."""
    _check_size(size)
    n = write_bert_vocab(folder)
    if size == "full":
        f = IMAGEREWARD_FULL
        med = med_config(
            f["vocab_size"],
            hidden=f["hidden"],
            layers=f["layers"],
            heads=f["heads"],
            encoder_width=f["vision_width"],
            intermediate=f["intermediate"],
            max_positions=f["max_positions"],
        )
        spec = imagereward_spec(med, width=f["vision_width"], depth=f["vision_depth"])
    else:
        med = med_config(n + 2, hidden=hidden)  # + BLIP's [DEC] and [ENC]
        spec = imagereward_spec(med)
    (folder / "med_config.json").write_text(json.dumps(med))
    torch.save(seeded_state_dict(spec, seed), folder / "ImageReward.pt")
    return folder


def build_reward_set(root: Path, pickscore: bool = False) -> list[str]:
    """Tiny checkpoints of the real rewards under ``root``, as `craft-bench score --source` pairs (NAME=PATH)."""
    hps_arch = build_hps(root / "hps")
    aes_mlp, clip = build_aes(root / "aes")
    ir = build_imagereward(root / "imagereward")
    pairs = [
        f"hps={root / 'hps'}",
        f"hps.arch={hps_arch}",
        f"aes={aes_mlp}",
        f"aes.clip={clip}",
        f"clip={clip}",
        f"imagereward={ir}",
    ]
    if pickscore:
        pick = build_pickscore(root / "pickscore")
        pairs += [f"pickscore={pick}", f"pickscore.processor={pick}"]
    return pairs


def check_one_line(exc: BaseException, *needles: str) -> None:
    text = str(exc)
    assert "\n" not in text, text
    for needle in needles:
        assert needle in text, (needle, text)
