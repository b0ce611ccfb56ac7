"""Measure the `mini` detector: GenEval task-verdict accuracy on clean and degraded renders.

For every prompt of a mini GenEval prompt set, three scenes are rendered: one that satisfies the prompt,
a near miss (one attribute changed: class, count, colour, relation or colour binding) and a random scene.
The ground-truth verdict applies the official rules to the scene's true objects; the measured verdict
applies them to the detector's output. Accuracy = share of images where both agree.

    python -m craft_bench.mini.eval_detector [--n-per-task 100] [--seed 7] [--strengths 0.5,1,1.5] [--vae DIR]

Strength 1 means blur sigma 1 px, Gaussian noise sigma 12/255, JPEG quality 50 (``scenes.degrade``), and
a colour cast of up to 15/255 per channel on each palette colour (``scenes.color_cast``).
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np

from craft_bench.api import Detector
from craft_bench.mini.prompts import COLOR_NAMES, MAX_COUNT, TASKS, geneval_prompts, scene_for
from craft_bench.mini.scenes import DEGRADATIONS, SHAPES, Scene, color_cast, degrade, random_scene, render_batch
from craft_bench.mini.shapes import oracle_detections

OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


def near_miss(meta: dict, rng: np.random.Generator) -> dict:
    """The metadata of a scene that differs from ``meta`` in one attribute."""
    m = copy.deepcopy(meta)
    inc = m["include"]
    tag = m["tag"]
    if tag in ("single_object", "two_object"):
        i = int(rng.integers(len(inc)))
        taken = {r["class"] for r in inc}
        inc[i]["class"] = str(rng.choice([s for s in SHAPES if s not in taken]))
    elif tag == "counting":
        n = inc[0]["count"]
        inc[0]["count"] = n - 1 if n == MAX_COUNT or rng.random() < 0.5 else n + 1
    elif tag == "colors":
        inc[0]["color"] = str(rng.choice([c for c in COLOR_NAMES if c != inc[0]["color"]]))
    elif tag == "position":
        rel, target = inc[1]["position"]
        inc[1]["position"] = [OPPOSITE[rel], target]
    elif tag == "color_attr":
        inc[0]["color"], inc[1]["color"] = inc[1]["color"], inc[0]["color"]
    m.pop("exclude", None)
    return m


def build_cases(n_per_task: int, seed: int) -> tuple[list[dict], list[Scene], list[str]]:
    rng = np.random.default_rng(seed)
    metas, scenes, kinds = [], [], []
    for meta in geneval_prompts(n_per_task, seed):
        for kind in ("positive", "near_miss", "random"):
            if kind == "positive":
                scene = scene_for(meta, rng)
            elif kind == "near_miss":
                scene = scene_for(near_miss(meta, rng), rng)
            else:
                scene = random_scene(rng)
            metas.append(meta)
            scenes.append(scene)
            kinds.append(kind)
    return metas, scenes, kinds


def verdict_accuracy(detector: Detector, metas, scenes, images: np.ndarray) -> dict[str, float]:
    from craft_bench.suites.geneval_rules import evaluate_detections

    truth = [evaluate_detections(oracle_detections(s), m)[0] for s, m in zip(scenes, metas)]
    found = [evaluate_detections(d, m)[0] for d, m in zip(detector.detect(list(images)), metas)]
    per_task: dict[str, list[bool]] = {t: [] for t in TASKS}
    for m, a, b in zip(metas, truth, found):
        per_task[m["tag"]].append(a == b)
    out = {t: float(np.mean(v)) for t, v in per_task.items() if v}
    out["all"] = float(np.mean([a == b for a, b in zip(truth, found)]))
    out["truth_positive_rate"] = float(np.mean(truth))
    return out


def vae_roundtrip(images: np.ndarray, vae_dir: str, batch_size: int = 64) -> np.ndarray:
    """Images encoded and decoded by a diffusers AutoencoderKL folder: the blur and colour drift every
    generated image carries."""
    import torch
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(vae_dir, torch_dtype=torch.float32).eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            x = (
                torch.from_numpy(np.ascontiguousarray(images[i : i + batch_size])).permute(0, 3, 1, 2).float() / 127.5
                - 1.0
            )
            y = vae.decode(vae.encode(x).latent_dist.mode()).sample
            out.append(((y.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-per-task", type=int, default=100)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--strengths", default="0.5,1,1.5", help="degradation strengths, comma-separated (see scenes.degrade)"
    )
    p.add_argument("--vae", default=None, help="also measure on reconstructions through this AutoencoderKL folder")
    p.add_argument(
        "--detectors", default="mini", help="registered detectors to measure, comma-separated (e.g. mini,mini-v1)"
    )
    args = p.parse_args(argv)
    from craft_bench import registry

    metas, scenes, _ = build_cases(args.n_per_task, args.seed)
    clean = render_batch(scenes)
    print(f"{len(scenes)} images ({args.n_per_task} prompts per task x positive/near-miss/random), seed {args.seed}")
    header = f"{'detector':<9}{'condition':<12}" + "".join(f"{t:>14}" for t in TASKS) + f"{'all':>10}{'img/s':>9}"
    print(header)
    strengths = [float(v) for v in args.strengths.split(",") if v]
    conditions = [("clean", 0.0)] + [(kind, st) for kind in DEGRADATIONS + ("cast",) for st in strengths]
    if args.vae:
        conditions.append(("vae", 0.0))
    for kind, strength in conditions:
        cond = kind if kind in ("clean", "vae") else f"{kind}@{strength:g}"
        rng = np.random.default_rng(args.seed)
        if kind == "clean":
            images = clean
        elif kind == "vae":
            images = vae_roundtrip(clean, args.vae)
        elif kind == "cast":
            images = color_cast(clean, rng, strength)
        else:
            images = degrade(clean, kind, rng, strength)
        for name in args.detectors.split(","):
            detector = registry.detectors.get(name)()
            t0 = time.perf_counter()
            acc = verdict_accuracy(detector, metas, scenes, images)
            rate = len(images) / (time.perf_counter() - t0)
            print(
                f"{name:<9}{cond:<12}" + "".join(f"{acc[t]:>14.4f}" for t in TASKS) + f"{acc['all']:>10.4f}{rate:>9.0f}"
            )
    print(f"(share of images whose true verdict is 'correct': {acc['truth_positive_rate']:.3f})")


if __name__ == "__main__":
    main()
