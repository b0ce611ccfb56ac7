"""GenEval detection backend `mmdet`: the official detector, mmdetection's Mask2Former Swin-S on COCO.

As GenEval's ``evaluation/evaluate_images.py`` (``load_models``, ``evaluate_image``): config
``mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco`` (the one mmdetection ships; mmdet 3.x renamed the file
``mask2former_swin-s-p4-w7-224_8xb2-lsj-50e_coco.py``, same model and test pipeline), checkpoint
``mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco.pth`` as GenEval's ``evaluation/download_models.sh`` saves it,
``inference_detector`` on the image (BGR, as mmcv reads a file), detections per class sorted by score; then
GenEval's rules and its CLIP colour classifier (``detectors.colors``).

Install: ``pip install "craft-bench[geneval]"`` (mmengine, mmcv 2.1.0 compiled with its ops, mmdet 3.3.0;
docs/geneval.md says how mmcv builds with recent torch). GenEval itself pins mmdet 2.x; its checkpoint was
saved by mmdet 2.x, whose transformer layers name their parts ``attentions.N`` / ``ffns.0`` where mmdet 3.x's
say ``cross_attn`` / ``self_attn`` / ``ffn`` (mmdetection PR #9515 changed the modules and converted the model
zoo). ``upgrade_v2_keys`` renames them; the load is then strict, so any other difference fails in one line.
The weights are read with ``torch.load(weights_only=True)``, never by mmengine's unrestricted loader.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

from craft_bench.api import Detection
from craft_bench.detectors.colors import ClipColorClassifier
from craft_bench.detectors.mask2former import Mask2FormerDetector
from craft_bench.errors import UserError

CHECKPOINT = "mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco.pth"
CHECKPOINT_URL = (
    "https://download.openmmlab.com/mmdetection/v2.0/mask2former/mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco/"
    "mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco_20220504_001756-743b7d99.pth"
)
CONFIGS = (
    ".mim/configs/mask2former/mask2former_swin-s-p4-w7-224_8xb2-lsj-50e_coco.py",  # mmdet 3.x wheel
    ".mim/configs/mask2former/mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco.py",  # mmdet 2.x wheel
    "../configs/mask2former/mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco.py",  # a source checkout (GenEval's path)
)
ENV = "CRAFT_BENCH_GENEVAL_MMDET"
INSTALL = "pip install 'craft-bench[geneval]' (mmcv must compile: see docs/geneval.md), or use --set suite.detector=hf"

# mmdet 2.x -> 3.x parameter names of Mask2Former's two transformers (BaseTransformerLayer's attentions/ffns lists
# in operation order: the pixel decoder's encoder has (self_attn, ffn), the decoder (cross_attn, self_attn, ffn)).
_V2_RENAMES = (
    (re.compile(r"^(panoptic_head\.pixel_decoder\.encoder\.layers\.\d+\.)attentions\.0\."), r"\1self_attn."),
    (re.compile(r"^(panoptic_head\.pixel_decoder\.encoder\.layers\.\d+\.)ffns\.0\."), r"\1ffn."),
    (re.compile(r"^(panoptic_head\.transformer_decoder\.layers\.\d+\.)attentions\.0\."), r"\1cross_attn."),
    (re.compile(r"^(panoptic_head\.transformer_decoder\.layers\.\d+\.)attentions\.1\."), r"\1self_attn."),
    (re.compile(r"^(panoptic_head\.transformer_decoder\.layers\.\d+\.)ffns\.0\."), r"\1ffn."),
)


def upgrade_v2_keys(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """An mmdet 2.x Mask2Former state dict under mmdet 3.x names (3.x names pass through unchanged)."""
    out = {}
    for key, value in state_dict.items():
        for pattern, repl in _V2_RENAMES:
            key = pattern.sub(repl, key)
        out[key] = value
    return out


def _require_mmdet() -> None:
    try:
        import mmdet.apis  # noqa: F401
    except ImportError as exc:
        raise UserError(f"geneval detector (mmdet): mmdetection is not usable here ({exc}); {INSTALL}") from None


def checkpoint_path(weights: str = "") -> Path:
    """The checkpoint file: ``weights`` (file, or folder holding CHECKPOINT), else ``$CRAFT_BENCH_GENEVAL_MMDET``."""
    value = weights or os.environ.get(ENV, "")
    how = (
        f"download {CHECKPOINT} ({CHECKPOINT_URL}, as GenEval's evaluation/download_models.sh) and pass --set "
        f"suite.detector_weights=PATH or set {ENV}=PATH"
    )
    if not value:
        raise UserError(f"geneval detector (mmdet): no checkpoint given; {how}")
    path = Path(value).expanduser()
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise UserError(f"geneval detector (mmdet): checkpoint '{path}' not found; {how}")
    return path


def config_path(config: str = "") -> Path:
    """``config``, else the Mask2Former Swin-S COCO config shipped with the installed mmdet."""
    if config:
        path = Path(config).expanduser()
        if not path.is_file():
            raise UserError(
                f"geneval detector (mmdet): config '{path}' not found; pass --set suite.detector_config=FILE"
            )
        return path
    import mmdet

    base = Path(mmdet.__file__).parent
    for rel in CONFIGS:
        if (base / rel).is_file():
            return (base / rel).resolve()
    raise UserError(
        f"geneval detector (mmdet): this mmdet ({mmdet.__version__}) ships no Mask2Former Swin-S COCO config; "
        "pass --set suite.detector_config=FILE"
    )


def build_model(config: Path, device: str = "cpu") -> Any:
    """The detector from its config, randomly initialised (no backbone download), in eval mode; the test pipeline
    without its annotation loader (an image to detect in has none)."""
    from mmdet.apis import init_detector
    from mmengine.config import Config

    cfg = Config.fromfile(str(config))
    cfg.model.backbone.init_cfg = None
    pipeline = cfg.test_dataloader.dataset.pipeline
    cfg.test_dataloader.dataset.pipeline = [step for step in pipeline if step["type"] != "LoadAnnotations"]
    return init_detector(cfg, checkpoint=None, device=device, palette="coco").eval()


class MmdetMask2Former(Mask2FormerDetector):
    name: ClassVar[str] = "mmdet"
    description: ClassVar[str] = (
        "GenEval's official detector: mmdetection Mask2Former Swin-S + CLIP ViT-L-14 colours (pip install "
        "'craft-bench[geneval]')"
    )

    def __init__(self, model: Any, colors: ClipColorClassifier | None) -> None:
        super().__init__(colors)
        self.model = model

    @classmethod
    def preflight(cls, weights: str = "", config: str = "", color_weights: str = "", **_: Any) -> None:
        from craft_bench.detectors.colors import check_weights

        _require_mmdet()
        checkpoint_path(weights)
        config_path(config)
        check_weights(color_weights)

    @classmethod
    def load(
        cls, device: str = "cpu", weights: str = "", config: str = "", color_weights: str = "", **_: Any
    ) -> "MmdetMask2Former":
        from craft_bench.rewards.common import load_state_dict_file, load_strict, unwrap_state_dict

        _require_mmdet()
        ckpt = checkpoint_path(weights)
        model = build_model(config_path(config), device)
        state = upgrade_v2_keys(unwrap_state_dict(load_state_dict_file(ckpt)))
        load_strict(model, state, f"geneval detector (mmdet) ({ckpt})")
        return cls(model.to(device).eval(), ClipColorClassifier.load(color_weights or None, device))

    def detect(self, images: Sequence[Any]) -> list[list[Detection]]:
        import numpy as np
        from mmdet.apis import inference_detector

        # mmcv reads image files as BGR and the config's data preprocessor turns them to RGB (bgr_to_rgb=True).
        arrays = [np.ascontiguousarray(np.asarray(im.convert("RGB"))[:, :, ::-1]) for im in images]
        return [self.from_result(r) for r in inference_detector(self.model, arrays)]

    def from_result(self, result: Any) -> list[Detection]:
        """Detections from mmdet 3.x's ``DetDataSample`` or mmdet 2.x's
        ``(per-class [N, 5] boxes, per-class masks)``."""
        import numpy as np

        if isinstance(result, tuple):
            bbox, segm = result[0], (result[1] if len(result) > 1 else None)
            labels, scores, boxes, masks = [], [], [], []
            for k, per_class in enumerate(bbox):
                for j, row in enumerate(np.asarray(per_class).reshape(-1, 5)):
                    labels.append(k)
                    scores.append(float(row[4]))
                    boxes.append(row[:4])
                    masks.append(None if segm is None else segm[k][j])
            return self.to_detections(labels, scores, boxes, None if segm is None else masks)
        inst = result.pred_instances
        masks = inst.masks.cpu().numpy() if "masks" in inst else None
        return self.to_detections(
            inst.labels.cpu().numpy(), inst.scores.cpu().numpy(), inst.bboxes.cpu().numpy(), masks
        )
