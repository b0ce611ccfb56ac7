"""How well mini-clip separates correct from incorrect images, per GenEval task (AUROC).

    python -m craft_bench.mini.eval_rewards [--images auto|generated|renders|judge] [--n-per-task 40] [--json out.json]

Three image sources:

judge
    The human-labelled judge set (data/mini-judge: generated images labelled by two people's passes; ambiguous
    ones left out): how mini-clip ranks the images a person calls correct against those a person calls wrong.
    ``--split`` picks dev, test, holdout or all.
generated
    Images of the mini base model (shipped weights, the model preset's default sampler, sampled through
    ``craft_bench.generate.sample``) for the GenEval-mini prompts, labelled correct/incorrect by the exact
    ``mini`` detector and the GenEval rule engine (suites/geneval.py). This is the number issue 3 asks for.
renders
    For every prompt, a render of a scene that satisfies it (correct) and a render of a scene that satisfies a
    perturbed prompt (incorrect: another shape, count +-1 within 1-4, another colour, the flipped relation,
    swapped colours), both scored against the original prompt. Needs no base model; it measures the reward
    alone, on clean images.

``auto`` uses generated images when the base weights and detector are installed, else renders. AUROC is
the Mann-Whitney probability that a correct image outscores an incorrect one (ties count half), with a
95% percentile-bootstrap interval over images; for renders also the paired accuracy (the correct render
outscores the incorrect render of the same prompt).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import time
from typing import Any, Sequence

import numpy as np

TASKS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
FLIP = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


def auroc(pos: Sequence[float], neg: Sequence[float]) -> float:
    """P(score of a random positive > score of a random negative), ties counted half; nan if a side is empty."""
    from scipy.stats import rankdata

    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    ranks = rankdata(np.concatenate([pos, neg]))
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def auroc_ci(pos: Sequence[float], neg: Sequence[float], seed: int = 0, n_boot: int = 1000) -> tuple[float, float]:
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    if len(pos) < 2 or len(neg) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    vals = [auroc(rng.choice(pos, len(pos)), rng.choice(neg, len(neg))) for _ in range(n_boot)]
    lo, hi = np.percentile(vals, [2.5, 97.5])
    return float(lo), float(hi)


def perturb(meta: dict, rng: np.random.Generator) -> dict:
    """A metadata line whose scenes make ``meta``'s prompt false (its 'prompt' field is not updated)."""
    from craft_bench.mini.prompts import COLOR_NAMES
    from craft_bench.mini.scenes import SHAPES

    m = copy.deepcopy(meta)
    inc, tag = m["include"], m["tag"]
    m.pop("exclude", None)
    if tag in ("single_object", "two_object"):
        used = {r["class"] for r in inc}
        j = int(rng.integers(len(inc)))
        inc[j]["class"] = str(rng.choice([s for s in SHAPES if s not in used]))
    elif tag == "counting":
        n = inc[0]["count"]
        inc[0]["count"] = int(rng.choice([c for c in range(1, 5) if c != n]))
    elif tag == "colors":
        inc[0]["color"] = str(rng.choice([c for c in COLOR_NAMES if c != inc[0]["color"]]))
    elif tag == "position":
        inc[1]["position"] = [FLIP[inc[1]["position"][0]], inc[1]["position"][1]]
    elif tag == "color_attr":
        inc[0]["color"], inc[1]["color"] = inc[1]["color"], inc[0]["color"]
    else:
        raise ValueError(f"unknown task '{tag}'")
    return m


def render_pairs(metas: Sequence[dict], seed: int) -> tuple[list[Any], list[str], list[str], list[int]]:
    """(images, prompts, tags, correct) with one correct and one incorrect render per metadata line."""
    from PIL import Image

    from craft_bench.mini.prompts import scene_for
    from craft_bench.mini.scenes import render

    images, prompts, tags, correct = [], [], [], []
    for i, meta in enumerate(metas):
        rng = np.random.default_rng([seed, i])
        for ok, m in ((1, meta), (0, perturb(meta, rng))):
            images.append(Image.fromarray(render(scene_for(m, rng))))
            prompts.append(meta["prompt"])
            tags.append(meta["tag"])
            correct.append(ok)
    return images, prompts, tags, correct


