"""SIGKILL at random moments of a CRAFT run (candidate generation, reward scoring, training, evaluation generation,
evaluation scoring): after every kill the cache and run folder hold no corrupted or partial file, the rerun
completes, and the final results, images and trained weights equal those of a run that was never interrupted.

The trials are chained on one results root (each kill leaves work for the next), their moments drawn from a seeded
generator; each trial waits for its phase to begin (a file or a log line of the child) and kills at a random delay
after it. Children are forked from this process (which has torch and diffusers imported), so a trial costs its
work, not an interpreter start.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

POOL_IMAGES = 16  # 4 prompts + 4 template expansions, k = 2
EVAL_IMAGES = 12  # 6 prompts x 2
TRIALS = [
    ("pool-generate", 0.0, 0.3),
    ("pool-generate", 0.0, 0.3),
    ("pool-score", 0.0, 0.6),
    ("train", 0.0, 1.5),
    ("train", 0.0, 1.5),
    ("train", 0.0, 1.5),
    ("train", 0.0, 1.5),
    ("eval-generate", 0.0, 0.3),
    ("eval-generate", 0.0, 0.3),
    ("score", 0.0, 1.0),
    ("score", 0.0, 1.0),
]
VOLATILE_RESULTS = ("timing", "created", "generation", "versions")
VOLATILE_TRAIN = (
    "train_s",
    "timing",
    "data_s",
    "step_s",
    "peak_memory_bytes",
    "cache",
    "pool_cost",
)  # seconds and cache hits


def craft_args(model: Path, pool: Path, out: Path) -> list[str]:
    return [
        "run",
        "--method",
        "craft",
        "--suite",
        "toy",
        "--model",
        str(model),
        "--out",
        str(out),
        "--set",
        f"method.pool={pool}",
        "--set",
        "method.pool_size=4",
        "--set",
        "method.k=2",
        "--set",
        "method.rewards=mini-clip,mini-aes",
        "--set",
        "method.filter=none",
        "--set",
        "method.budget=8",
        "--set",
        "method.steps=24",
        "--set",
        "method.batch_size=4",
        "--set",
        "method.lora_rank=4",
        "--set",
        "method.lr=1e-3",
        "--set",
        "method.ckpt_every=3",
        "--set",
        "sampler.steps=4",
        "--set",
        "sampler.batch_size=4",
        "--set",
        "suite.n_prompts=6",
        "--set",
        "suite.delay_s=0.25",
        "--no-progress",
    ]


def _child(args: list[str], log: str) -> None:
    import sys

    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 2)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    # pytest's capture replaced sys.stderr with its own file; the child's log lines must reach fd 2 (the log)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    from craft_bench.cli import main

    os._exit(main(args))


def _pngs(out: Path) -> int:
    return len(list((out / "images").glob("*/*.png")))


def _train_steps(out: Path) -> int:
    """Steps the (unfinished) training has logged."""
    return sum(len(p.read_text().splitlines()) for p in out.glob("checkpoints/*.work/train_log.jsonl"))


def _progress(out: Path) -> tuple[int, int]:
    return _pngs(out), _train_steps(out)


def _phase_started(phase: str, out: Path, log: Path, start: tuple[int, int]) -> bool:
    """Whether the child has begun the work of ``phase`` (made progress beyond what earlier trials left)."""
    text = log.read_text() if log.exists() else ""
    pngs, steps = _progress(out)
    if phase == "pool-generate":
        return pngs > start[0]
    if phase == "pool-score":
        return pngs >= POOL_IMAGES and "train craft:" not in text
    if phase == "train":
        return "train craft:" in text and steps > start[1]
    if phase == "eval-generate":
        return "run craft x toy" in text and pngs > max(start[0], POOL_IMAGES)
    return "run craft x toy" in text and pngs >= POOL_IMAGES + EVAL_IMAGES  # score: every image exists


def check_integrity(out: Path) -> dict[str, int]:
    """Every visible file of the results root is whole: PNGs decode, safetensors open, JSON parses, JSON lines parse
    (an append-only partial file may end in a cut line, which its reader drops). Temp files are hidden and named
    by their writer's pid; they are counted, and removed by the next run."""
    from PIL import Image
    from safetensors import safe_open

    seen = {"png": 0, "safetensors": 0, "json": 0, "tmp": 0}
    for p in out.rglob("*"):
        if not p.is_file() or "locks" in p.parts:
            continue
        if p.name.endswith(".tmp") or any(part.endswith(".tmp") for part in p.parts):
            seen["tmp"] += 1
            continue
        if p.suffix == ".png":
            with Image.open(p) as im:
                im.load()
            seen["png"] += 1
        elif p.suffix == ".safetensors":
            with safe_open(str(p), "pt") as f:
                for k in f.keys():
                    f.get_tensor(k)
            seen["safetensors"] += 1
        elif p.suffix == ".json":
            json.loads(p.read_text())
            seen["json"] += 1
        elif p.suffix == ".jsonl":
            lines = p.read_text().split("\n")
            for line in lines[:-1]:
                json.loads(line)
    return seen


