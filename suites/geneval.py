"""GenEval: compositional alignment in six tasks, judged by an object detector with the official rules.

The rule engine reimplements the decision procedure of GenEval's official evaluator
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

Interop: a run folder also holds its images in the layout GenEval's generation script writes and its
evaluator reads (in the run folder's ``geneval/``: ``<NNNNN>/metadata.jsonl`` with the prompt's metadata line, ``<NNNNN>/samples/<NNNN>.png``),
so ``evaluation/evaluate_images.py RUN_FOLDER`` runs on it unchanged; ``craft-bench geneval summarize``
(``suites/geneval_official.py``) reads that evaluator's results.jsonl back into a results.json with CIs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from craft_bench.api import Detection, MetricDef, PromptItem, RunContext, Suite
from craft_bench.errors import UserError
from craft_bench.spec import setting

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


def normalized_offset(box_a: Sequence[float], box_b: Sequence[float], threshold: float = OFFICIAL.position_threshold) -> tuple[float, float] | None:
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


def relative_position(box_a: Sequence[float], box_b: Sequence[float], threshold: float = OFFICIAL.position_threshold) -> list[str]:
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


# --------------------------------------------------------------------------- prompt sets


GENEVAL_METADATA_SHA256 = "5c48e0813e812e3c373fa5c8ed07a8f0a483be30272b4427b0559c8048e67c13"  # at SOURCE_COMMIT


def official_metadata_path() -> Path:
    """GenEval's evaluation_metadata.jsonl, shipped in the package (commit in SOURCE_COMMIT), sha256-checked."""
    from craft_bench.store import verify_sha256

    path = Path(str(resources.files("craft_bench.suites") / "data" / "geneval" / "evaluation_metadata.jsonl"))
    verify_sha256(path, GENEVAL_METADATA_SHA256, "GenEval evaluation_metadata.jsonl", "reinstall craft-bench")
    return path


def read_metadata(path: str | Path) -> list[dict]:
    """The one reader of GenEval metadata files (official, mini, or a user's --prompts file)."""
    from craft_bench.mini.prompts import read_metadata as _read

    try:
        return _read(path)
    except UnicodeDecodeError as exc:
        raise UserError(f"cannot read GenEval metadata '{path}': it is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read GenEval metadata '{path}': {exc}") from None


