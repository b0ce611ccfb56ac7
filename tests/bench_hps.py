"""Images/s and peak memory of craft-bench's HPS scorer vs the official ``hpsv2`` scoring path.

Both score the same images with the same ViT-H-14-sized checkpoint of random weights
(``HPS_v2.1_compressed.pt`` layout), each in its own process so peak RSS is the scorer's own:

- ours: ``HPS.load`` once, then ``score`` in batches (prompts encoded once each);
- official: ``hpsv2.img_score.score(image, prompt, cp=...)`` per (image, prompt) pair -- how the package is
  called when prompts differ -- which reloads the checkpoint on every call and runs batch 1. Its
  ``initialize_model`` is pre-seeded (random ViT-H-14, no download), and that one-off build is not timed.

Run (the official side needs the venv of tools/parity/README.md):

    python tests/bench_hps.py --images 64 --official-images 16 --official-python /tmp/venv-hps/bin/python \
        --out results/bench/hps_cpu.json

Results are medians of per-call times (per image for the official path, per batch for ours); the JSON also
holds totals, load times, peak RSS, versions, commit, device and the scores' agreement on shared images.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def make_images(n: int, seed: int = 0):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        small = rng.integers(0, 256, size=(17, 17, 3), dtype=np.uint8)
        images.append(Image.fromarray(small).resize((512, 512), Image.BICUBIC))
    return images


def make_prompts(n: int) -> list[str]:
    subjects = [
        "a cat",
        "a red car",
        "an astronaut",
        "a bowl of fruit",
        "a mountain lake",
        "two dogs",
        "a city street",
        "a robot",
    ]
    styles = ["oil painting", "photo", "anime", "concept art"]
    return [
        f"{subjects[i % len(subjects)]}, {styles[(i // len(subjects)) % len(styles)]}, variant {i}" for i in range(n)
    ]


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def build_checkpoint(path: Path, arch: str, seed: int) -> dict:
    """A random ViT-H-14 HPS checkpoint ({'state_dict': ...}) in the official file layout."""
    import torch

    from craft_bench.rewards.hps import build_open_clip

    t = time.perf_counter()
    model, _ = build_open_clip(arch)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                p.normal_(0, p.shape[-1] ** -0.5, generator=g)
            elif "ln" in name or "norm" in name:
                p.fill_(1.0) if name.endswith("weight") else p.zero_()
            else:
                p.normal_(0, 0.02, generator=g)
    torch.save({"state_dict": model.state_dict()}, path)
    n = sum(p.numel() for p in model.parameters())
    return {"params": n, "file_bytes": path.stat().st_size, "build_s": time.perf_counter() - t}


def run_ours(args) -> dict:
    import torch

    from craft_bench.rewards.hps import HPS

    torch.set_num_threads(args.threads)
    images, prompts = make_images(args.images), make_prompts(args.images)
    t = time.perf_counter()
    reward = HPS.load(args.checkpoint, device="cpu", arch=args.arch, batch_size=args.batch_size)
    load_s = time.perf_counter() - t
    reward.score(images[:1], prompts[:1])  # warm-up
    per_batch, scores = [], []
    t_all = time.perf_counter()
    for start in range(0, len(images), args.batch_size):
        t = time.perf_counter()
        scores += reward.score(
            images[start : start + args.batch_size], prompts[start : start + args.batch_size]
        ).tolist()
        per_batch.append((time.perf_counter() - t) / len(images[start : start + args.batch_size]))
    total = time.perf_counter() - t_all
    return {
        "scorer": "craft-bench",
        "images": len(images),
        "batch_size": args.batch_size,
        "load_s": load_s,
        "score_total_s": total,
        "median_s_per_image": statistics.median(per_batch),
        "images_per_s": 1.0 / statistics.median(per_batch),
        "peak_rss_gib": peak_rss_gib(),
        "scores": scores,
    }


def run_official(args) -> dict:
    import hpsv2.img_score as official
    import torch
    from hpsv2.src.open_clip import create_model_and_transforms

    torch.set_num_threads(args.threads)
    n = args.official_images
    images, prompts = make_images(args.images)[:n], make_prompts(args.images)[:n]
    t = time.perf_counter()
    model, _, preprocess_val = create_model_and_transforms(
        args.arch,
        None,
        precision="amp",
        device="cpu",
        jit=False,
        force_quick_gelu=False,
        force_custom_text=False,
        force_patch_dropout=False,
        force_image_size=None,
        pretrained_image=False,
        image_mean=None,
        image_std=None,
        light_augmentation=True,
        aug_cfg={},
        output_dict=True,
        with_score_predictor=False,
        with_region_predictor=False,
    )
    official.model_dict["model"], official.model_dict["preprocess_val"] = model, preprocess_val
    init_s = time.perf_counter() - t
    per_call, scores = [], []
    t_all = time.perf_counter()
    for image, prompt in zip(images, prompts):
        t = time.perf_counter()
        scores.append(float(official.score(image, prompt, cp=args.checkpoint, hps_version="v2.1")[0]))
        per_call.append(time.perf_counter() - t)
    total = time.perf_counter() - t_all
    return {
        "scorer": "hpsv2.img_score.score",
        "images": n,
        "batch_size": 1,
        "load_s": init_s,
        "score_total_s": total,
        "median_s_per_image": statistics.median(per_call),
        "images_per_s": 1.0 / statistics.median(per_call),
        "peak_rss_gib": peak_rss_gib(),
        "scores": scores,
    }


def child(which: str, args, python: str) -> dict:
    cmd = [
        python,
        str(Path(__file__).resolve()),
        f"--run-{which}",
        "--checkpoint",
        args.checkpoint,
        "--arch",
        args.arch,
        "--images",
        str(args.images),
        "--official-images",
        str(args.official_images),
        "--batch-size",
        str(args.batch_size),
        "--threads",
        str(args.threads),
    ]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"{which} run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=64)
    p.add_argument(
        "--official-images",
        type=int,
        default=64,
        help="images scored by the official path (its per-image cost is constant)",
    )
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--arch", default="ViT-H-14")
    p.add_argument("--checkpoint", default=None, help="reuse a random checkpoint written by an earlier run")
    p.add_argument("--official-python", default="/tmp/venv-hps/bin/python")
    p.add_argument("--out", type=Path, default=REPO / "results" / "bench" / "hps_cpu.json")
    p.add_argument("--run-ours", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--run-official", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.run_ours or args.run_official:
        print(json.dumps(run_ours(args) if args.run_ours else run_official(args)))
        return

    info = {}
    tmp = None
    if args.checkpoint is None:
        tmp = tempfile.TemporaryDirectory()
        args.checkpoint = str(Path(tmp.name) / "HPS_v2.1_compressed.pt")
        info = build_checkpoint(Path(args.checkpoint), args.arch, seed=0)
    ours = child("ours", args, sys.executable)
    official = child("official", args, args.official_python)
    shared = min(len(ours["scores"]), len(official["scores"]))
    diff = max(abs(a - b) for a, b in zip(ours["scores"][:shared], official["scores"][:shared]))
    import torch

    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    result = {
        "benchmark": "hps images/s, craft-bench vs official hpsv2",
        "arch": args.arch,
        "checkpoint": info,
        "device": "cpu",
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
        "torch": torch.__version__,
        "commit": commit,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "ours": {k: v for k, v in ours.items() if k != "scores"},
        "official": {k: v for k, v in official.items() if k != "scores"},
        "speedup_images_per_s": ours["images_per_s"] / official["images_per_s"],
        "max_abs_score_diff_on_shared_images": diff,
        "shared_images": shared,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