def _strip(res: dict) -> dict:
    res = {k: v for k, v in res.items() if k not in VOLATILE_RESULTS}
    res["train"] = {k: v for k, v in res["train"].items() if k not in VOLATILE_TRAIN}
    return res


def test_sigkill_at_random_moments_loses_nothing(cli, tiny_sdxl, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from craft_bench import runner

    monkeypatch.setattr(
        runner, "SCORE_CHUNK", 4
    )  # scored records reach the partial file every 4 images (children inherit it)
    pool = tmp_path / "pool.txt"
    pool.write_text("a red apple\na blue lake\na green forest\na white cloud\n")
    ref_out, out = tmp_path / "ref", tmp_path / "killed"
    reference = json.loads(cli(*craft_args(tiny_sdxl, pool, ref_out), "--json").stdout)

    rng = random.Random(14)
    ctx = multiprocessing.get_context("fork")
    record = []
    for n, (phase, low, high) in enumerate(TRIALS):
        log = tmp_path / f"trial{n}.log"
        start = _progress(out)
        child = ctx.Process(target=_child, args=(craft_args(tiny_sdxl, pool, out), str(log)))
        child.start()
        deadline = time.monotonic() + 120
        while not _phase_started(phase, out, log, start):
            assert child.is_alive(), f"trial {n} ({phase}): the run ended before the phase began:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"trial {n} ({phase}) never began:\n{log.read_text()}"
            time.sleep(0.02)
        delay = rng.uniform(low, high)
        time.sleep(delay)
        alive = child.is_alive()
        if alive:
            os.kill(child.pid, signal.SIGKILL)
        child.join()
        assert alive and child.exitcode == -signal.SIGKILL, (
            f"trial {n} ({phase}) finished before the kill:\n{log.read_text()}"
        )
        assert not list(out.glob("runs/*/*/results.json"))
        record.append((phase, round(delay, 3), *_progress(out), check_integrity(out)))

    final = json.loads(cli(*craft_args(tiny_sdxl, pool, out), "--json").stdout)
    leftovers = check_integrity(out)
    assert leftovers["tmp"] == 0, record  # the rerun removed the dead writers' temp files
    assert _strip(final) == _strip(reference), record
    ref_images = {p.relative_to(ref_out): p.read_bytes() for p in (ref_out / "images").glob("*/*.png")}
    assert {p.relative_to(out): p.read_bytes() for p in (out / "images").glob("*/*.png")} == ref_images
    (ref_ckpt,) = [p for p in (ref_out / "checkpoints").iterdir() if p.is_dir()]
    ckpt = out / "checkpoints" / ref_ckpt.name
    wa, wb = (load_file(str(c / "pytorch_lora_weights.safetensors")) for c in (ref_ckpt, ckpt))
    assert wa.keys() == wb.keys() and all(bool((wa[k] == wb[k]).all()) for k in wa)  # resumed training is exact
    assert (ckpt / "train_log.jsonl").read_text() == (ref_ckpt / "train_log.jsonl").read_text()
    assert not list(out.glob("checkpoints/*.work"))
    print("\nkill trials (phase, delay s, images, training steps logged, files checked):", *record, sep="\n  ")
