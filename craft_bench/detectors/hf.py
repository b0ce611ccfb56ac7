"""GenEval detection backend `hf`: transformers' Mask2Former (Swin-S, COCO instance segmentation), no mmcv needed.

NOT the official detector. GenEval runs mmdetection's Mask2Former Swin-S checkpoint
(``mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco``, backend `mmdet`); the default weights here,
``facebook/mask2former-swin-small-coco-instance``, are the Mask2Former authors' own Swin-S COCO model converted to
transformers: separately trained weights, with that checkpoint's image processor for resizing. Verdicts are
therefore close to, not equal to, official GenEval's. What is the same: the COCO classes (by index, GenEval's
names), mmdetection's instance post-processing (``mask2former.instance_postprocess``; mask logits are resized
as mmdet does: to the padded input, cropped to the resized image, bilinearly to the original size), the
rules, and the CLIP colour classifier.

Weights: ``--set suite.detector_weights=PATH`` (a ``save_pretrained`` folder holding the model and its image
processor), else ``$CRAFT_BENCH_GENEVAL_HF``, else the hub id above. Loaded with ``from_pretrained`` (no remote code).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Sequence

from craft_bench.api import Detection
from craft_bench.detectors.colors import ClipColorClassifier
from craft_bench.detectors.mask2former import N_CLASSES, Mask2FormerDetector, instance_postprocess
from craft_bench.errors import UserError

HUB_ID = "facebook/mask2former-swin-small-coco-instance"
ENV = "CRAFT_BENCH_GENEVAL_HF"
OPTION = "--set suite.detector_weights=DIR"


def _source(weights: str | None) -> Any:
    from craft_bench.rewards.common import resolve_source

    return resolve_source("geneval detector (hf)", ENV, weights, HUB_ID, OPTION)


def _check_present(src: Any) -> None:
    """A local folder with a config.json, or a hub repo whose config.json is cached or downloadable -- or one line."""
    if not src.local:
        from craft_bench.rewards.common import hub_file

        hub_file(src, "config.json")  # the one-line error names the file and the two ways to provide it
    elif not (Path(src.value) / "config.json").is_file():
        raise UserError(
            f"geneval detector (hf): '{src.value}' has no config.json (a save_pretrained folder of a "
            f"Mask2Former); {src.hint()}"
        )


class HFMask2Former(Mask2FormerDetector):
    name: ClassVar[str] = "hf"
    description: ClassVar[str] = (
        "transformers Mask2Former Swin-S COCO + CLIP ViT-L-14 colours (close to, not equal to, official GenEval)"
    )

    def __init__(self, model: Any, processor: Any, colors: ClipColorClassifier | None, device: str = "cpu") -> None:
        super().__init__(colors)
        self.model = model.to(device).eval()
        self.processor = processor
        self.device = device

    @classmethod
    def preflight(cls, weights: str = "", color_weights: str = "", **_: Any) -> None:
        from craft_bench.detectors.colors import check_weights

        _check_present(_source(weights))
        check_weights(color_weights)

    @classmethod
    def load(cls, device: str = "cpu", weights: str = "", color_weights: str = "", **_: Any) -> "HFMask2Former":
        from transformers import Mask2FormerForUniversalSegmentation, Mask2FormerImageProcessor

        from craft_bench.models import quiet_library_bars

        quiet_library_bars()
        from craft_bench.rewards.common import load_pretrained

        src = _source(weights)
        _check_present(src)
        model, processor = load_pretrained(
            src, Mask2FormerForUniversalSegmentation, Mask2FormerImageProcessor, "a Mask2Former"
        )
        if model.config.num_labels != N_CLASSES:
            raise UserError(
                f"geneval detector (hf): '{src.value}' predicts {model.config.num_labels} classes, not COCO's "
                f"{N_CLASSES}; "
                f"give a COCO instance-segmentation Mask2Former ({HUB_ID})"
            )
        return cls(model, processor, ClipColorClassifier.load(color_weights or None, device), device)

    def detect(self, images: Sequence[Any]) -> list[list[Detection]]:
        return [self.detect_one(im) for im in images]

    def detect_one(self, image: Any) -> list[Detection]:
        import torch
        import torch.nn.functional as F

        image = image.convert("RGB")
        inputs = self.processor(images=[image], return_tensors="pt")
        pixel_values = inputs["pixel_values"].to(self.device)
        pixel_mask = inputs.get("pixel_mask")
        with torch.inference_mode():
            out = self.model(
                pixel_values=pixel_values, pixel_mask=None if pixel_mask is None else pixel_mask.to(self.device)
            )
            # mmdet: upsample to the padded input, drop the padding, then resize to the original image.
            masks = F.interpolate(
                out.masks_queries_logits, size=pixel_values.shape[-2:], mode="bilinear", align_corners=False
            )
            if pixel_mask is not None:
                valid = pixel_mask[0].bool()
                h, w = int(valid.any(1).sum()), int(valid.any(0).sum())
                masks = masks[..., :h, :w]
            masks = F.interpolate(masks, size=(image.height, image.width), mode="bilinear", align_corners=False)[0]
            labels, scores, binary, boxes = instance_postprocess(out.class_queries_logits[0], masks)
        return self.to_detections(labels.cpu().numpy(), scores.cpu().numpy(), boxes.numpy(), binary.cpu().numpy())
