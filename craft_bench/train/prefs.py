"""Offline preference data in the Pick-a-Pic layout, for training the DPO family on real human preferences.

A parquet or JSON-lines file, one comparison per row (the column names of yuvalkirstain/pickapic_v2, which
Diffusion-DPO's train.py reads as ("jpg_0", "jpg_1", "label_0", "caption")):

  caption (or prompt)       the prompt both images answer
  image_0, image_1          a path (absolute, or relative to the file's folder), or the image's bytes as Pick-a-Pic's
  (or jpg_0, jpg_1)         parquet shards hold them (raw bytes, or a {"bytes": ...} struct as `datasets` writes it)
  label_0                   1: image_0 preferred; 0: image_1 preferred; 0.5: a tie, dropped (train.py keeps only
                            label_0 in (0, 1))
  score_0, score_1          optional scores of the two images (SmPO's soft labels); ps_score_0, ps_score_1 as SmPO's
                            preprocessing.py writes them (PickScore's unscaled cosine) are read as PickScore x 100

Images given as bytes are written once, content-addressed, under ``<results>/cache/prefs/`` so the trainer reads
paths. Rows are taken in a random order seeded by the method's ``prompt_seed``, at most ``pairs`` of them.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from craft_bench.errors import UserError

SUFFIXES = (".parquet", ".pq", ".jsonl", ".json")
ALIASES = {"caption": ("caption", "prompt"), "image_0": ("image_0", "jpg_0"), "image_1": ("image_1", "jpg_1")}
# PickScore's logit_scale.exp() (the clamp of CLIP's learned temperature, 100): our `pickscore` reward reports
# 100 x cosine, SmPO's preprocessing the cosine itself.
PICKSCORE_SCALE = 100.0


def check_file(path: Path) -> Path:
    if path.suffix.lower() not in SUFFIXES:
        raise UserError(f"method.data={path}: give a preference file ending in {', '.join(SUFFIXES)} (or data=pool)")
    if not path.is_file():
        raise UserError(
            f"method.data={path}: no such file; give a parquet or JSONL file of caption, image_0, image_1, "
            "label_0 rows (or data=pool)"
        )
    return path


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The file's rows as dicts (parquet through pandas + pyarrow, JSON lines line by line)."""
    check_file(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            import pandas as pd

            frame = pd.read_parquet(path)
        except ImportError as exc:
            raise UserError(
                f"reading {path} needs pyarrow ({exc}); pip install pyarrow, or give a JSONL file"
            ) from None
        except Exception as exc:  # noqa: BLE001 - any parquet failure is a bad input file
            raise UserError(f"{path}: not a readable parquet file ({type(exc).__name__}: {exc})") from None
        return frame.to_dict(orient="records")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise UserError(
                f"{path}:{number}: not a JSON line; one object per line (caption, image_0, image_1, label_0)"
            ) from None
        if not isinstance(row, dict):
            raise UserError(f"{path}:{number}: expected a JSON object")
        rows.append(row)
    return rows


def _column(row: dict[str, Any], name: str, where: str) -> Any:
    for key in ALIASES.get(name, (name,)):
        if key in row and row[key] is not None:
            return row[key]
    raise UserError(f"{where}: no '{name}' column (accepted: {', '.join(ALIASES.get(name, (name,)))})")


def _image_path(value: Any, folder: Path, cache: Path, where: str) -> str:
    """A readable image path for a path or bytes value (bytes are written content-addressed into ``cache``)."""
    from craft_bench.store import atomic_write_bytes

    if isinstance(value, dict) and value.get("bytes") is not None:
        value = value["bytes"]
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        key = hashlib.sha256(data).hexdigest()
        out = cache / key[:2] / f"{key}.img"
        if not out.is_file():
            atomic_write_bytes(out, data)
        return str(out)
    if isinstance(value, dict) and value.get("path"):
        value = value["path"]
    if not isinstance(value, str):
        raise UserError(f"{where}: an image must be a path or bytes, got {type(value).__name__}")
    p = Path(value).expanduser()
    p = p if p.is_absolute() else folder / p
    if not p.is_file():
        raise UserError(f"{where}: image {p} does not exist; paths are absolute or relative to the file's folder")
    return str(p)


def file_pairs(path: Path, config: Any, ctx: Any, score: bool) -> tuple[list[dict[str, Any]], Any, dict[str, Any]]:
    """Up to ``config.pairs`` preference pairs from the file, as a pool of two-candidate groups too (for the soft
    labels of SmPO: the file's scores, or with ``score`` the configured rewards' scores)."""
    from craft_bench.store import file_digest
    from craft_bench.train.pool import Candidate, Pool, PoolSpec, score_candidates

    t0 = time.perf_counter()
    rows = read_rows(path)
    usable, ties = [], 0
    for n, row in enumerate(rows):
        label = float(_column(row, "label_0", f"{path}: row {n}"))
        if label in (0.0, 1.0):
            usable.append((n, row, label))
        elif label == 0.5:
            ties += 1
        else:
            raise UserError(f"{path}: row {n}: label_0 must be 1 (image_0 preferred), 0 or 0.5 (tie), got {label}")
    if not usable:
        raise UserError(f"{path}: no row with a preference (label_0 of 0 or 1); nothing to train on")
    order = np.random.default_rng(config.prompt_seed).permutation(len(usable))[: config.pairs]
    cache = Path(ctx.store.root) / "cache" / "prefs"
    examples, candidates, captions = [], [], []
    file_scored = False
    for g, i in enumerate(order):
        n, row, label = usable[int(i)]
        where = f"{path}: row {n}"
        caption = str(_column(row, "caption", where))
        images = [_image_path(_column(row, f"image_{j}", where), path.parent, cache, where) for j in (0, 1)]
        scores: list[dict[str, float]] = [{}, {}]
        for j in (0, 1):
            if row.get(f"score_{j}") is not None:
                scores[j]["file"] = float(row[f"score_{j}"])
            elif row.get(f"ps_score_{j}") is not None:
                scores[j]["pickscore"] = PICKSCORE_SCALE * float(np.ravel(row[f"ps_score_{j}"])[0])
        file_scored = file_scored or bool(scores[0])
        for j in (0, 1):
            candidates.append(
                Candidate(
                    group=g,
                    original=caption,
                    text=caption,
                    expanded=False,
                    index=j,
                    image_key=file_digest(images[j]),
                    image_path=images[j],
                    scores=scores[j],
                )
            )
        win, lose = (0, 1) if label == 1.0 else (1, 0)
        captions.append(caption)
        examples.append(
            {
                "image_w": images[win],
                "image_l": images[lose],
                "prompt": caption,
                "row": n,
                "image_key_w": candidates[-2 + win].image_key,
                "image_key_l": candidates[-2 + lose].image_key,
            }
        )
    read_s = time.perf_counter() - t0
    rewards: tuple[str, ...] = tuple(sorted(candidates[0].scores)) if file_scored else ()
    evaluations, score_s = 0, 0.0
    if score and not file_scored:
        rewards = config.reward_names(ctx.world)
        t = time.perf_counter()
        evaluations = score_candidates(
            candidates,
            PoolSpec(prompts=str(path), size=len(order), prompt_seed=config.prompt_seed, k=2, rewards=rewards),
            ctx,
        )
        score_s = time.perf_counter() - t
    missing = [c for c in candidates if set(c.scores) != set(rewards)]
    if missing:
        raise UserError(f"{path}: some rows have scores and others not; give score_0/score_1 on every row or on none")
    spec = PoolSpec(prompts=str(path), size=len(order), prompt_seed=config.prompt_seed, k=2, rewards=rewards)
    pool = Pool(spec, captions, candidates, {"read_s": read_s, "score_s": score_s}, 0, evaluations)
    accounting = {
        "timing": {"read_s": read_s, "score_s": score_s},
        "images_generated": 0,
        "reward_calls": evaluations,
        "rewards": list(rewards) if evaluations else [],
        "data": {"file": str(path), "rows": len(rows), "ties_dropped": ties, "pairs": len(examples)},
    }
    return examples, pool, accounting
