"""`craft-bench run`: resolve a spec, prepare the method's checkpoint, generate, score, write results.

The runner, not the suite, samples images (through ``craft_bench.generate``); the suite only lists
prompts and scores images. Scored records are appended to ``samples.partial.jsonl`` as they are made,
so a killed run resumes where it stopped; the finished run folder holds run_spec.json,
samples.jsonl and results.json, each written atomically.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from craft_bench import registry
from craft_bench.api import Checkpoint, MetricDef, PairedSuite, PromptItem, RunContext, Suite
from craft_bench.errors import UserError
from craft_bench.generate import ImageFeed, generate, plan
from craft_bench.spec import (
    SCHEMA_VERSION,
    PluginSpec,
    RunSpec,
    SamplerSpec,
    apply_overrides,
    config_to_pairs,
    to_jsonable,
)
from craft_bench.store import CorruptImage, Store, atomic_write_json, atomic_write_text
from craft_bench.version import versions

SCORE_CHUNK = int(
    os.environ.get("CRAFT_BENCH_SCORE_CHUNK", "64")
)  # images scored per partial-results flush (and per process share)
# The run seed seeds numpy and torch generators (bootstrap, training batches), which take no negative seed; every
# seed in [0, 2**32) is valid for all of them.
MAX_SEED = 2**32 - 1


@dataclass
class RunRequest:
    """What the CLI (or a Python caller) asks for."""

    method: str
    suite: str
    model: str = "mini"
    seed: int = 0
    limit: int | None = None
    prompts: str | None = None
    out: str | None = None
    sets: list[tuple[str, str]] = field(default_factory=list)
    device: str | None = None
    dtype: str | None = None
    progress: bool = True
    overlap: bool = True  # score images while the next ones are generated (one process)


@dataclass(frozen=True)
class Baseline:
    """What a paired suite's images are judged against: a method (+ config) and the seed it trains with."""

    method: PluginSpec
    seed: int

    def identity(self) -> dict[str, Any]:
        return {
            "method": self.method.name,
            "version": self.method.version,
            "config": self.method.config,
            "seed": self.seed,
        }


@dataclass
class Resolved:
    spec: RunSpec
    method: Any
    suite: Suite
    model_path: Path
    prompts_path: Path | None
    device: str
    world: Any  # craft_bench.world.World of the model
    baseline: Baseline | None = None