def check_lines(lines: Sequence[dict], classes: Sequence[str] | None, where: str, detector: str) -> None:
    """A prompt set the suite can score: known tasks, and (when the detector names its classes) known classes."""
    for number, line in enumerate(lines, 1):
        if line["tag"] not in TASKS:
            raise UserError(f"{where}, line {number}: unknown GenEval task '{line['tag']}' (tasks: {', '.join(TASKS)})")
        if classes is None:
            continue
        for clause in list(line.get("include", [])) + list(line.get("exclude", [])):
            if clause["class"] not in classes:
                import difflib

                close = difflib.get_close_matches(clause["class"], list(classes), n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                raise UserError(f"{where}, line {number}: detector '{detector}' knows no class '{clause['class']}'{hint} "
                                f"({len(classes)} classes, e.g. {', '.join(classes[:5])})")


# --------------------------------------------------------------------------- the suite


class GenEval(Suite):
    name = "geneval"
    version = "3"  # 2: the mini detector judges generated images as a person does (data/mini-judge); 3: thin-armed crosses
    description = "GenEval compositional alignment: six tasks scored by a detector with the official rules"
    headline = "overall"
    facets = {"stratum": "task"}

    @dataclass(frozen=True)
    class Config:
        images_per_prompt: int = setting(4, "images per prompt (official: 4)")
        prompts: str = setting("auto", "prompt set: auto (the model's world's: mini on mini models, else official), mini, official")
        n_per_task: int = setting(40, "mini prompt set: prompts per task")
        prompt_seed: int = setting(1000, "mini prompt set: prompt seed (keep apart from training prompt seeds)")
        detector: str = setting("auto", "detection backend: auto (the model's world's: mini on mini models, else mmdet), mmdet (official), hf, or a registered detector")
        detector_weights: str = setting("", "detector weights: mmdet checkpoint file or folder / hf model folder (default: env var, else official name or hub)")
        detector_config: str = setting("", "mmdet config file (default: the Mask2Former Swin-S config shipped with mmdet)")
        color_weights: str = setting("", "OpenAI CLIP ViT-L/14 weights for colours (default: $CRAFT_BENCH_CLIP_L14, else hub)")
        threshold: float = setting(OFFICIAL.threshold, "confidence a detection must exceed (official: 0.3)")
        counting_threshold: float = setting(OFFICIAL.counting_threshold, "confidence threshold for counting prompts (official: 0.9)")
        max_objects: int = setting(OFFICIAL.max_objects, "detections kept per class (official: 16)")
        max_overlap: float = setting(OFFICIAL.max_overlap, "per-class NMS IoU threshold; 1 = off (official: 1)")
        position_threshold: float = setting(OFFICIAL.position_threshold, "position margin as a share of the two sizes (official: 0.1)")

        def __post_init__(self) -> None:
            if self.images_per_prompt < 1:
                raise ValueError("images_per_prompt must be >= 1")
            if self.prompts not in ("auto", "mini", "official"):
                raise ValueError("prompts must be auto, mini or official")
            if self.n_per_task < 1:
                raise ValueError("n_per_task must be >= 1")

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self._detector = None
        self._detector_name: str | None = None

    @property
    def rules(self) -> Rules:
        c = self.config
        return Rules(c.threshold, c.counting_threshold, c.max_objects, c.max_overlap, c.position_threshold)

    def metadata_lines(self, ctx: RunContext, prompts_path: Path | None = None) -> list[dict]:
        if prompts_path is not None:
            return read_metadata(prompts_path)
        which = self.config.prompts
        if which == "auto":
            which = ctx.world.prompts
        if which == "mini":
            from craft_bench.mini.prompts import geneval_prompts

            return geneval_prompts(self.config.n_per_task, self.config.prompt_seed)
        return read_metadata(official_metadata_path())

    def _detector_options(self) -> dict[str, str]:
        c = self.config
        return {"weights": c.detector_weights, "config": c.detector_config, "color_weights": c.color_weights}

    def items(self, ctx: RunContext, prompts_path: Path | None = None) -> list[PromptItem]:
        from craft_bench import registry

        # Fail before any image is generated: an unknown backend, a missing package or missing weights, a prompt the
        # detector cannot judge.
        detector = registry.detectors.get(self.detector_name(ctx))
        detector.preflight(**self._detector_options())
        lines = self.metadata_lines(ctx, prompts_path)
        check_lines(lines, detector.class_names(), f"--prompts {prompts_path}" if prompts_path else "GenEval prompts", detector.name)
        items = []
        seen: dict[str, int] = {}
        for line in lines:
            k = seen[line["tag"]] = seen.get(line["tag"], -1) + 1
            items.append(
                PromptItem(
                    id=f"{line['tag']}-{k:04d}",
                    prompt=line["prompt"],
                    n_images=self.config.images_per_prompt,
                    metadata=line,
                    stratum=line["tag"],
                )
            )
        return items

    def metrics(self) -> list[MetricDef]:
        out = [MetricDef("overall", "GenEval overall", "correct", stratify=True)]
        out += [MetricDef(t, TASK_NAMES[t], "correct", where_stratum=t) for t in TASKS]
        out.append(MetricDef("images_correct", "% correct images", "correct"))
        # summary_scores.py: groupby(prompt)['correct'].any() -> a prompt counts if ANY image is correct.
        out.append(MetricDef("prompts_correct", "% correct prompts", "correct", per_prompt="any"))
        return out

    def detector_name(self, ctx: RunContext) -> str:
        """``auto``: the world's detector (the ``mini`` detector on mini models, the official ``mmdet`` backend on real
        ones)."""
        name = self.config.detector
        return ctx.world.detector if name == "auto" else name

    def _load_detector(self, ctx: RunContext):
        from craft_bench import registry

        name = self.detector_name(ctx)
        if self._detector is None or self._detector_name != name:
            self._detector = registry.detectors.get(name).load(device=ctx.device, **self._detector_options())
            self._detector_name = name
        return self._detector

    def score(self, items: Sequence[PromptItem], images: Sequence[Any], ctx: RunContext) -> list[dict[str, Any]]:
        if len(items) != len(images):
            raise ValueError(f"{len(items)} items but {len(images)} images")
        detector = self._load_detector(ctx)
        color_fn: ColorFn = getattr(detector, "classify_colors", None) or detector_colors
        rules = self.rules
        detections = detector.detect(list(images))
        records = []
        for item, image, dets in zip(items, images, detections):
            correct, reason, objects = evaluate_detections(dets, item.metadata, image, color_fn, rules)
            records.append(
                {
                    "correct": int(correct),
                    "reason": reason,
                    "tag": item.metadata["tag"],
                    "details": json.dumps({k: [list(map(float, d.box)) for d in v] for k, v in objects.items()}),
                }
            )
        return records

    def write_run_files(self, run_dir: Path, items: Sequence[PromptItem], requests: Sequence[Any], store: Any) -> None:
        from craft_bench.suites.geneval_official import write_layout

        write_layout(run_dir, items, requests, store)

    def close(self) -> None:
        self._detector = None
