"""Load time, seconds per image and peak memory of every craft-bench reward scorer, on full-size random weights.

For each reward a FULL-SIZE architecture with seeded random weights is written under a temporary folder (default
under /tmp, deleted at the end) in the file format and layout the real weights come in, built by the project's
own builders:

- hps: open_clip ViT-H-14 as ``HPS_v2.1_compressed.pt`` ({'state_dict': ...}; ``tests/bench_hps.py``);
- pickscore: transformers ``CLIPModel`` with ViT-H-14 shapes + a ``CLIPProcessor`` (full CLIP BPE rebuilt
  offline from open_clip's merges) in one folder (``tests/tiny_rewards.build_pickscore(size="full")``);
- aes: the MLP ``sac+logos+ava1-l14-linearMSE.pth`` + an OpenAI-layout CLIP ViT-L/14 state dict
  (``build_aes(size="full")``); clip: the same CLIP file;
- imagereward: ``ImageReward.pt`` (BLIP ViT-L/16 + bert-base with cross-attention + MLP) + ``med_config.json``
  (``build_imagereward(size="full")``; the word-piece vocabulary is the small test one, which changes no cost).

Each scorer then runs in its own child process (so ``ru_maxrss`` is that scorer's peak), loads through
``craft_bench.rewards.composite.load_reward`` -- the real loading path -- and scores N images in batches;
a last child loads all five with ``CompositeScorer.load`` and scores the same images. Children inherit
the parent's niceness and thread settings; free memory is checked before each one.

    OMP_NUM_THREADS=1 nice -n 19 python tests/bench_rewards.py --images 8 --batch-size 8 --threads 1 \\
        --out docs/bench/rewards_cpu.json

Reported per scorer: load seconds, median seconds per image (over batches, after a one-image warm-up that
is not timed), images/s, peak RSS after loading and at the end (GiB), threads. Peak RSS is the child's
``getrusage(RUSAGE_SELF).ru_maxrss`` (checkpoints are built in other children, so the parent stays small: on
Linux ru_maxrss carries the parent's RSS at fork over exec) and, as a cross-check, its ``VmHWM``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Run as a script (python tests/bench_rewards.py), so its folder -- with bench_hps and tiny_rewards -- is on sys.path.
from bench_hps import build_checkpoint as build_hps_checkpoint
from bench_hps import make_images, make_prompts, peak_rss_gib

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

REWARDS = ("hps", "pickscore", "aes", "imagereward", "clip")
GIB = 2**30


def mem_available_gib() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def vm_hwm_gib() -> float:
    """This process's own resident high-water mark (``VmHWM``; unlike ``ru_maxrss`` it starts afresh at exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def folder_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# ---------------------------------------------------------------------------------------------- building


def build(name: str, root: Path, seed: int, size: str = "full") -> dict:
    """Write reward ``name``'s random checkpoint under ``root`` (``size="tiny"``: the test models, a smoke
    test of this script); returns its source, loading options and info."""
    import tiny_rewards as T

    t = time.perf_counter()
    if name == "hps" and size == "tiny":
        arch = T.build_hps(root / "hps", seed=seed)
        path = root / "hps" / "HPS_v2.1_compressed.pt"
        info = {"params": None}
        out = {"source": str(path), "options": {"arch": str(arch)}, "files": [path]}
    elif name == "hps":
        path = root / "hps" / "HPS_v2.1_compressed.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        info = build_hps_checkpoint(path, "ViT-H-14", seed)
        out = {"source": str(path), "options": {"arch": "ViT-H-14"}, "files": [path]}
    elif name == "pickscore":
        folder = T.build_pickscore(root / "pickscore", seed=seed + 3, size=size)
        out = {"source": str(folder), "options": {}, "files": [folder]}
    elif name == "aes":  # also writes the CLIP ViT-L/14 that clip score uses
        mlp, clip = T.build_aes(root / "aes", seed=seed + 2, size=size)
        out = {"source": str(mlp), "options": {"clip_source": str(clip)}, "files": [mlp, clip]}
    elif name == "clip":
        clip = root / "aes" / "ViT-L-14.pt"
        if not clip.is_file():
            T.build_aes(root / "aes", seed=seed + 2, size=size)
        out = {"source": str(clip), "options": {}, "files": [clip]}
    elif name == "imagereward":
        folder = T.build_imagereward(root / "imagereward", seed=seed + 4, size=size)
        out = {"source": str(folder), "options": {}, "files": [folder / "ImageReward.pt", folder / "med_config.json"]}
    else:
        raise ValueError(name)
    gc.collect()
    out["info"] = {
        "file_bytes": sum(folder_bytes(Path(f)) for f in out.pop("files")),
        "build_s": time.perf_counter() - t,
    }
    if name == "hps":
        out["info"]["params"] = info["params"]
    return out


