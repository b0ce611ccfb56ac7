"""Candidate pools: prompts -> (expanded prompts) -> K images each from the current model -> reward scores.

The one place training data is sampled and scored, shared by every method that learns from the model's own
samples (CRAFT keeps a filtered set; DPO-style methods pair best and worst of a group). Every stage is cached:
images in the image cache (``craft_bench.generate``, so a rerun or another method with the same pool generates
nothing), expansions and reward scores as small JSON files under ``<results>/cache/``, keyed by everything that
changes them (reward weights, image key, prompt text).

A candidate's image is seeded by (pool seed, sha of the prompt text it was generated from, k), so the same
prompt gets the same candidates in every pool that contains it.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from craft_bench.api import Checkpoint, PromptItem, RunContext
from craft_bench.errors import UserError
from craft_bench.spec import SamplerSpec, digest

# Prompt seed of the mini world's training pools: apart from every evaluation seed (GenEval-mini evaluates at
# 1000 by default, the judge set used 2024 and 2025, the mini-clip recipe trains at 7919).
MINI_TRAIN_PROMPT_SEED = 4242


@dataclass(frozen=True)
class PoolSpec:
    """What a pool is. Its digest (with the model's) identifies the pool's images and scores."""

    prompts: str  # "mini" (the mini grammar) or a prompt file (one prompt per line, or GenEval metadata jsonl)
    size: int
    prompt_seed: int
    k: int
    expansion: str = "none"  # none | template | llm
    expansions_per_prompt: int = 0
    llm: tuple[tuple[str, Any], ...] = ()  # expander settings (model, endpoint, temperature, seed, ...)
    rewards: tuple[str, ...] = ()
    score_against: str = "original"  # original | used (the prompt the image was generated from)
    seed: int = 0


@dataclass
class Candidate:
    group: int  # index of the original prompt in the pool
    original: str
    text: str  # the prompt the image was generated from
    expanded: bool
    index: int  # k
    image_key: str
    image_path: str
    scores: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Pool:
    spec: PoolSpec
    prompts: list[str]
    candidates: list[Candidate]
    timings: dict[str, float]  # expand_s, generate_s, score_s
    # The method's cost: the images and reward evaluations the pool takes, whatever the cache already held, so a
    # resumed, repeated or pool-sharing run reports what an uninterrupted one does (timings show the work done now).
    images_generated: int
    reward_evaluations: int


# --------------------------------------------------------------------------- prompts


def pool_prompts(spec: PoolSpec, mini_world: bool) -> tuple[list[str], list[dict[str, Any]]]:
    """The pool's original prompts (and GenEval metadata where known)."""
    if spec.prompts in ("auto", "mini"):
        if not mini_world:
            raise UserError("method.pool=auto draws mini-world prompts, but this is not a mini-world model; "
                            "pass a prompt file: --set method.pool=/path/prompts.txt (one prompt per line)")
        from craft_bench.mini.prompts import TASKS, geneval_prompts

        per_task = -(-spec.size // len(TASKS))
        lines = geneval_prompts(per_task, spec.prompt_seed)
        by_task = {t: [ln for ln in lines if ln["tag"] == t] for t in TASKS}
        chosen: list[dict[str, Any]] = []
        i = 0
        while len(chosen) < spec.size:  # round-robin over tasks, so any size stays balanced
            for t in TASKS:
                if i < len(by_task[t]) and len(chosen) < spec.size:
                    chosen.append(by_task[t][i])
            i += 1
        return [ln["prompt"] for ln in chosen], chosen
    return _prompts_from_file(Path(spec.prompts), spec.size, spec.prompt_seed)


def _prompts_from_file(path: Path, size: int, seed: int) -> tuple[list[str], list[dict[str, Any]]]:
    import numpy as np

    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"method.pool={path}: cannot read it ({exc}); give a UTF-8 text file, one prompt per line") from None
    lines, metas = [], []
    for number, line in enumerate(raw.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("{"):
            try:
                meta = json.loads(line)
                text = meta["prompt"]
            except (ValueError, KeyError, TypeError):
                raise UserError(f"{path}:{number}: a JSON line needs a 'prompt' field") from None
        else:
            meta, text = {}, line
        lines.append(text)
        metas.append(meta)
    if not lines:
        raise UserError(f"method.pool={path}: no prompts in it")
    order = np.random.default_rng(seed).permutation(len(lines))[: min(size, len(lines))]
    return [lines[i] for i in order], [metas[i] for i in order]


# --------------------------------------------------------------------------- candidates


def candidate_items(texts: Sequence[str], k: int) -> list[PromptItem]:
    """One item per distinct prompt text; its id depends on the text only, so its images do too."""
    seen: dict[str, PromptItem] = {}
    for text in texts:
        if text not in seen:
            seen[text] = PromptItem(id="pool-" + hashlib.sha256(text.encode()).hexdigest()[:16], prompt=text, n_images=k)
    return list(seen.values())


def build_pool(spec: PoolSpec, model: Checkpoint, sampler: SamplerSpec, ctx: RunContext, mini_world: bool,
               log: Any = None) -> Pool:
    """Prompts, expansions, candidates and their scores (everything cached)."""
    from craft_bench.generate import generate, plan
    from craft_bench.models import load_pipeline
    from craft_bench.train.expand import expand

    from craft_bench.rewards.composite import CompositeScorer

    timings: dict[str, float] = {}
    prompts, metas = pool_prompts(spec, mini_world)
    # The rewards load first: an unknown reward or missing weights stop the run before any candidate is generated.
    scorer = CompositeScorer.load(list(spec.rewards), device=ctx.device)
    t = time.perf_counter()
    expanded = expand(prompts, spec, ctx.store.root, mini_world, progress=ctx.progress) if spec.expansion != "none" else {}
    timings["expand_s"] = time.perf_counter() - t
    groups: list[tuple[int, str, bool]] = []
    for g, p in enumerate(prompts):
        groups.append((g, p, False))
        groups += [(g, e, True) for e in expanded.get(p, [])]
    items = candidate_items([text for _, text, _ in groups], spec.k)
    by_text = {it.prompt: it for it in items}
    requests = plan(items, model, sampler, spec.seed, ctx.dtype)
    by_item: dict[str, list[Any]] = {}
    for r in requests:
        by_item.setdefault(r.item_id, []).append(r)

    def factory() -> Any:
        return load_pipeline(model.base_dir, model.model.family, ctx.device, ctx.dtype, model.adapter_dir, sampler.scheduler)

    if log:
        log(f"candidate pool: {len(prompts)} prompts, {len(items)} distinct texts x {spec.k} = {len(requests)} images")
    gen = generate(requests, ctx.store, factory, sampler, progress=ctx.progress)
    timings["generate_s"] = gen.seconds
    candidates = []
    for g, text, ex in groups:
        for r in by_item[by_text[text].id]:
            candidates.append(Candidate(group=g, original=prompts[g], text=text, expanded=ex, index=r.index,
                                        image_key=r.key, image_path=str(ctx.store.image_path(r.key)),
                                        metadata=metas[g]))
    t = time.perf_counter()
    score_candidates(candidates, spec, ctx, scorer)
    timings["score_s"] = time.perf_counter() - t
    return Pool(spec, prompts, candidates, timings, len({r.key for r in requests}), len(candidates) * len(spec.rewards))


# --------------------------------------------------------------------------- rewards


def reward_identity(name: str, reward: Any) -> str:
    """What a reward's scores depend on: its name and a digest of its weights (when its model is a torch
    module), else its name and source."""
    module = getattr(reward, "model", None)
    if module is not None and hasattr(module, "state_dict"):
        h = hashlib.sha256(name.encode())
        for k, v in sorted(module.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().float().numpy().tobytes())
        return h.hexdigest()
    return digest({"reward": name, "source": getattr(reward, "source", None)})


def score_candidates(candidates: Sequence[Candidate], spec: PoolSpec, ctx: RunContext, scorer: Any = None) -> int:
    """Fill ``scores`` of every candidate; returns the number of reward evaluations actually run."""
    from craft_bench.rewards.composite import CompositeScorer

    root = Path(ctx.store.root) / "cache" / "rewards"
    evaluations = 0
    scorer = scorer or CompositeScorer.load(list(spec.rewards), device=ctx.device)
    for name, reward in scorer.rewards.items():
        ident = reward_identity(name, reward)
        todo = []
        for c in candidates:
            prompt = c.original if spec.score_against == "original" else c.text
            key = hashlib.sha256(json.dumps([ident, c.image_key, prompt]).encode()).hexdigest()
            path = root / name / key[:2] / f"{key}.json"
            if path.is_file():
                c.scores[name] = json.loads(path.read_text())["score"]
            else:
                todo.append((c, prompt, path))
        if todo:
            single = CompositeScorer({name: reward}, batch_size=64)
            frame = single.score([c.image_path for c, _, _ in todo], [p for _, p, _ in todo])
            from craft_bench.store import atomic_write_json

            for (c, _, path), value in zip(todo, frame["score"].tolist()):
                c.scores[name] = float(value)
                atomic_write_json(path, {"score": float(value)})
            evaluations += len(todo)
    return evaluations