def _generated(
    metas: Sequence[dict], seed: int, images_per_prompt: int, device: str, model: str = "mini", steps: int | None = None
) -> tuple[list[Any], list[str], list[str], list[int]]:
    """Images of the mini base model for each line, judged by the mini detector and GenEval's rules."""
    from craft_bench.generate import ImageRequest, derive_seed, sample
    from craft_bench.mini.detector import MiniDetector
    from craft_bench.models import load_pipeline, resolve_model
    from craft_bench.suites.geneval_rules import detector_colors, evaluate_detections

    spec, sampler, path = resolve_model(model)
    if steps is not None:
        sampler = dataclasses.replace(sampler, steps=steps)
    pipe = load_pipeline(path, spec.family, device, "float32", scheduler=sampler.scheduler)
    requests = [
        ImageRequest(f"{m['tag']}-{i:04d}", m["prompt"], k, derive_seed(seed, f"{m['tag']}-{i:04d}", k), "")
        for i, m in enumerate(metas)
        for k in range(images_per_prompt)
    ]
    images: list[Any] = []
    for start in range(0, len(requests), sampler.batch_size):
        images += sample(pipe, requests[start : start + sampler.batch_size], sampler)
    detector = MiniDetector()
    color_fn = getattr(detector, "classify_colors", None) or detector_colors
    dets = detector.detect(images)
    line_of = [m for m in metas for _ in range(images_per_prompt)]
    correct = [int(evaluate_detections(d, m, im, color_fn)[0]) for d, m, im in zip(dets, line_of, images)]
    return images, [m["prompt"] for m in line_of], [m["tag"] for m in line_of], correct


def base_model_available() -> bool:
    try:
        import craft_bench.mini.detector  # noqa: F401
        import craft_bench.suites.geneval  # noqa: F401
        from craft_bench.mini.model import BASE_DIR
    except ImportError:
        return False
    return (BASE_DIR / "model_index.json").is_file()


def _judged(split: str | None, set_dir: str | None) -> tuple[list[Any], list[str], list[str], list[int]]:
    """The judge set's images with a person's label (ambiguous ones left out)."""
    from pathlib import Path

    from PIL import Image

    from craft_bench.mini.eval_judge import DEFAULT_SET, read_set

    root = Path(set_dir) if set_dir else DEFAULT_SET
    rows = [r for r in read_set(root, "labels.jsonl", split) if r["label"] is not None]
    images = [Image.open(root / "images" / f"{r['id']}.png").convert("RGB") for r in rows]
    return images, [r["prompt"] for r in rows], [r["task"] for r in rows], [int(r["label"]) for r in rows]


def evaluate(
    images: str = "auto",
    n_per_task: int = 40,
    prompt_seed: int = 1000,
    seed: int = 0,
    images_per_prompt: int = 2,
    clip_source: str | None = None,
    device: str = "cpu",
    model: str = "mini",
    steps: int | None = None,
    split: str | None = None,
    judge_set: str | None = None,
) -> dict[str, Any]:
    """Per-task AUROC of mini-clip (plus n correct / incorrect and a bootstrap CI), and their mean."""
    from craft_bench.mini.prompts import geneval_prompts
    from craft_bench.mini.rewards import MiniClip

    if images == "auto":
        images = "generated" if base_model_available() else "renders"
    metas = geneval_prompts(n_per_task, prompt_seed)
    t0 = time.perf_counter()
    if images == "generated":
        imgs, prompts, tags, correct = _generated(metas, seed, images_per_prompt, device, model, steps)
    elif images == "renders":
        imgs, prompts, tags, correct = render_pairs(metas, seed)
    elif images == "judge":
        imgs, prompts, tags, correct = _judged(split, judge_set)
    else:
        raise ValueError(f"images must be auto, generated, renders or judge, not '{images}'")
    t_images = time.perf_counter() - t0
    reward = MiniClip.load(clip_source, device=device)
    scores = reward.score(imgs, prompts).numpy()
    tags_a, correct_a = np.array(tags), np.array(correct)
    per_task: dict[str, Any] = {}
    for k, task in enumerate(TASKS):
        sel = tags_a == task
        pos, neg = scores[sel & (correct_a == 1)], scores[sel & (correct_a == 0)]
        lo, hi = auroc_ci(pos, neg, seed=k)
        per_task[task] = {
            "auroc": auroc(pos, neg),
            "ci_low": lo,
            "ci_high": hi,
            "n_correct": int(len(pos)),
            "n_incorrect": int(len(neg)),
            "mean_correct": float(pos.mean()) if len(pos) else None,
            "mean_incorrect": float(neg.mean()) if len(neg) else None,
        }
        if images == "renders":  # consecutive (correct, incorrect) renders of one prompt
            pairs = scores[sel].reshape(-1, 2)
            per_task[task]["paired_acc"] = float((pairs[:, 0] > pairs[:, 1]).mean())
    valid = [v["auroc"] for v in per_task.values() if not np.isnan(v["auroc"])]
    return {
        "images": images,
        "model": model if images == "generated" else None,
        "n_per_task": n_per_task,
        "prompt_seed": prompt_seed,
        "seed": seed,
        "images_per_prompt": images_per_prompt if images == "generated" else 2,
        "clip_scale": reward.scale,
        "per_task": per_task,
        "mean_auroc": float(np.mean(valid)) if valid else None,
        "images_s": round(t_images, 1),
    }