def build_in_child(name: str, root: Path, seed: int, size: str) -> dict:
    """``build`` in its own process, so this (parent) process never holds weights: on Linux a child's
    ``ru_maxrss`` starts at its parent's RSS at fork time. Reuses a build recorded in ``root`` by an earlier run."""
    record = root / f"{name}.{size}.{seed}.json"
    if record.is_file():
        return json.loads(record.read_text())
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--build-child", json.dumps([name, str(root), seed, size])]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"building {name} failed:\n{out.stderr[-3000:]}")
    record.write_text(out.stdout.strip().splitlines()[-1])
    return json.loads(record.read_text())


# ---------------------------------------------------------------------------------------------- children


def timed_batches(score, images, prompts, batch_size: int) -> tuple[list[float], float]:
    per_image, t_all = [], time.perf_counter()
    for start in range(0, len(images), batch_size):
        part_i, part_p = images[start : start + batch_size], prompts[start : start + batch_size]
        t = time.perf_counter()
        score(part_i, part_p)
        per_image.append((time.perf_counter() - t) / len(part_i))
    return per_image, time.perf_counter() - t_all


def run_child(spec: dict) -> dict:
    import torch

    torch.set_num_threads(spec["threads"])
    images, prompts = make_images(spec["images"]), make_prompts(spec["images"])
    rss_start, hwm_start = peak_rss_gib(), vm_hwm_gib()
    t = time.perf_counter()
    if spec["reward"] == "composite":
        from craft_bench.rewards.composite import CompositeScorer

        scorer = CompositeScorer.load(
            list(spec["sources"]),
            sources=spec["sources"],
            device="cpu",
            options=spec["options"],
            batch_size=spec["batch_size"],
        )

        def score(ims, ps):
            return scorer.score(ims, ps)
    else:
        from craft_bench.rewards.composite import load_reward

        reward = load_reward(
            spec["reward"], spec["source"], device="cpu", batch_size=spec["batch_size"], **spec["options"]
        )

        def score(ims, ps):
            return reward.score(ims, ps)

    load_s = time.perf_counter() - t
    rss_loaded, hwm_loaded = peak_rss_gib(), vm_hwm_gib()
    for _ in range(spec["warmup"]):
        score(images[:1], prompts[:1])
    if spec["reward"] == "composite":
        scorer.timings.clear()
    per_image, total = timed_batches(score, images, prompts, spec["batch_size"])
    med = statistics.median(per_image)
    out = {
        "reward": spec["reward"],
        "images": len(images),
        "batch_size": spec["batch_size"],
        "threads": torch.get_num_threads(),
        "load_s": load_s,
        "score_total_s": total,
        "median_s_per_image": med,
        "images_per_s": 1.0 / med,
        "peak_rss_gib_after_load": rss_loaded,
        "peak_rss_gib": peak_rss_gib(),
        "peak_rss_gib_before_load": rss_start,
        "vm_hwm_gib_before_load": hwm_start,
        "vm_hwm_gib_after_load": hwm_loaded,
        "vm_hwm_gib": vm_hwm_gib(),
    }
    if spec["reward"] == "composite":
        out["seconds_per_image_by_part"] = {k: v / len(images) for k, v in scorer.timings.items()}
    return out


