"""GenEval's rule engine: the official evaluator's decision procedure, on detections (no models, no suite).

It reimplements the decision procedure of GenEval's official evaluator
(djghosh13/geneval, evaluation/evaluate_images.py, functions ``evaluate_image``, ``evaluate`` and
``relative_position``; summary in evaluation/summary_scores.py). Facts taken from it:

* detections of a class are sorted by confidence (``np.argsort(score)[::-1]``), kept when
  ``score > 0.3`` (``> 0.9`` for "counting" prompts), at most 16 per class (``max_objects``), then an
  optional per-class NMS (``max_overlap``, 1.0 = off by default) with an IoU using the +1-pixel convention;
* include clauses are ANDed; each uses the class's top-``count`` detections; a colour clause needs at least
  ``count`` of those classified as the colour; a position clause is checked only if the clause matched so
  far, against every object of the referenced earlier group (which must have matched), with the
  relation from ``relative_position``: offset of box centres, each axis shrunk by
  0.1 x (size A + size B) towards 0, divided by the norm of the raw offset, relations for components
  beyond +-0.5 (image y grows downwards, so "above" is dy < -0.5);
* exclude clauses fail when the class has ``>= count`` kept detections;
* per task: mean correctness of images; overall: mean of the task means; "% correct images" is the
  mean over images, "% correct prompts" the share of prompts with ANY correct image.

Colours: the official evaluator classifies each kept object's masked crop (on a #999 background) with
CLIP ViT-L-14 zero-shot. Here a detector may supply ``Detection.color`` (the ``mini`` detector does);
a backend that wants the official route implements ``classify_colors(image, detections, classname)``,
which ``GenEval.score`` prefers when present (the `mmdet` and `hf` backends, ``craft_bench.detectors``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from craft_bench.api import Detection

COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")
TASKS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
TASK_NAMES = {
    "single_object": "single object",
    "two_object": "two object",
    "counting": "counting",
    "colors": "colors",
    "position": "position",
    "color_attr": "color attribution",
}

ColorFn = Callable[[Any, Sequence[Detection], str], Sequence["str | None"]]


@dataclass(frozen=True)
class Rules:
    """The official evaluator's options (``--options`` keys in evaluate_images.py), with its defaults."""

    threshold: float = 0.3
    counting_threshold: float = 0.9
    max_objects: int = 16
    max_overlap: float = 1.0
    position_threshold: float = 0.1


OFFICIAL = Rules()


# --------------------------------------------------------------------------- geometry


def compute_iou(box_a: Sequence[float], box_b: Sequence[float]) -> float:
    """IoU with the +1-pixel area convention of the official evaluator (used by its optional NMS)."""

    def area(b: Sequence[float]) -> float:
        return max(b[2] - b[0] + 1, 0) * max(b[3] - b[1] + 1, 0)

    inter = area((max(box_a[0], box_b[0]), max(box_a[1], box_b[1]), min(box_a[2], box_b[2]), min(box_a[3], box_b[3])))
    union = area(box_a) + area(box_b) - inter
    return inter / union if union else 0.0


def normalized_offset(
    box_a: Sequence[float], box_b: Sequence[float], threshold: float = OFFICIAL.position_threshold
) -> tuple[float, float] | None:
    """Size-corrected offset of A's centre from B's, over the raw offset's length; None if negligible."""
    a = np.asarray(box_a[:4], dtype=np.float64)
    b = np.asarray(box_b[:4], dtype=np.float64)
    offset = (a[:2] + a[2:]) / 2 - (b[:2] + b[2:]) / 2
    dims = np.abs(a[2:] - a[:2]) + np.abs(b[2:] - b[:2])
    revised = np.maximum(np.abs(offset) - threshold * dims, 0) * np.sign(offset)
    if np.all(np.abs(revised) < 1e-3):
        return None
    dx, dy = revised / np.linalg.norm(offset)
    return float(dx), float(dy)


def relative_position(
    box_a: Sequence[float], box_b: Sequence[float], threshold: float = OFFICIAL.position_threshold
) -> list[str]:
    """Relations of A to B ("left of", "right of", "above", "below"), in that order."""
    off = normalized_offset(box_a, box_b, threshold)
    if off is None:
        return []
    dx, dy = off
    rels = []
    if dx < -0.5:
        rels.append("left of")
    if dx > 0.5:
        rels.append("right of")
    if dy < -0.5:
        rels.append("above")
    if dy > 0.5:
        rels.append("below")
    return rels


# --------------------------------------------------------------------------- the rules


