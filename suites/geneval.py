"""GenEval: compositional alignment in six tasks, judged by an object detector with the official rules.

The rules (what makes an image correct, and the summary scores) are GenEval's official evaluator, reimplemented in
``suites/geneval_rules.py``; this module is the suite around them: prompt sets, detector backends, per-image
records, metrics, and the official image layout in the run folder.

Interop: a run folder also holds its images in the layout GenEval's generation script writes and its
evaluator reads (in the run folder's ``geneval/``: ``<NNNNN>/metadata.jsonl`` with the prompt's metadata line,
``<NNNNN>/samples/<NNNN>.png``),
so ``evaluation/evaluate_images.py RUN_FOLDER`` runs on it unchanged; ``craft-bench geneval summarize``
(``suites/geneval_official.py``) reads that evaluator's results.jsonl back into a results.json with CIs.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

from craft_bench.api import MetricDef, PromptItem, RunContext, Suite
from craft_bench.errors import UserError
from craft_bench.spec import setting
from craft_bench.store import atomic_write_text, temp_path
from craft_bench.suites.geneval_rules import (
    OFFICIAL,
    TASK_NAMES,
    TASKS,
    ColorFn,
    Rules,
    detector_colors,
    evaluate_detections,
)

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
        raise UserError(
            f"cannot read GenEval metadata '{path}': it is not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None
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
                raise UserError(
                    f"{where}, line {number}: detector '{detector}' knows no class '{clause['class']}'{hint} "
                    f"({len(classes)} classes, e.g. {', '.join(classes[:5])})"
                )


# --------------------------------------------------------------------------- the official image layout


def _link_or_copy(src: Path, dst: Path) -> None:
    tmp = temp_path(dst)
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


LAYOUT_DIR = "geneval"  # the run folder's subfolder holding GenEval's layout


def write_layout(run_dir: Path, items: Sequence[PromptItem], requests: Sequence[Any], store: Any) -> None:
    """GenEval's image-folder layout in ``run_dir / LAYOUT_DIR``, as its generation script writes it and its
    evaluator reads it: ``<NNNNN>/metadata.jsonl`` (the item's metadata line, json.dump) and
    ``<NNNNN>/samples/<NNNN>.png``, ``NNNNN`` the item's position in the run (for a full run on the official prompts,
    the line of ``evaluation_metadata.jsonl``). The PNGs are hard links to the image cache (cached images are only
    ever replaced, never modified in place), or copies where a link cannot be made (another file system)."""
    folder_of = {item.id: run_dir / LAYOUT_DIR / f"{k:05d}" for k, item in enumerate(items)}
    for item in items:
        folder = folder_of[item.id]
        (folder / "samples").mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / "metadata.jsonl", json.dumps(item.metadata))
    for rq in requests:
        _link_or_copy(store.image_path(rq.key), folder_of[rq.item_id] / "samples" / f"{rq.index:04d}.png")


# --------------------------------------------------------------------------- the suite


class GenEval(Suite):
    name = "geneval"
    version = (
        "3"  # 2: the mini detector judges generated images as a person does (data/mini-judge); 3: thin-armed crosses
    )
    description = "GenEval compositional alignment: six tasks scored by a detector with the official rules"
    headline = "overall"
    facets = {"stratum": "task"}

    @dataclass(frozen=True)
    class Config:
        images_per_prompt: int = setting(4, "images per prompt (official: 4)")
        prompts: str = setting(
            "auto", "prompt set: auto (the model's world's: mini on mini models, else official), mini, official"
        )
        n_per_task: int = setting(40, "mini prompt set: prompts per task")
        prompt_seed: int = setting(1000, "mini prompt set: prompt seed (keep apart from training prompt seeds)")
        detector: str = setting(
            "auto",
            "detection backend: auto (the model's world's: mini on mini models, else mmdet), mmdet "
            "(official), hf, or a registered detector",
        )
        detector_weights: str = setting(
            "",
            "detector weights: mmdet checkpoint file or folder / hf model folder (default: env var, else "
            "official name or hub)",
        )
        detector_config: str = setting(
            "", "mmdet config file (default: the Mask2Former Swin-S config shipped with mmdet)"
        )
        color_weights: str = setting(
            "", "OpenAI CLIP ViT-L/14 weights for colours (default: $CRAFT_BENCH_CLIP_L14, else hub)"
        )
        threshold: float = setting(OFFICIAL.threshold, "confidence a detection must exceed (official: 0.3)")
        counting_threshold: float = setting(
            OFFICIAL.counting_threshold, "confidence threshold for counting prompts (official: 0.9)"
        )
        max_objects: int = setting(OFFICIAL.max_objects, "detections kept per class (official: 16)")
        max_overlap: float = setting(OFFICIAL.max_overlap, "per-class NMS IoU threshold; 1 = off (official: 1)")
        position_threshold: float = setting(
            OFFICIAL.position_threshold, "position margin as a share of the two sizes (official: 0.1)"
        )

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
        check_lines(
            lines,
            detector.class_names(),
            f"--prompts {prompts_path}" if prompts_path else "GenEval prompts",
            detector.name,
        )
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
        write_layout(run_dir, items, requests, store)

    def close(self) -> None:
        self._detector = None
