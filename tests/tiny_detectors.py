"""Tiny GenEval detection backends built offline and saved in the real formats: a transformers Mask2Former folder
(``save_pretrained`` model + image processor, as the hub serves facebook/mask2former-swin-small-coco-instance) and
an mmdetection checkpoint of the official Mask2Former Swin-S config (``{"state_dict": ...}``, as mmdet saves).

Random weights predict no class with confidence, so a builder can favour one COCO class (``favour``: its class
logit bias is raised), which makes every query a confident detection of that class and exercises the rules."""

from __future__ import annotations

from pathlib import Path

BENCH = 13  # COCO / GenEval index of "bench"


def build_hf_mask2former(folder: Path, favour: int | None = BENCH, seed: int = 0) -> Path:
    import torch
    from transformers import (
        Mask2FormerConfig,
        Mask2FormerForUniversalSegmentation,
        Mask2FormerImageProcessor,
        SwinConfig,
    )

    backbone = SwinConfig(
        image_size=64,
        patch_size=4,
        embed_dim=16,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 2, 2],
        window_size=4,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    config = Mask2FormerConfig(
        backbone_config=backbone,
        num_labels=80,
        num_queries=12,
        hidden_dim=32,
        mask_feature_size=32,
        feature_size=32,
        encoder_feedforward_dim=32,
        dim_feedforward=32,
        encoder_layers=1,
        decoder_layers=2,
        num_attention_heads=2,
        common_stride=4,
    )
    torch.manual_seed(seed)
    model = Mask2FormerForUniversalSegmentation(config).eval()
    if favour is not None:
        with torch.no_grad():
            model.class_predictor.bias[favour] += 12.0
    model.save_pretrained(folder)
    # Shortest side 64, longest at most 96, padded to a multiple of 32: non-square images exercise the padding crop.
    Mask2FormerImageProcessor(size={"shortest_edge": 64, "longest_edge": 96}, size_divisor=32).save_pretrained(folder)
    return folder


def build_mmdet_checkpoint(path: Path, favour: int | None = BENCH, seed: int = 0, v2_names: bool = False) -> Path:
    """The official config's model with random weights, saved as mmdet saves checkpoints; ``v2_names`` writes the
    transformer layers under mmdet 2.x's names (as GenEval's downloaded checkpoint has them)."""
    import torch

    from craft_bench.detectors.mmdetection import build_model, config_path

    torch.manual_seed(seed)
    model = build_model(config_path())
    state = model.state_dict()
    if favour is not None:
        state["panoptic_head.cls_embed.bias"][favour] += 12.0
    if v2_names:
        state = {to_v2_name(k): v for k, v in state.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state, "meta": {"mmdet_version": "test"}}, path)
    return path


def to_v2_name(key: str) -> str:
    """mmdet 3.x -> 2.x names, written out independently of the product's upgrade (the test of it)."""
    enc, dec = "panoptic_head.pixel_decoder.encoder.layers.", "panoptic_head.transformer_decoder.layers."
    if key.startswith(enc):
        return key.replace(".self_attn.", ".attentions.0.").replace(".ffn.", ".ffns.0.")
    if key.startswith(dec):
        return (
            key.replace(".cross_attn.", ".attentions.0.")
            .replace(".self_attn.", ".attentions.1.")
            .replace(".ffn.", ".ffns.0.")
        )
    return key
