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

import numpy as np

from craft_bench.api import Checkpoint, PromptItem, RunContext
from craft_bench.errors import UserError
from craft_bench.spec import SamplerSpec, digest, setting, to_jsonable
from craft_bench.train.diffusion import TrainConfig
from craft_bench.world import World

# The version of what a pool holds for given settings (its prompts, candidates and reward scores). Every pool-based
# method's run and checkpoint identities carry it (``pool_method_version``): when a change alters what a pool holds,
# bump it here, not each method's version. 1: the pool's own version starts. Its one earlier change (candidates at
# guidance 3 on mini, craft_bench/mini/world.py) was counted in each pool-based method's own version, which is why
# craft, diff-dpo, mapo and smpo are at 2.
# 2: the mini world's pool draws from the training grammar (craft_bench.mini.prompts.training_prompts), whose prompts
#    ask for nothing an evaluation prompt asks for; before, it drew GenEval-mini prompts, overlapping the evaluation
#    set.
POOL_VERSION = "2"

# Prompt seed of every training pool (the mini grammar's draw, or a prompt file's shuffle): apart from every evaluation
# seed (GenEval-mini evaluates at 1000 by default, the judge set used 2024 and 2025, the mini-clip recipe trains at
# 7919).
TRAIN_PROMPT_SEED = 4242


def pool_method_version(own: str, born: str = "1") -> str:
    """A pool-based method's version as its run spec (and so its checkpoint hash) records it: its ``own`` version, and
    the pool's once it differs from the pool version the method was ``born`` with (``"2+pool2"``). That version is
    left out, as an ``omit_default`` setting is, so identities made before the pool moved stay. A pool-based method
    sets ``version = pool_method_version(own)`` (GRPO, added at pool version 2:
    ``pool_method_version("1", born="2")``)."""
    return own if POOL_VERSION == born else f"{own}+pool{POOL_VERSION}"


@dataclass(frozen=True)
class PoolSpec:
    """What a pool is. Its digest (with the model's) identifies the pool's images and scores."""

    # "auto" (the world's), "mini" (the mini grammar) or a prompt file (one prompt per line, or GenEval metadata jsonl)
    prompts: str
    size: int
    prompt_seed: int
    k: int
    expansion: str = "none"  # none | template | llm
    expansions_per_prompt: int = 0
    llm: tuple[tuple[str, Any], ...] = ()  # expander settings (model, endpoint, temperature, seed, ...)
    rewards: tuple[str, ...] = ()
    score_against: str = "original"  # original | used (the prompt the image was generated from)
    seed: int = 0
    # the pool's version (POOL_VERSION): what "auto" prompts mean changed with it; left out of the digest at "1"
    version: str = field(default="1", metadata={"omit_default": True})