def child(spec: dict, python: str) -> dict:
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO),
        OMP_NUM_THREADS=str(spec["threads"]),
        MKL_NUM_THREADS=str(spec["threads"]),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    cmd = [python, str(Path(__file__).resolve()), "--run-child", json.dumps(spec)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        return {"reward": spec["reward"], "error": f"exit {out.returncode}: {out.stderr.strip()[-2000:]}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def wait_for_memory(need_gib: float, wait_s: float) -> float:
    """MemAvailable once it reaches ``need_gib`` (checked every 10 s for up to ``wait_s``), else the last value."""
    deadline = time.monotonic() + wait_s
    while True:
        free = mem_available_gib()
        if free >= need_gib or time.monotonic() >= deadline:
            return free
        print(f"  waiting for memory: {free:.1f} GiB available, need {need_gib:.1f}", file=sys.stderr, flush=True)
        time.sleep(10)


# ---------------------------------------------------------------------------------------------- main


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rewards", default=",".join(REWARDS), help="comma-separated subset of " + ",".join(REWARDS))
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--warmup", type=int, default=1, help="untimed one-image calls after loading")
    p.add_argument("--no-composite", action="store_true", help="skip the all-rewards CompositeScorer run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--size", choices=("full", "tiny"), default="full", help="tiny: the test models (a smoke test of this script)"
    )
    p.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where the random checkpoints go (default: a temp dir in /tmp, deleted)",
    )
    p.add_argument(
        "--keep", action="store_true", help="keep the checkpoints (with --workdir, to rerun without rebuilding)"
    )
    p.add_argument(
        "--headroom-gib", type=float, default=2.0, help="free memory wanted beyond the checkpoints' size before a child"
    )
    p.add_argument("--memory-wait-s", type=float, default=300.0)
    p.add_argument("--out", type=Path, default=REPO / "docs" / "bench" / "rewards_cpu.json")
    p.add_argument("--run-child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--build-child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.run_child is not None:
        print(json.dumps(run_child(json.loads(args.run_child))))
        return
    if args.build_child is not None:
        import torch

        torch.set_num_threads(args.threads)
        name, root, seed, size = json.loads(args.build_child)
        print(json.dumps(build(name, Path(root), seed, size)))
        return

    # torch is imported only after the children ran (see build_in_child)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    names = [n.strip() for n in args.rewards.split(",") if n.strip()]
    unknown = set(names) - set(REWARDS)
    if unknown:
        raise SystemExit(f"unknown rewards: {sorted(unknown)}")
    root = args.workdir or Path(tempfile.mkdtemp(prefix="craft-bench-rewards-", dir="/tmp"))
    root.mkdir(parents=True, exist_ok=True)
    built: dict[str, dict] = {}
    results: dict[str, dict] = {}
    common = {"images": args.images, "batch_size": args.batch_size, "threads": args.threads, "warmup": args.warmup}
    try:
        for name in names:
            print(f"[{time.strftime('%H:%M:%S')}] build {name}", file=sys.stderr, flush=True)
            built[name] = build_in_child(name, root, args.seed, args.size)
            need = built[name]["info"]["file_bytes"] / GIB + args.headroom_gib
            free = wait_for_memory(need, args.memory_wait_s)
            print(f"[{time.strftime('%H:%M:%S')}] run {name} ({free:.1f} GiB available)", file=sys.stderr, flush=True)
            if free < need:
                results[name] = {"reward": name, "skipped": f"{free:.1f} GiB available < {need:.1f} needed"}
                continue
            res = child(
                {"reward": name, "source": built[name]["source"], "options": built[name]["options"], **common},
                sys.executable,
            )
            res["mem_available_gib_before"] = free
            results[name] = res
            print(json.dumps(res), file=sys.stderr, flush=True)
        if not args.no_composite and len(names) > 1:
            ok = [n for n in names if "error" not in results[n] and "skipped" not in results[n]]
            need = sum(built[n]["info"]["file_bytes"] for n in ok) / GIB + args.headroom_gib
            free = wait_for_memory(need, args.memory_wait_s)
            print(
                f"[{time.strftime('%H:%M:%S')}] run composite {ok} ({free:.1f} GiB available)",
                file=sys.stderr,
                flush=True,
            )
            if free < need:
                results["composite"] = {
                    "reward": "composite",
                    "skipped": f"{free:.1f} GiB available < {need:.1f} needed",
                }
            else:
                res = child(
                    {
                        "reward": "composite",
                        "sources": {n: built[n]["source"] for n in ok},
                        "options": {n: built[n]["options"] for n in ok},
                        **common,
                    },
                    sys.executable,
                )
                res["rewards"], res["mem_available_gib_before"] = ok, free
                results["composite"] = res
                print(json.dumps(res), file=sys.stderr, flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    import open_clip
    import torch
    import transformers

    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    result = {
        "benchmark": "craft-bench reward scorers: load time, s/image, peak RSS (full-size random weights, one process "
        "each)",
        "device": "cpu",
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
        "nice": os.nice(0),
        "size": args.size,
        "images": args.images,
        "image_size": [512, 512],
        "batch_size": args.batch_size,
        "warmup_images": args.warmup,
        "dtype": "float32 (default on CPU)",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "open_clip": open_clip.__version__,
        "commit": commit,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "checkpoints": {n: b["info"] for n, b in built.items()},
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
