"""What the two Mask2Former backends share: COCO class names, mmdetection's instance post-processing, colours.

GenEval names detections by class index through its ``evaluation/object_names.txt`` (COCO's 80 thing
classes in COCO order, with "computer mouse", "tv remote" and "computer keyboard" for mouse, remote and
keyboard), shipped in ``suites/data/geneval/``.

Instance post-processing (``instance_postprocess``) is mmdetection's ``MaskFormerFusionHead.instance_postprocess``
(mmdet 3.3.0 ``mmdet/models/seg_heads/panoptic_fusion_heads/maskformer_fusion_head.py``; the same in mmdet 2.x),
which the official detector runs inside mmdet and the `hf` backend runs here on transformers' outputs:
class probabilities = softmax over the classes + "no object", the last column dropped; the top
``max_per_image`` (query, class) pairs over all of them (test_cfg ``max_per_image=100``); binary mask =
mask logit > 0; mask score = mean sigmoid inside the binary mask (``/ (area + 1e-6)``); detection score =
class probability x mask score; box = the binary mask's extent ``[x_min, y_min, x_max + 1, y_max + 1]``
(``mmdet.structures.mask.mask2bbox``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

from craft_bench.api import Detection, Detector
from craft_bench.detectors.colors import ClipColorClassifier

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from PIL import Image

MAX_PER_IMAGE = 100
N_CLASSES = 80


@lru_cache(maxsize=1)
def object_names() -> tuple[str, ...]:
    from importlib import resources

    text = (resources.files("craft_bench.suites") / "data" / "geneval" / "object_names.txt").read_text()
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    assert len(names) == N_CLASSES, len(names)
    return names


def mask_to_box(masks: "torch.Tensor") -> "torch.Tensor":
    """[N, H, W] bool -> [N, 4] float boxes (x0, y0, x1 + 1, y1 + 1); all zeros for an empty mask."""
    import torch

    boxes = torch.zeros((masks.shape[0], 4), dtype=torch.float32)
    cols, rows = masks.any(dim=1), masks.any(dim=2)
    for i in range(masks.shape[0]):
        x = torch.nonzero(cols[i]).flatten()
        y = torch.nonzero(rows[i]).flatten()
        if len(x) and len(y):
            boxes[i] = torch.tensor([x[0], y[0], x[-1] + 1, y[-1] + 1], dtype=torch.float32)
    return boxes


def instance_postprocess(
    class_logits: "torch.Tensor", mask_logits: "torch.Tensor", max_per_image: int = MAX_PER_IMAGE
) -> tuple["torch.Tensor", ...]:
    """(labels [K], scores [K], masks [K, H, W] bool, boxes [K, 4]) from one image's [Q, C+1] class logits and
    [Q, H, W] mask logits already at the image's size, as mmdetection computes them."""
    import torch

    num_queries, num_classes = class_logits.shape[0], class_logits.shape[1] - 1
    scores = torch.softmax(class_logits.float(), dim=-1)[:, :-1]
    labels = torch.arange(num_classes).unsqueeze(0).repeat(num_queries, 1).flatten(0, 1)
    top_scores, top = scores.flatten(0, 1).topk(min(max_per_image, scores.numel()), sorted=False)
    labels = labels[top]
    masks = mask_logits[torch.div(top, num_classes, rounding_mode="floor")].float()
    binary = masks > 0
    mask_scores = (masks.sigmoid() * binary).flatten(1).sum(1) / (binary.flatten(1).sum(1) + 1e-6)
    return labels, top_scores * mask_scores, binary, mask_to_box(binary)


class Mask2FormerDetector(Detector):
    """A COCO Mask2Former whose detections carry GenEval's class names and masks, and GenEval's CLIP colours."""

    name: ClassVar[str] = ""

    def __init__(self, colors: ClipColorClassifier | None) -> None:
        self.colors = colors
        self.classnames = object_names()

    @classmethod
    def class_names(cls) -> tuple[str, ...]:
        return object_names()

    def to_detections(self, labels: Any, scores: Any, boxes: Any, masks: Any) -> list[Detection]:
        """Detections from per-instance arrays (label index, score, box, HxW bool mask or None)."""
        import numpy as np

        out = []
        for i in range(len(labels)):
            mask = None if masks is None else np.asarray(masks[i], dtype=bool)
            box = tuple(float(v) for v in np.asarray(boxes[i], dtype=np.float64)[:4])
            out.append(Detection(self.classnames[int(labels[i])], float(scores[i]), box, mask))  # type: ignore[arg-type]
        return out

    def classify_colors(self, image: "Image.Image", detections: Sequence[Detection], classname: str) -> list[str]:
        if self.colors is None:
            raise RuntimeError(f"detector '{self.name}' was loaded without a colour classifier")
        return self.colors.classify(image, detections, classname)