@dataclass(frozen=True)
class PromptPoolConfig(TrainConfig):
    """The training-prompt and reward settings of every method that learns from the model's own samples (the pool
    methods through ``PoolConfig``, online RL through its own config), so with their defaults they draw the same
    prompts and score with the same rewards and reward cache."""

    pool: str = setting(
        "auto", "prompt pool: auto (the world's: the mini grammar on mini models), mini, or a prompt file"
    )
    pool_size: int = setting(100, "original prompts in the pool")
    prompt_seed: int = setting(TRAIN_PROMPT_SEED, "training prompt seed (apart from every evaluation seed)")
    rewards: str = setting(
        "auto", "comma-separated rewards (auto: the world's: hps,pickscore,aes; on mini mini-clip,mini-aes)"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pool_size < 1:
            raise ValueError("pool_size must be >= 1")

    def reward_names(self, world: World) -> tuple[str, ...]:
        """The configured rewards, ``auto`` = the world's pool rewards, aliases resolved to registered names."""
        from craft_bench.registry import rewards as registry

        names = world.pool_rewards if self.rewards == "auto" else self.rewards.split(",")
        return tuple(registry.resolve_name(r.strip()) for r in names if r.strip())


@dataclass(frozen=True)
class PoolConfig(PromptPoolConfig):
    """The candidate-pool settings of every method that learns from a pool of the model's own samples (CRAFT and the
    DPO family inherit them), so with their defaults they all draw the same prompts, candidates and scores."""

    expansion: str = setting("template", "prompt expansion: none, template or llm")
    expansions: int = setting(1, "expanded prompts per original prompt")
    llm_model: str = setting("", "expansion=llm: a causal LM (hub id or local folder)")
    llm_endpoint: str = setting("", "expansion=llm: an OpenAI-compatible base URL (e.g. http://127.0.0.1:8000/v1)")
    llm_temperature: float = setting(0.0, "expansion=llm: 0 = greedy, else seeded sampling")
    k: int = setting(4, "candidates per prompt (original and expanded)")
    guidance: float | None = setting(
        None, "guidance scale of the candidates (default: the world's: 3 on mini, else the sampler's)"
    )

    def __post_init__(self) -> None:
        import math

        super().__post_init__()
        checks = [
            (self.expansion in ("none", "template", "llm"), "expansion must be none, template or llm"),
            (self.k >= 2, "k must be at least 2 (a group's candidates are compared with each other)"),
            (self.expansions >= 0, "expansions must be >= 0"),
            (self.expansion == "none" or self.expansions >= 1, "an expansion needs expansions >= 1"),
            (self.guidance is None or (math.isfinite(self.guidance) and self.guidance >= 0), "guidance must be >= 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)

    def candidates(self) -> int:
        """Candidates in a full pool: k per original and per expanded prompt."""
        return self.pool_size * (1 + (self.expansions if self.expansion != "none" else 0)) * self.k

    def pool_spec(self, seed: int, world: World) -> "PoolSpec":
        llm = (
            tuple(
                sorted(
                    {
                        "llm_model": self.llm_model,
                        "llm_endpoint": self.llm_endpoint,
                        "llm_temperature": self.llm_temperature,
                    }.items()
                )
            )
            if self.expansion == "llm"
            else ()
        )
        return PoolSpec(
            prompts=self.pool,
            size=self.pool_size,
            prompt_seed=self.prompt_seed,
            k=self.k,
            expansion=self.expansion,
            expansions_per_prompt=self.expansions if self.expansion != "none" else 0,
            llm=llm,
            rewards=self.reward_names(world),
            seed=seed,
            version=POOL_VERSION,
        )


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
    timings: dict[str, float]  # expand_s, generate_s, score_s (measured now: near 0 when cached)
    # The method's cost: the images and reward evaluations the pool takes, whatever the cache already held, so a
    # resumed, repeated or pool-sharing run reports what an uninterrupted one does (``cost``: its seconds).
    images_generated: int
    reward_evaluations: int
    cost: dict[str, float] = field(default_factory=dict)  # what building the pool from nothing takes (see pool_cost)


# --------------------------------------------------------------------------- prompts


def pool_prompts(spec: PoolSpec, world: World) -> tuple[list[str], list[dict[str, Any]]]:
    """The pool's original prompts (and GenEval metadata where known): ``auto`` = the world's (the mini training grammar
    on mini models; real models have no default pool), ``mini`` = the mini training grammar, else a prompt file."""
    which = world.prompts if spec.prompts == "auto" else spec.prompts
    if which == "mini":
        from craft_bench.mini.prompts import training_prompts

        # The mini training grammar: the GenEval skills in combinations no evaluation prompt set asks for
        # (checked there, order-insensitively), round-robin over its families so any size stays balanced.
        chosen = training_prompts(spec.size, spec.prompt_seed)
        return [ln["prompt"] for ln in chosen], chosen
    if spec.prompts == "auto":
        raise UserError(
            f"method.pool=auto: {world.name} models have no default training prompts; pass a prompt file: "
            "--set method.pool=/path/prompts.txt (one prompt per line)"
        )
    return _prompts_from_file(Path(spec.prompts), spec.size, spec.prompt_seed)


def _prompts_from_file(path: Path, size: int, seed: int) -> tuple[list[str], list[dict[str, Any]]]:
    import numpy as np

    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(
            f"method.pool={path}: cannot read it ({exc}); give a UTF-8 text file, one prompt per line"
        ) from None
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
            seen[text] = PromptItem(
                id="pool-" + hashlib.sha256(text.encode()).hexdigest()[:16], prompt=text, n_images=k
            )
    return list(seen.values())


def build_pool(
    spec: PoolSpec,
    model: Checkpoint,
    sampler: SamplerSpec,
    ctx: RunContext,
    log: Any = None,
    keep_latents: bool = False,
) -> Pool:
    """Prompts (``auto``: the run's world's), expansions, candidates and their scores (everything cached).
    ``keep_latents``: also keep each candidate's sampled latents (a method trained with ``latents=sampled``)."""
    from craft_bench.generate import generate, plan
    from craft_bench.models import load_pipeline
    from craft_bench.rewards.composite import CompositeScorer
    from craft_bench.train.expand import expand

    timings: dict[str, float] = {}
    prompts, metas = pool_prompts(spec, ctx.world)
    # The rewards load first: an unknown reward or missing weights stop the run before any candidate is generated.
    scorer = CompositeScorer.load(list(spec.rewards), device=ctx.device)
    t = time.perf_counter()
    expanded = (
        expand(prompts, spec, ctx.store.root, ctx.world, progress=ctx.progress) if spec.expansion != "none" else {}
    )
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
        return load_pipeline(
            model.base_dir, model.model.family, ctx.device, ctx.dtype, model.adapter_dir, sampler.scheduler
        )

    if log:
        log(f"candidate pool: {len(prompts)} prompts, {len(items)} distinct texts x {spec.k} = {len(requests)} images")
    gen = generate(requests, ctx.store, factory, sampler, progress=ctx.progress, keep_latents=keep_latents)
    timings["generate_s"] = gen.seconds
    candidates = []
    for g, text, ex in groups:
        for r in by_item[by_text[text].id]:
            candidates.append(
                Candidate(
                    group=g,
                    original=prompts[g],
                    text=text,
                    expanded=ex,
                    index=r.index,
                    image_key=r.key,
                    image_path=str(ctx.store.image_path(r.key)),
                    metadata=metas[g],
                )
            )
    t = time.perf_counter()
    evaluations = score_candidates(candidates, spec, ctx, scorer)
    timings["score_s"] = time.perf_counter() - t
    cost = pool_cost(
        ctx.store.root,
        digest({"pool": to_jsonable(spec), "model": model.digest, "sampler": to_jsonable(sampler)}),
        timings,
        generated=gen.generated,
        images=len(requests),
        evaluations=evaluations,
        total_evaluations=len(candidates) * len(spec.rewards),
    )
    return Pool(
        spec, prompts, candidates, timings, len({r.key for r in requests}), len(candidates) * len(spec.rewards), cost
    )


def candidate_guidance(config: PoolConfig, sampler: SamplerSpec, world: World) -> float:
    """The guidance scale the pool's candidates are generated at: the method's ``guidance``, else the world's (3 on
    mini, craft_bench/mini/world.py), else the run's sampler's (real models, as the papers draw their candidates)."""
    if config.guidance is not None:
        return float(config.guidance)
    if world.candidate_guidance is not None:
        return float(world.candidate_guidance)
    return float(sampler.guidance_scale)


def method_pool(config: PoolConfig, ctx: RunContext) -> tuple[PoolSpec, SamplerSpec]:
    """What the pool of a method's ``PoolConfig`` is in this run: its spec and the candidates' sampler (the run's, at
    the candidates' guidance). Together with the model's digest they are the pool's identity (``pool_cost``'s key)."""
    import dataclasses

    sampler = dataclasses.replace(
        ctx.spec.sampler, guidance_scale=candidate_guidance(config, ctx.spec.sampler, ctx.world)
    )
    return config.pool_spec(ctx.seed, ctx.world), sampler


def build_method_pool(config: PoolConfig, base: Checkpoint, ctx: RunContext, log: Any = None) -> Pool:
    """The pool a method's ``PoolConfig`` asks for, from ``base``."""
    spec, sampler = method_pool(config, ctx)
    return build_pool(spec, base, sampler, ctx, log=log, keep_latents=getattr(config, "latents", "encode") == "sampled")


def pool_cost(
    root: str | Path,
    key: str,
    timings: dict[str, float],
    generated: int,
    images: int,
    evaluations: int,
    total_evaluations: int,
) -> dict[str, float]:
    """Seconds building the pool from nothing takes (candidate generation, reward scoring, expansion), whatever the
    caches held this time, so that every method drawing on one pool is charged for it alike.

    The first build that does work records it under ``<results>/cache/pools/<key>.json``, its seconds scaled to the
    whole pool by the share it computed (images generated of all images, reward evaluations of all); a later build
    that computed more replaces the record. A pool built entirely from caches no record knows of costs what was
    measured (near 0)."""
    from craft_bench.store import atomic_write_json

    path = Path(root) / "cache" / "pools" / f"{key}.json"
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        record = None
    work = generated + evaluations
    if work and (record is None or work > record.get("work", 0)):
        record = {
            "generate_s": timings.get("generate_s", 0.0) * images / generated
            if generated
            else (record or {}).get("generate_s", 0.0),
            "score_s": timings.get("score_s", 0.0) * total_evaluations / evaluations
            if evaluations
            else (record or {}).get("score_s", 0.0),
            "expand_s": max(timings.get("expand_s", 0.0), (record or {}).get("expand_s", 0.0)),
            "work": work,
        }
        atomic_write_json(path, record)
    if record is None:
        return {k: float(timings.get(k, 0.0)) for k in ("generate_s", "score_s", "expand_s")}
    return {k: float(record[k]) for k in ("generate_s", "score_s", "expand_s")}


def pool_accounting(pool: Pool, **stage_seconds: float) -> dict[str, Any]:
    """A pool-based method's ``TrainingData.accounting``: measured stage seconds (plus the method's own stages),
    images generated and reward evaluations run now, the rewards trained on and the pool's cost from nothing."""
    return {
        "timing": {**pool.timings, **stage_seconds},
        "images_generated": pool.images_generated,
        "reward_calls": pool.reward_evaluations,
        "rewards": list(pool.spec.rewards),
        "reward_stats": reward_stats(pool),
        "pool_cost": {k: round(v, 3) for k, v in pool.cost.items()},
    }


def reward_stats(pool: Pool) -> dict[str, dict[str, float]]:
    """Each reward's mean, standard deviation, minimum and maximum over the pool's candidates (the model card and
    the training trackers show them)."""
    out = {}
    for name in pool.spec.rewards:
        v = np.array([c.scores[name] for c in pool.candidates], dtype=np.float64)
        if v.size:
            out[name] = {
                "mean": round(float(v.mean()), 6),
                "std": round(float(v.std()), 6),
                "min": round(float(v.min()), 6),
                "max": round(float(v.max()), 6),
            }
    return out


def composite(scores: dict[str, Sequence[float]]) -> np.ndarray:
    """The composite score R of images scored by several rewards: the mean over rewards of each reward's z-score over
    the images given (rewards on one scale). With one reward it is that reward's z-score."""
    z = []
    for values in scores.values():
        v = np.asarray(values, dtype=np.float64)
        z.append((v - v.mean()) / (v.std() + 1e-8))
    return np.mean(z, axis=0)


def composite_scores(pool: Any) -> np.ndarray:
    """The composite score R over the whole pool. CRAFT's filter and the DPO family's pairs rank candidates by it."""
    return composite({name: [c.scores[name] for c in pool.candidates] for name in pool.spec.rewards})


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
    entries = [
        (c.image_key, c.image_path, c.original if spec.score_against == "original" else c.text) for c in candidates
    ]
    scores, evaluations = cached_scores(entries, spec.rewards, ctx.store.root, ctx.device, scorer)
    for name, values in scores.items():
        for c, v in zip(candidates, values):
            c.scores[name] = v
    return evaluations


def cached_scores(
    entries: Sequence[tuple[str, Any, str]], rewards: Sequence[str], root: str | Path, device: str, scorer: Any = None
) -> tuple[dict[str, list[float]], int]:
    """Each reward's score of each (image key, image path or PIL image, prompt), cached under
    ``<results>/cache/rewards/``
    by the reward's weights, the image key and the prompt; returns the scores and the number of evaluations run now.
    The key identifies the pixels: an image cache key, or (online RL's unsaved images) a digest of the image bytes.
    ``scorer``: a ``CompositeScorer`` already holding ``rewards`` (else they load on the first entry)."""
    from craft_bench.rewards.composite import CompositeScorer
    from craft_bench.store import atomic_write_json

    base = Path(root) / "cache" / "rewards"
    evaluations = 0
    out: dict[str, list[float]] = {}
    for name in rewards:
        values: list[float | None] = [None] * len(entries)
        todo = []
        paths = []
        ident = None
        for i, (key, _, prompt) in enumerate(entries):
            if ident is None:
                if scorer is None:
                    scorer = CompositeScorer.load(list(rewards), device=device)
                ident = reward_identity(name, scorer.rewards[name])
            h = hashlib.sha256(json.dumps([ident, key, prompt]).encode()).hexdigest()
            path = base / name / h[:2] / f"{h}.json"
            paths.append(path)
            if path.is_file():
                values[i] = json.loads(path.read_text())["score"]
            else:
                todo.append(i)
        if todo:
            single = CompositeScorer({name: scorer.rewards[name]}, batch_size=64)
            frame = single.score([entries[i][1] for i in todo], [entries[i][2] for i in todo])
            for i, value in zip(todo, frame["score"].tolist()):
                values[i] = float(value)
                atomic_write_json(paths[i], {"score": float(value)})
            evaluations += len(todo)
        out[name] = [float(v) for v in values]  # type: ignore[arg-type]
    return out, evaluations