def _split_overrides(sets: Sequence[tuple[str, str]], targets: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Route ``--set`` keys to sampler / method / suite configs. Prefixes (``method.lr``) disambiguate."""
    routed: dict[str, dict[str, str]] = {name: {} for name in targets}
    for key, value in sets:
        prefix, dot, rest = key.partition(".")
        if dot and prefix in targets:
            routed[prefix][rest] = value
            continue
        owners = [name for name, cfg in targets.items() if key in {f.name for f in dataclasses.fields(cfg)}]
        if not owners:
            import difflib

            every = sorted({f"{n}.{f.name}" for n, cfg in targets.items() for f in dataclasses.fields(cfg)})
            plain = sorted({f.name for cfg in targets.values() for f in dataclasses.fields(cfg)})
            close = difflib.get_close_matches(key, plain + every, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise UserError(f"--set {key}: no such setting{hint} (settings: {', '.join(every)})")
        if len(owners) > 1:
            raise UserError(
                f"--set {key} is ambiguous ({' and '.join(owners)} both have it); write {owners[0]}.{key}=..."
            )
        routed[owners[0]][key] = value
    return routed


def _check_prompts(path: str | None) -> Path | None:
    if path is None:
        return None
    p = Path(path).expanduser()
    try:
        with open(p, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        raise UserError(
            f"--prompts {path}: cannot read it ({exc.strerror or exc}); give a readable prompt file"
        ) from None
    return p


def resolve_baseline(ref: str, model: Any, seed: int) -> Baseline:
    """A paired suite's baseline: a registered method (default config, this run's seed), or a finished run
    folder (its method, config and seed, which must be of this run's base model)."""
    path = Path(ref).expanduser()
    if not path.exists():
        cls = registry.methods.get(ref)
        return Baseline(PluginSpec(cls.name, cls.version, config_to_pairs(cls.Config())), seed)
    spec_file = (path if path.is_dir() else path.parent) / "run_spec.json"
    try:
        run = json.loads(spec_file.read_text())
        method = PluginSpec(
            run["method"]["name"], run["method"]["version"], tuple((k, v) for k, v in run["method"]["config"])
        )
        run_digest, run_seed = run["model"]["digest"], int(run["seed"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(
            f"baseline '{ref}': not a run folder with a readable run_spec.json ({type(exc).__name__}); give a "
            "method name or a finished run folder"
        ) from None
    if run_digest != model.digest:
        raise UserError(
            f"baseline '{ref}' was run on another base model than '{model.name}'; give a run of the same "
            "--model, or a method name"
        )
    cls = registry.methods.get(method.name)
    if cls.version != method.version:
        raise UserError(
            f"baseline '{ref}' was made by {method.name} version {method.version}, this install has version "
            f"{cls.version}; give the method name instead"
        )
    return Baseline(method, run_seed)


def _baseline_method(baseline: Baseline) -> Any:
    cls = registry.methods.get(baseline.method.name)
    return cls(cls.Config(**dict(baseline.method.config)))


def resolve(req: RunRequest) -> Resolved:
    from craft_bench.models import check_sampler, default_dtype, resolve_device, resolve_model
    from craft_bench.parallel import process_device
    from craft_bench.store import file_digest
    from craft_bench.world import world_of

    method_cls = registry.methods.get(req.method)
    suite_cls = registry.suites.get(req.suite)
    prompts_path = _check_prompts(req.prompts)
    if req.limit is not None and req.limit < 1:
        raise UserError(f"--limit {req.limit}: give a positive number of prompts")
    if isinstance(req.seed, bool) or not isinstance(req.seed, int) or not 0 <= req.seed <= MAX_SEED:
        raise UserError(
            f"--seed {req.seed}: give a whole number from 0 to {MAX_SEED} (the run seed seeds numpy and torch "
            "generators, which take no negative seed)"
        )
    model_spec, default_sampler, model_path = resolve_model(req.model)
    world = world_of(model_spec)  # what `auto` means for this model, decided here once

    targets = {"sampler": default_sampler, "method": method_cls.Config(), "suite": suite_cls.Config()}
    routed = _split_overrides(req.sets, targets)
    sampler: SamplerSpec = apply_overrides(default_sampler, routed["sampler"], "the sampler")
    check_sampler(sampler, model_path)
    method_cfg = method_cls.resolve_config(
        apply_overrides(targets["method"], routed["method"], f"method '{method_cls.name}'", prefix="method.")
    )
    suite_cfg = apply_overrides(targets["suite"], routed["suite"], f"suite '{suite_cls.name}'", prefix="suite.")

    device = process_device(resolve_device(req.device))
    dtype = req.dtype or default_dtype(device, model_spec.family)
    if dtype not in ("float32", "float16", "bfloat16"):
        raise UserError(f"--dtype {dtype}: use float32, float16 or bfloat16")
    suite = suite_cls(suite_cfg)
    suite_pairs = config_to_pairs(suite_cfg)
    baseline = None
    if isinstance(suite, PairedSuite):
        # The baseline's identity (method, config, seed), not the name or path it was given by, keys the run.
        baseline = resolve_baseline(suite.baseline_ref(), model_spec, req.seed)
        suite_pairs = tuple((k, baseline.identity() if k == "baseline" else v) for k, v in suite_pairs)
    spec = RunSpec(
        model=model_spec,
        method=PluginSpec(method_cls.name, method_cls.version, config_to_pairs(method_cfg)),
        suite=PluginSpec(suite_cls.name, suite_cls.version, suite_pairs),
        sampler=sampler,
        seed=req.seed,
        limit=req.limit,
        prompts=file_digest(prompts_path) if prompts_path else None,
        dtype=dtype,
    )
    return Resolved(spec, method_cls(method_cfg), suite, model_path, prompts_path, device, world, baseline)


def limit_items(items: list[PromptItem], limit: int | None) -> list[PromptItem]:
    """The first ``limit`` items taken round-robin across strata, so a small run still covers every task."""
    if limit is None or limit >= len(items):
        return items
    by_stratum: dict[str, list[PromptItem]] = {}
    for item in items:
        by_stratum.setdefault(item.stratum, []).append(item)
    queues = list(by_stratum.values())
    chosen: list[PromptItem] = []
    i = 0
    while len(chosen) < limit:
        for q in queues:
            if i < len(q) and len(chosen) < limit:
                chosen.append(q[i])
        i += 1
    order = {item.id: n for n, item in enumerate(items)}
    return sorted(chosen, key=lambda it: order[it.id])


def metric_def_dict(m: MetricDef) -> dict[str, Any]:
    return dataclasses.asdict(m)


def _read_partial(path: Path) -> dict[tuple[str, int], dict[str, Any]]:
    """Complete lines of a partial-records file (a line cut by a kill is dropped)."""
    done: dict[tuple[str, int], dict[str, Any]] = {}
    if not path.exists():
        return done
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        done[(rec["item_id"], rec["index"])] = rec
    return done


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return f"{device} ({torch.cuda.get_device_name(0)})"
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


# scored records of an unfinished run (one file per extra process: samples.partial.<rank>.jsonl)
PARTIAL = "samples.partial.jsonl"


def run(
    req: RunRequest, log: Callable[[str], None] = lambda s: print(s, file=sys.stderr), resolved: Resolved | None = None
) -> tuple[dict[str, Any] | None, Path]:
    """Execute a run (or return the finished one) and return (results, run folder). ``resolved``: ``req`` already
    resolved (e.g. by ``for_method``).

    With several processes (torchrun) every process takes its share of training, generation and scoring; only the
    first takes the run's lock, writes the run folder and returns the results (the others return None)."""
    from craft_bench.parallel import shard_from_env

    r = resolved or resolve(req)  # bad input stops here, before the results folder is touched
    store = Store(req.out)
    spec = r.spec
    run_dir = store.run_dir(spec.suite.name, spec.method.name, spec.model.name, spec.short_hash)
    results_path = run_dir / "results.json"
    shard = shard_from_env(r.device)
    lead = shard is None or shard.is_main
    with store.lock(f"run-{spec.hash}") if lead else contextlib.nullcontext():
        finished = results_path.exists()
        if shard is not None:
            finished = shard.broadcast(finished)
        if finished:
            if lead:
                results = cached_results(run_dir)
                log(f"cached: {run_dir}")
                return results, run_dir
            return None, run_dir
        try:
            results = _execute(r, req, store, run_dir, shard, log)
        except BaseException:
            if lead:
                discard_unfinished(run_dir)
            raise
    return results, run_dir


def cached_results(run_dir: Path) -> dict[str, Any]:
    """A finished run's results.json; one that is damaged or foreign is a one-line error, not a cache hit."""
    from craft_bench.results_file import NotResults, read_results

    try:
        return read_results(run_dir)
    except NotResults as exc:
        raise NotResults(
            exc.path, exc.why, f"the finished run's folder is damaged: remove {run_dir} and run again"
        ) from None


def run_dir_of(r: Resolved, out: str | None) -> Path:
    """Where the run ``r`` is (or would be) under the results root ``out``."""
    spec = r.spec
    return Store(out, create=False).run_dir(spec.suite.name, spec.method.name, spec.model.name, spec.short_hash)


def for_method(r: Resolved, name: str) -> Resolved:
    """``r`` with another method (its default settings): the same model, suite, sampler, seed, prompts and dtype, so its
    images pair with ``r``'s (same prompt, same seed) in ``compare``."""
    cls = registry.methods.get(name)
    cfg = cls.resolve_config(cls.Config())
    spec = dataclasses.replace(r.spec, method=PluginSpec(cls.name, cls.version, config_to_pairs(cfg)))
    return dataclasses.replace(r, spec=spec, method=cls(cfg))


def discard_unfinished(run_dir: Path) -> None:
    """After a failed run: keep only what was computed (scored records), so nothing there looks like a run."""
    import shutil

    if not run_dir.is_dir() or (run_dir / "results.json").exists():
        return
    for p in run_dir.iterdir():
        keep = p.name.startswith("samples.partial") and p.is_file() and p.stat().st_size > 0
        if keep:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                p.unlink()
    with contextlib.suppress(OSError):
        run_dir.rmdir()  # only when empty


def _execute(
    r: Resolved, req: RunRequest, store: Store, run_dir: Path, shard: Any, log: Callable[[str], None]
) -> dict[str, Any] | None:
    spec = r.spec
    lead = shard is None or shard.is_main
    ctx = RunContext(
        spec=spec,
        store=store,
        device=r.device,
        dtype=spec.dtype,
        seed=spec.seed,
        world=r.world,
        progress=req.progress and lead,
    )

    # Items first: a suite checks what it needs to score (a detector's weights, a prompt file) before any training.
    items = limit_items(r.suite.items(ctx, r.prompts_path), spec.limit)
    if not items:
        raise UserError(f"suite '{spec.suite.name}' has no prompts to run (check --prompts / --limit)")
    few = next((it for it in items if it.n_images < 1), None)
    if few is not None:
        raise UserError(
            f"suite '{spec.suite.name}' asks for {few.n_images} images of prompt '{few.id}'; give at least one "
            "image per prompt (e.g. --set suite.images_per_prompt=1)"
        )

    base = Checkpoint(model=spec.model, base_dir=str(r.model_path), digest=spec.model.digest)
    t0 = time.perf_counter()
    checkpoint = r.method.prepare(base, ctx)
    train_s = checkpoint.train_s if checkpoint is not base else 0.0
    prep_s = time.perf_counter() - t0
    controlnet = r.suite.controlnet(ctx)
    jobs = [(plan(items, checkpoint, spec.sampler, spec.seed, spec.dtype, controlnet), checkpoint)]
    baseline_ckpt = None
    if r.baseline is not None:
        # Same items, sampler, run seed and dtype: image i of prompt p has the same initial noise in both.
        bspec = dataclasses.replace(spec, method=r.baseline.method, seed=r.baseline.seed)
        bctx = dataclasses.replace(ctx, spec=bspec, seed=r.baseline.seed)
        baseline_ckpt = _baseline_method(r.baseline).prepare(base, bctx)
        jobs.append((plan(items, baseline_ckpt, spec.sampler, spec.seed, spec.dtype, controlnet), baseline_ckpt))
    requests = jobs[0][0]
    baseline_requests = jobs[1][0] if len(jobs) > 1 else None
    if lead:
        log(
            f"run {spec.method.name} x {spec.suite.name} on {spec.model.name}: {len(items)} prompts, "
            f"{len(requests)} images -> {run_dir}" + (f" ({shard.world} processes)" if shard is not None else "")
        )
        if baseline_requests is not None:
            log(f"baseline {r.baseline.method.name}: {len(baseline_requests)} images with the same seeds")

    factory_of = {rq.key: _pipeline_factory(r, ckpt, controlnet) for rqs, ckpt in jobs for rq in rqs}

    def regenerate(rqs: list[Any]) -> None:
        """Make ``rqs`` again (their cached files were unreadable), each with its own checkpoint's pipeline."""
        log(f"{len(rqs)} cached image(s) did not decode; generating them again")
        for factory in {id(factory_of[rq.key]): factory_of[rq.key] for rq in rqs}.values():
            generate(
                [rq for rq in rqs if factory_of[rq.key] is factory],
                store,
                factory,
                spec.sampler,
                progress=False,
                on_saved=feed.mark,
            )

    every = [rq for rqs, _ in jobs for rq in rqs]
    overlap = shard is None and req.overlap
    feed = ImageFeed(
        ready=[rq.key for rq in every if store.has_image(rq.key)], regenerate=None if overlap else regenerate
    )
    gens: list[Any] = []
    if overlap:
        # Scoring runs beside generation: each chunk is scored as soon as its images are stored.
        records, score_s = _score_beside(
            lambda: _score(r.suite, items, requests, store, ctx, run_dir, req.progress, baseline_requests, feed),
            lambda: [
                gens.append(
                    generate(
                        rqs,
                        store,
                        _pipeline_factory(r, ckpt, controlnet),
                        spec.sampler,
                        progress=req.progress,
                        on_saved=feed.mark,
                    )
                )
                for rqs, ckpt in jobs
            ],
            feed,
            regenerate,
        )
    else:
        for rqs, ckpt in jobs:
            gens.append(
                generate(
                    rqs,
                    store,
                    _pipeline_factory(r, ckpt, controlnet),
                    spec.sampler,
                    progress=ctx.progress,
                    shard=shard,
                    on_saved=feed.mark,
                )
            )
        if shard is not None:
            shard.barrier()  # every process's images are stored
        t2 = time.perf_counter()
        records = _score(r.suite, items, requests, store, ctx, run_dir, ctx.progress, baseline_requests, feed, shard)
        score_s = time.perf_counter() - t2
    r.suite.close()
    counts = [(g.generated, g.seconds) for g in gens]
    if shard is not None:
        every_counts = shard.gather(counts)
        counts = [(sum(c[i][0] for c in every_counts), max(c[i][1] for c in every_counts)) for i in range(len(gens))]
    if not lead:
        return None
    gen_s = sum(c[1] for c in counts)
    generation: dict[str, Any] = {"images": gens[0].requested, "generated": counts[0][0], "cached": gens[0].cached}
    if baseline_requests is not None:
        generation["baseline"] = {"images": gens[1].requested, "generated": counts[1][0], "cached": gens[1].cached}
    r.suite.write_run_files(run_dir, items, requests, store)

    results = build_results(
        spec,
        r.suite,
        records,
        checkpoint,
        gen_s=gen_s,
        score_s=score_s,
        train_s=train_s or (prep_s if r.method.trainable else 0.0),
        device=ctx.device,
    )
    results["generation"] = generation
    if shard is not None:
        results["processes"] = shard.world
    if r.baseline is not None:
        results["baseline"] = {**r.baseline.identity(), "digest": baseline_ckpt.digest}
    check_results(results, records, requests)
    atomic_write_json(run_dir / "run_spec.json", {"spec_hash": spec.hash, **to_jsonable(spec)})
    atomic_write_text(run_dir / "samples.jsonl", "".join(json.dumps(rec, ensure_ascii=False) + "\n" for rec in records))
    atomic_write_json(run_dir / "results.json", results)
    for p in run_dir.glob("samples.partial*.jsonl"):
        p.unlink(missing_ok=True)
    return results


def _score_beside(
    score: Callable[[], list[dict[str, Any]]],
    produce: Callable[[], Any],
    feed: ImageFeed,
    regenerate: Callable[[list[Any]], None],
) -> tuple[list[dict[str, Any]], float]:
    """Run ``score`` in a thread while ``produce`` generates in this one; then serve the scorer's requests to make
    unreadable images again until it is done. Returns the records and the scorer's own seconds."""
    import threading

    out: dict[str, Any] = {}

    def target() -> None:
        t = time.perf_counter()
        try:
            out["records"] = score()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            out["error"] = exc
        finally:
            out["seconds"] = time.perf_counter() - t
            feed.close()

    scorer = threading.Thread(target=target, name="craft-bench-score", daemon=True)
    scorer.start()
    try:
        produce()
        while scorer.is_alive():
            redo = feed.take_redo(0.2)
            if redo:
                regenerate(redo)
        scorer.join()
    except BaseException as exc:
        feed.close(exc)
        scorer.join()
        raise
    if "error" in out:
        raise out["error"]
    return out["records"], out["seconds"]


def check_results(results: dict[str, Any], records: Sequence[dict[str, Any]], requests: Sequence[Any]) -> None:
    """Only a complete, valid run is written: one record per image and a finite value for every metric."""
    import math

    if len(records) != len(requests):
        raise RuntimeError(f"{len(records)} records for {len(requests)} images")
    head = results.get("headline", "overall")
    if head not in results["metrics"]:
        raise UserError(
            f"the run gave no value for its headline metric '{head}' (no record had it); results.json was not "
            "written; check the suite's settings"
        )
    for name, m in results["metrics"].items():
        bad = [
            k
            for k in ("value", "ci_low", "ci_high")
            if not (isinstance(m.get(k), (int, float)) and math.isfinite(m[k]))
        ]
        if bad:
            raise UserError(
                f"the run's metric '{name}' is not a finite number ({m.get(bad[0])}); results.json was not written "
                "(the scores are kept in the run folder's samples.partial.jsonl); check the model's images "
                "and the suite's settings"
            )


def _pipeline_factory(r: Resolved, checkpoint: Checkpoint, controlnet: str | None = None) -> Callable[[], Any]:
    """Loads the pipeline for ``checkpoint`` (under ``controlnet`` if given) only when called (a fully cached run
    never loads one)."""

    def factory() -> Any:
        from craft_bench.models import apply_speed_settings, load_pipeline

        spec = r.spec
        pipe = load_pipeline(
            r.model_path,
            spec.model.family,
            r.device,
            spec.dtype,
            checkpoint.adapter_dir,
            spec.sampler.scheduler,
            controlnet=controlnet,
        )
        return apply_speed_settings(pipe, spec.sampler)

    return factory


def _load_images(store: Store, requests: Sequence[Any], feed: ImageFeed | None) -> list[Any]:
    """The stored images of ``requests``; ones that do not decode (or vanished) are made again once."""
    for attempt in (0, 1):
        images, bad = [], []
        for rq in requests:
            try:
                images.append(store.load_image(rq.key))
            except (CorruptImage, FileNotFoundError):
                bad.append(rq)
        if not bad:
            return images
        if feed is None or attempt:
            raise UserError(
                f"cached image {store.image_path(bad[0].key)} cannot be read, even after making it again; "
                "check the results folder's disk"
            )
        feed.redo(bad)
    raise AssertionError("unreachable")


def _score(
    suite: Suite,
    items: list[PromptItem],
    requests: list[Any],
    store: Store,
    ctx: RunContext,
    run_dir: Path,
    progress: bool,
    baseline_requests: list[Any] | None = None,
    feed: ImageFeed | None = None,
    shard: Any = None,
) -> list[dict[str, Any]]:
    """Score every image not yet in the run's partial records, in chunks of ``SCORE_CHUNK`` (each appended to the
    partial file with fsync, so a killed run re-scores only what is missing). With ``feed`` a chunk waits until its
    images exist; with ``shard`` process r scores chunks r, r + N, ... and the records are merged on every process."""
    from tqdm.auto import tqdm

    run_dir.mkdir(parents=True, exist_ok=True)
    lead = shard is None or shard.is_main
    partial = run_dir / (PARTIAL if lead else f"samples.partial.{shard.rank}.jsonl")
    done: dict[tuple[str, int], dict[str, Any]] = {}
    for path in sorted(run_dir.glob("samples.partial*.jsonl")):
        done.update(_read_partial(path))
    by_id = {it.id: it for it in items}
    paired = {(b.item_id, b.index): b for b in baseline_requests} if baseline_requests is not None else None
    todo = [rq for rq in requests if (rq.item_id, rq.index) not in done]
    chunks = [todo[i : i + SCORE_CHUNK] for i in range(0, len(todo), SCORE_CHUNK)]
    if shard is not None:
        shard.barrier()  # every process has read the partial records
        chunks = shard.mine(chunks)
    if lead:  # only complete lines, in one file, then append
        atomic_write_text(
            run_dir / PARTIAL, "".join(json.dumps(rec, ensure_ascii=False) + "\n" for rec in done.values())
        )
        for path in run_dir.glob("samples.partial.*.jsonl"):
            path.unlink(missing_ok=True)
    if shard is not None:
        shard.barrier()
    new: dict[tuple[str, int], dict[str, Any]] = {}
    with (
        open(partial, "a") as fh,
        tqdm(
            total=sum(map(len, chunks)), desc="score", unit="img", disable=not progress, leave=False, position=1
        ) as bar,
    ):
        for chunk in chunks:
            chunk_items = [by_id[rq.item_id] for rq in chunk]
            refs_rq = [paired[(rq.item_id, rq.index)] for rq in chunk] if paired is not None else []
            if feed is not None:
                feed.wait([rq.key for rq in chunk + refs_rq])
            images = _load_images(store, chunk, feed)
            if paired is None:
                scored = suite.score(chunk_items, images, ctx)
            else:
                refs = _load_images(store, refs_rq, feed)
                scored = suite.score_pairs(chunk_items, images, refs, ctx)  # type: ignore[attr-defined]
            if len(scored) != len(chunk):
                raise RuntimeError(f"suite '{suite.name}' returned {len(scored)} records for {len(chunk)} images")
            for rq, item, rec in zip(chunk, chunk_items, scored):
                full = {
                    "item_id": rq.item_id,
                    "index": rq.index,
                    "seed": rq.seed,
                    "prompt": rq.prompt,
                    "stratum": item.stratum,
                    "image": rq.key,
                    **rec,
                }
                if paired is not None:
                    full["baseline_image"] = paired[(rq.item_id, rq.index)].key
                new[(rq.item_id, rq.index)] = full
                fh.write(json.dumps(full, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
            bar.update(len(chunk))
    for part in shard.gather(new) if shard is not None else [new]:
        done.update(part)
    return [done[(rq.item_id, rq.index)] for rq in requests]


def compute_metrics(metric_defs: Sequence[MetricDef], records: Sequence[dict[str, Any]], seed: int) -> dict[str, Any]:
    """results.json's ``metrics``: each declared metric's value and bootstrap CI (absent when no record has it)."""
    from craft_bench.report.stats import summarize

    metrics: dict[str, Any] = {}
    for m in metric_defs:
        mv = summarize(m, records, seed=seed)
        if mv is not None:
            metrics[m.name] = {**mv.as_dict(), "higher_is_better": m.higher_is_better, "display_name": m.display_name}
    return metrics


def build_results(
    spec: RunSpec,
    suite: Suite,
    records: list[dict[str, Any]],
    checkpoint: Checkpoint,
    gen_s: float,
    score_s: float,
    train_s: float,
    device: str,
) -> dict[str, Any]:
    metric_defs = suite.metrics()
    results: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "suite": spec.suite.name,
        "suite_version": spec.suite.version,
        "method": spec.method.name,
        "model": spec.model.name,
        "spec_hash": spec.hash,
        "seed": spec.seed,
        "headline": suite.headline,
        "metrics": compute_metrics(metric_defs, records, spec.seed),
        "metric_defs": [metric_def_dict(m) for m in metric_defs],
        "timing": {
            "generate_s": round(gen_s, 3),
            "score_s": round(score_s, 3),
            "train_s": round(train_s, 3),
            "device": _device_name(device),
        },
        "versions": versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if checkpoint.train_info:
        results["train"] = checkpoint.train_info
    return results
