"""``mini-geneval``: a rule reward for the mini world: the GenEval judge itself, with partial credit.

A rule reward, not a preference model. It exists for positive controls (training on the very quantity the
benchmark measures must be able to raise it, or the harness is blind) and for studying reward hacking (what a
model learns when its reward and its judge are the same rules, next to held-out judges). It reads the prompt's
metadata (a GenEval-mini prompt, or a mini training prompt: ``craft_bench.mini.prompts.metadata_for``), detects
objects with the ``mini`` detector (the judge that agrees with people, docs/geneval.md) and applies GenEval's
official rules (``craft_bench.suites.geneval``: thresholds 0.3, 0.9 for counting).

Score of an image for its prompt:

* 1 when the GenEval rules accept it;
* otherwise 0.5 x the mean over the prompt's include clauses of a clause credit in [0, 1], so every rejected image
  scores below every accepted one and the ranking among rejected images says how close they came:

  - count credit ``max(0, 1 - |n - N| / N)``, n the kept detections of the class, N the count asked for (Flow-GRPO's
    partial credit for counting, arXiv 2505.05470; applied to every clause, so a missing object earns 0 and a
    surplus one is penalised as in counting);
  - times, for a colour clause, the share of the class's top-N detections that have the colour;
  - times, for a position clause, the share of (object, target) pairs in the asked relation (0 without a target).

The detector is exact on renders and deterministic, so the reward has no learned parameters; its identity for
the reward cache is its name, the rules and the detector's configuration (``source``).
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

from craft_bench.api import Reward
from craft_bench.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from PIL import Image

FAILED_SCALE = 0.5  # a rejected image scores at most this (times its clause credit)


def clause_credits(objects: dict[str, list[Any]], metadata: dict, color_of: Any, rules: Any) -> list[float]:
    """Per include clause of ``metadata``, its credit in [0, 1] given the objects the GenEval rules kept
    (``select_objects``); ``color_of(detections, cls)`` gives the colours of detections."""
    from craft_bench.suites.geneval_rules import relative_position

    credits: list[float] = []
    groups: list[list[Any]] = []
    for req in metadata.get("include", []):
        cls, want = req["class"], int(req["count"])
        dets = objects.get(cls, [])
        n = len(dets)
        credit = max(0.0, 1.0 - abs(n - want) / want)
        top = dets[:want]
        if "color" in req and top:
            colors = list(color_of(top, cls))
            credit *= colors.count(req["color"]) / len(top)
        elif "color" in req:
            credit = 0.0
        if "position" in req:
            rel, target = req["position"]
            targets = groups[target] if target < len(groups) else []
            pairs = [(o, t) for o in top for t in targets]
            good = sum(rel in relative_position(o.box, t.box, rules.position_threshold) for o, t in pairs)
            credit *= good / len(pairs) if pairs else 0.0
        credits.append(float(credit))
        groups.append(top)
    return credits


def rule_score(correct: bool, credits: Sequence[float]) -> float:
    """The reward of one image: 1 when accepted, else FAILED_SCALE x mean clause credit."""
    if correct:
        return 1.0
    return FAILED_SCALE * (sum(credits) / len(credits) if credits else 0.0)


class MiniGenEvalReward(Reward):
    name: ClassVar[str] = "mini-geneval"
    description: ClassVar[str] = (
        "rule reward: the mini GenEval judge with partial credit (positive controls, reward-hacking "
        "studies; not a preference model)"
    )

    def __init__(self, detector: Any, rules: Any) -> None:
        self.detector, self.rules = detector, rules
        self.source = json.dumps(
            {
                "detector": detector.name,
                "config": dataclasses.asdict(detector.config),
                "rules": dataclasses.asdict(rules),
                "failed_scale": FAILED_SCALE,
            },
            sort_keys=True,
        )

    @classmethod
    def load(cls, source: str | None = None, device: str = "cpu", dtype: str | None = None) -> "MiniGenEvalReward":
        from craft_bench.mini.detector import MiniDetector
        from craft_bench.suites.geneval_rules import OFFICIAL

        if source:
            raise UserError(f"mini-geneval has no weights to load (got source '{source}'); drop the source for it")
        return cls(MiniDetector.load(device=device), OFFICIAL)

    def details(self, images: Sequence["Image.Image"], prompts: Sequence[str]) -> list[dict[str, Any]]:
        """Per image: score, verdict, the clause credits and the GenEval reason."""
        from craft_bench.mini.prompts import metadata_for
        from craft_bench.suites.geneval_rules import detector_colors, evaluate_detections

        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        metas = []
        for p in prompts:
            meta = metadata_for(p)
            if meta is None:
                raise UserError(
                    f"mini-geneval judges mini GenEval and mini training prompts only; '{p[:80]}' is not one "
                    "(use it with the mini world's prompt pool, or another reward)"
                )
            metas.append(meta)
        out = []
        for image, meta, dets in zip(images, metas, self.detector.detect(list(images))):
            correct, reason, objects = evaluate_detections(dets, meta, image, detector_colors, self.rules)
            credits = clause_credits(objects, meta, lambda d, c: [x.color for x in d], self.rules)
            out.append(
                {"score": rule_score(correct, credits), "correct": bool(correct), "credits": credits, "reason": reason}
            )
        return out

    def score(self, images: Sequence["Image.Image"], prompts: Sequence[str]) -> "torch.Tensor":
        import torch

        return torch.tensor([d["score"] for d in self.details(images, prompts)], dtype=torch.float32)