def pairwise_accuracy(scores: Sequence[float], labels: Sequence[int], groups: Sequence[str]) -> tuple[float, int]:
    """Within each group (one prompt's images from one model), every (correct, incorrect) pair of images: the share in
    which the reward scores the correct image higher, ties counted half; and the number of pairs."""
    by: dict[str, list[tuple[float, int]]] = {}
    for s, y, g in zip(scores, labels, groups):
        by.setdefault(g, []).append((float(s), int(y)))
    wins, n = 0.0, 0
    for rows in by.values():
        pos = [s for s, y in rows if y == 1]
        neg = [s for s, y in rows if y == 0]
        for a in pos:
            for b in neg:
                wins += 1.0 if a > b else 0.5 if a == b else 0.0
                n += 1
    return (wins / n if n else float("nan")), n


# GenAI-Bench pairwise accuracy of real rewards against human alignment judgements (Li et al. 2024, "GenAI-Bench:
# Evaluating and Improving Compositional Text-to-Visual Generation", arXiv 2406.13743, Tables 7-8), for the panel.
PUBLISHED_PAIRWISE = {"CLIPScore": 50.8, "HPSv2": 49.6, "ImageReward": 55.8, "PickScore": 56.2, "VQAScore": 64.1}


def panel(
    rewards: Sequence[str] = ("mini-clip", "mini-aes", "mini-geneval"),
    split: str | None = None,
    judge_set: str | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """The validity panel: each reward against the human labels of the judge set (data/mini-judge), per task:
    AUROC of correct vs incorrect images (95% bootstrap CI) and within-prompt pairwise accuracy."""
    from pathlib import Path

    from craft_bench.mini.eval_judge import DEFAULT_SET, read_set
    from craft_bench.rewards.composite import load_reward

    images, prompts, tags, correct = _judged(split, judge_set)
    root = Path(judge_set) if judge_set else DEFAULT_SET
    rows = [r for r in read_set(root, "labels.jsonl", split) if r["label"] is not None]
    groups = [f"{r.get('source', '')}|{r['prompt']}" for r in rows]
    tags_a, correct_a = np.array(tags), np.array(correct)
    out: dict[str, Any] = {"split": split or "all", "images": len(images), "rewards": {}}
    for name in rewards:
        scores = load_reward(name, device=device).score(images, prompts).numpy()
        per: dict[str, Any] = {}
        for k, task in enumerate([*TASKS, "all"]):
            sel = np.ones(len(tags_a), bool) if task == "all" else tags_a == task
            pos, neg = scores[sel & (correct_a == 1)], scores[sel & (correct_a == 0)]
            lo, hi = auroc_ci(pos, neg, seed=k)
            acc, pairs = pairwise_accuracy(scores[sel], correct_a[sel], [g for g, m in zip(groups, sel) if m])
            per[task] = {
                "auroc": auroc(pos, neg),
                "ci_low": lo,
                "ci_high": hi,
                "pairwise_acc": acc,
                "pairs": pairs,
                "n_correct": int(len(pos)),
                "n_incorrect": int(len(neg)),
            }
        out["rewards"][name] = per
    return out


def format_panel(result: dict[str, Any]) -> str:
    """The panel as a markdown table: rows = rewards, columns = tasks, cells = AUROC / pairwise accuracy."""
    tasks = [*TASKS, "all"]
    head = "| reward | " + " | ".join(t.replace("_", " ") for t in tasks) + " |"
    lines = [
        f"Against human labels ({result['images']} judge-set images, split {result['split']}): AUROC / "
        "pairwise accuracy "
        "(within-prompt pairs of a correct and an incorrect image)",
        "",
        head,
        "|" + "---|" * (len(tasks) + 1),
    ]
    for name, per in result["rewards"].items():
        cells = [f"{per[t]['auroc']:.3f} / {per[t]['pairwise_acc']:.3f}" for t in tasks]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    pairs = next(iter(result["rewards"].values()))
    lines.append("| pairs | " + " | ".join(str(pairs[t]["pairs"]) for t in tasks) + " |")
    return "\n".join(lines)


def format_table(result: dict[str, Any]) -> str:
    source = (
        "the human-labelled judge set"
        if result["images"] == "judge"
        else f"{result['images']}; prompt seed {result['prompt_seed']}, {result['n_per_task']} prompts per task"
    )
    lines = [
        f"mini-clip AUROC, correct vs incorrect images ({source})",
        f"{'task':<14} {'AUROC':>6}  {'95% CI':<13} {'correct':>7} {'incorrect':>9} {'paired acc':>10}",
    ]
    for task, v in result["per_task"].items():
        paired = f"{v['paired_acc']:>10.3f}" if "paired_acc" in v else f"{'-':>10}"
        lines.append(
            f"{task:<14} {v['auroc']:>6.3f}  [{v['ci_low']:.2f}, {v['ci_high']:.2f}] "
            f"{v['n_correct']:>7} {v['n_incorrect']:>9} {paired}"
        )
    mean = result["mean_auroc"]
    lines.append(f"{'mean':<14} {mean:>6.3f}" if mean is not None else f"{'mean':<14} {'n/a':>6}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m craft_bench.mini.eval_rewards", description=__doc__.splitlines()[0])
    p.add_argument("--images", default="auto", choices=("auto", "generated", "renders", "judge"))
    p.add_argument("--split", default="all", help="judge only: dev, test, holdout or all")
    p.add_argument("--judge-set", default=None, help="judge only: the judge set folder (default: data/mini-judge)")
    p.add_argument("--n-per-task", type=int, default=40)
    p.add_argument("--prompt-seed", type=int, default=1000, help="GenEval-mini prompt seed (the suite's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--images-per-prompt", type=int, default=2, help="generated images only")
    p.add_argument("--clip", default=None, help="a mini-clip weights folder (default: the shipped one)")
    p.add_argument(
        "--model", default="mini", help="generated only: base model preset or diffusers folder (default mini)"
    )
    p.add_argument("--steps", type=int, default=None, help="generated only: sampler steps (default: the model's)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default=None, help="also write the result here")
    p.add_argument(
        "--panel",
        default=None,
        metavar="REWARDS",
        help="the validity panel: these rewards (comma-separated, e.g. mini-clip,mini-aes,mini-geneval) against the "
        "judge set's human labels, AUROC and pairwise accuracy per task",
    )
    a = p.parse_args(argv)
    if a.panel:
        result = panel(
            [r.strip() for r in a.panel.split(",") if r.strip()],
            None if a.split == "all" else a.split,
            a.judge_set,
            a.device,
        )
        print(format_panel(result))
        if a.json:
            with open(a.json, "w") as fh:
                json.dump(result, fh, indent=2)
        return 0
    result = evaluate(
        a.images,
        a.n_per_task,
        a.prompt_seed,
        a.seed,
        a.images_per_prompt,
        a.clip,
        a.device,
        a.model,
        a.steps,
        None if a.split == "all" else a.split,
        a.judge_set,
    )
    print(format_table(result))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