def select_objects(detections: Sequence[Detection], tag: str, rules: Rules = OFFICIAL) -> dict[str, list[Detection]]:
    """Per class, the detections the rules look at: thresholded, sorted by confidence, capped, NMS'd."""
    threshold = rules.counting_threshold if tag == "counting" else rules.threshold
    by_class: dict[str, list[Detection]] = {}
    for det in detections:
        by_class.setdefault(det.label, []).append(det)
    selected: dict[str, list[Detection]] = {}
    for label, dets in by_class.items():
        scores = np.array([d.score for d in dets], dtype=np.float64)
        order = np.argsort(scores)[::-1]  # the official ordering, ties included
        order = order[scores[order] > threshold][: rules.max_objects].tolist()
        kept: list[Detection] = []
        while order:
            best = order.pop(0)
            kept.append(dets[best])
            if rules.max_overlap != 1:
                order = [o for o in order if compute_iou(dets[best].box, dets[o].box) < rules.max_overlap]
        if kept:
            selected[label] = kept
    return selected


def detector_colors(image: Any, detections: Sequence[Detection], classname: str) -> list[str | None]:
    """Colours as the detector reported them (the default colour source)."""
    return [d.color for d in detections]


def evaluate(
    objects: dict[str, list[Detection]],
    metadata: dict,
    image: Any = None,
    color_fn: ColorFn = detector_colors,
    rules: Rules = OFFICIAL,
) -> tuple[bool, str]:
    """The verdict and reason for one image, given the selected objects (``select_objects``)."""
    correct = True
    reasons: list[str] = []
    groups: list[list[Detection] | None] = []
    for req in metadata.get("include", []):
        cls, count = req["class"], req["count"]
        matched = True
        found = objects.get(cls, [])[:count]
        if len(found) < count:
            correct = matched = False
            reasons.append(f"expected {cls}>={count}, found {len(found)}")
        else:
            if "color" in req:
                colors = list(color_fn(image, found, cls))
                hits = colors.count(req["color"])
                if hits < count:
                    correct = matched = False
                    seen = ", ".join(f"{colors.count(c)} {c}" for c in COLORS if c in colors)
                    reasons.append(f"expected {req['color']} {cls}>={count}, found {hits} {req['color']}; and {seen}")
            if "position" in req and matched:
                rel, target = req["position"]
                if groups[target] is None:
                    correct = matched = False
                    reasons.append(f"no target for {cls} to be {rel}")
                else:
                    for obj in found:
                        for tgt in groups[target]:
                            true_rels = relative_position(obj.box, tgt.box, rules.position_threshold)
                            if rel not in true_rels:
                                correct = matched = False
                                reasons.append(f"expected {cls} {rel} target, found {' and '.join(true_rels)} target")
                                break
                        if not matched:
                            break
        groups.append(found if matched else None)
    for req in metadata.get("exclude", []):
        cls, count = req["class"], req["count"]
        if len(objects.get(cls, [])) >= count:
            correct = False
            reasons.append(f"expected {cls}<{count}, found {len(objects[cls])}")
    return correct, "\n".join(reasons)


def evaluate_detections(
    detections: Sequence[Detection],
    metadata: dict,
    image: Any = None,
    color_fn: ColorFn = detector_colors,
    rules: Rules = OFFICIAL,
) -> tuple[bool, str, dict[str, list[Detection]]]:
    """Select, then evaluate: (correct, reason, the objects the rules looked at)."""
    objects = select_objects(detections, metadata["tag"], rules)
    correct, reason = evaluate(objects, metadata, image, color_fn, rules)
    return correct, reason, objects


def summarize(records: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Point estimates as summary_scores.py prints them: per-task means, overall (mean of task means),
    images_correct, prompts_correct (share of prompts with any correct image; prompts keyed by
    ``item_id`` when present, else by their metadata)."""
    by_task: dict[str, list[float]] = {}
    by_prompt: dict[str, bool] = {}
    for r in records:
        by_task.setdefault(r["tag"], []).append(float(r["correct"]))
        key = str(r.get("item_id") or json.dumps(r.get("metadata"), sort_keys=True))
        by_prompt[key] = by_prompt.get(key, False) or bool(r["correct"])
    out = {tag: float(np.mean(v)) for tag, v in by_task.items()}
    out["overall"] = float(np.mean(list(out.values()))) if out else float("nan")
    out["images_correct"] = float(np.mean([float(r["correct"]) for r in records])) if records else float("nan")
    out["prompts_correct"] = float(np.mean(list(by_prompt.values()))) if by_prompt else float("nan")
    return out
