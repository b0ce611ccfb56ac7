"""`craft-bench sweep`: methods x training budgets x seeds on one suite, every cell a normal cached, resumable
`craft-bench run`, and what the grid shows: data efficiency, training compute, the compute a baseline needs to match
CRAFT, and reward hacking.

- A budget is the number of training samples or pairs a method may use, set on its ``Method.budget_field`` (CRAFT:
  ``budget``, kept samples; diff-dpo, mapo, smpo: ``pairs``; grpo: ``images``, the images it generates while it
  trains). ``--budgets METHOD=LIST`` gives one method its own list (GRPO's images are counted in thousands where
  CRAFT keeps ~100 samples). Methods without one (vanilla, pretrained) get one cell per seed. Vanilla is always run:
  deltas are paired against it, seed by seed.
- Every pool-based cell draws from one candidate pool: ``pool_size`` is max(its default, the largest budget) unless
  ``--set method.pool_size=N`` says otherwise (a pair method makes at most one pair per prompt).
- A cell's training compute is what producing its checkpoint from nothing costs, whatever the caches held: the pool's
  recorded cost (candidate generation, reward scoring, expansion; ``train.pool.pool_cost``), the method's selection,
  latent/embedding encoding, and optimisation (seconds per step x steps). An online method's rollouts and their
  scoring are its candidates and rewards stages, so CRAFT and GRPO are compared on the same seconds.
- Outputs, in ``<results>/sweeps/<name>/``: sweep.json (the format `craft-bench report` reads, docs/report.md),
  sweep.csv, sweep.md and ``plots/`` (PNG + SVG). A killed sweep rerun redoes only the missing cells (each run is
  cached by its spec hash); sweep.json is rewritten after every cell.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from craft_bench import registry
from craft_bench.errors import UserError
from craft_bench.results_file import NotResults, read_results
from craft_bench.runner import RunRequest
from craft_bench.spec import digest
from craft_bench.store import Store, atomic_write_json, atomic_write_text

STAGES = ("candidates", "rewards", "expansion", "selection", "encoding", "optimisation")


@dataclass
class SweepRequest:
    methods: list[str]
    budgets: list[int]
    cells: RunRequest  # what every cell shares: suite, model, limit, prompts, out, --set, device, dtype, progress
    seeds: list[int] = field(default_factory=lambda: [0])
    name: str | None = None
    reference: str | None = None  # None: the requested method whose class declares ``reference`` (CRAFT)
    judges: list[str] = field(default_factory=list)  # held-out rewards scored on every cell's images
    shard: tuple[int, int] | None = None  # (i, N): run only every N-th cell from the i-th (0-based), e.g. a job array
    method_budgets: dict[str, list[int]] = field(default_factory=dict)  # a method's own budgets (--budgets grpo=...)

    def budgets_for(self, method: str) -> list[int]:
        for name, values in self.method_budgets.items():
            if registry.methods.resolve_name(name) == method:
                return values
        return self.budgets

    @property
    def suite(self) -> str:
        return self.cells.suite

    @property
    def sets(self) -> list[tuple[str, str]]:
        return self.cells.sets


@dataclass
class Cell:
    method: str
    budget: int | None
    seed: int
    sets: list[tuple[str, str]]
    results: dict[str, Any] | None = None
    run_dir: Path | None = None
    wall_s: float = 0.0
    cached: bool = False


# --------------------------------------------------------------------------- the grid


def _config_fields(cls: Any) -> set[str]:
    """The settings a sweep's ``--set method.X`` may give a method: its Config's fields, less those it derives from
    its own budget (GRPO's ``steps`` and ``batch_size``, from ``images``)."""
    import dataclasses

    return {f.name for f in dataclasses.fields(cls.Config)} - set(getattr(cls.Config, "derived_fields", ()))


def reference_of(req: SweepRequest) -> str:
    """The method compute-to-match ratios are measured against: ``--reference``, else the requested method whose
    class declares ``reference`` (built in: craft)."""
    names = [registry.methods.resolve_name(m) for m in req.methods]
    if req.reference is not None:
        names.append(registry.baseline_method())  # always run
        ref = registry.methods.resolve_name(req.reference)
        if ref not in names:
            raise UserError(f"--reference {req.reference}: not among --methods ({', '.join(req.methods)})")
        return ref
    marked = [n for n in names if getattr(registry.methods.get(n), "reference", False)]
    if not marked:
        raise UserError(
            f"--reference: none of --methods ({', '.join(req.methods)}) is a default reference; name the "
            "method compute-to-match ratios are measured against"
        )
    return marked[0]


def plan(req: SweepRequest, store: Store) -> list[Cell]:
    """The sweep's cells in run order (per seed: the untrained methods, then each budget's methods), their --set
    lists and run folders, every cell resolved once so that a bad setting stops the sweep before any work."""
    from craft_bench.runner import resolve
    from craft_bench.spec import SamplerSpec
    from craft_bench.train.pool import PoolConfig

    if not req.methods:
        raise UserError("--methods: name at least one method (craft-bench ls methods)")
    if not req.budgets or any(b < 1 for v in [req.budgets, *req.method_budgets.values()] for b in v):
        raise UserError("--budgets: give positive numbers of training samples, e.g. 25,100,400")
    names = list(dict.fromkeys(registry.methods.resolve_name(m) for m in [registry.baseline_method(), *req.methods]))
    for name in req.method_budgets:
        if registry.methods.resolve_name(name) not in names:
            raise UserError(f"--budgets {name}=...: '{name}' is not among --methods ({', '.join(req.methods)})")
    classes = {n: registry.methods.get(n) for n in names}
    reference_of(req)  # a reference method among them
    method_fields = {n: _config_fields(c) for n, c in classes.items()}
    other = {f for f in SamplerSpec.__dataclass_fields__} | _config_fields(registry.suites.get(req.suite))
    everyone = set().union(*method_fields.values())
    for key, _ in req.sets:
        prefix, dot, rest = key.partition(".")
        if prefix == "method" and dot and rest not in everyone:
            raise UserError(
                f"--set {key}: none of the sweep's methods has a setting '{rest}' (craft-bench ls methods -v)"
            )
    cells = []
    for seed in req.seeds:
        grid = [(n, None) for n in names if classes[n].budget_field is None]
        every = sorted({b for n in names if classes[n].budget_field is not None for b in req.budgets_for(n)})
        grid += [
            (n, b) for b in every for n in names if classes[n].budget_field is not None and b in req.budgets_for(n)
        ]
        for name, budget in grid:
            mine = method_fields[name]
            sets = []
            for key, value in req.sets:
                prefix, dot, rest = key.partition(".")
                plain = key if not dot else (rest if prefix == "method" else None)
                if plain is not None and plain in everyone and plain not in mine and (dot or plain not in other):
                    continue  # another method's setting
                sets.append((key, value))
            field_name = classes[name].budget_field
            if field_name:
                sets.append((f"method.{field_name}", str(budget)))
                given = {k.removeprefix("method.") for k, _ in req.sets}
                if issubclass(classes[name].Config, PoolConfig) and "pool_size" not in given:
                    default = classes[name].Config().pool_size  # the pool must hold the largest pool budget
                    pool_budgets = [
                        b for n in names if issubclass(classes[n].Config, PoolConfig) for b in req.budgets_for(n)
                    ]
                    sets.append(("method.pool_size", str(max(default, *pool_budgets))))
            cell = Cell(name, budget, seed, sets)
            spec = resolve(_run_request(req, cell)).spec
            cell.run_dir = store.run_dir(spec.suite.name, spec.method.name, spec.model.name, spec.short_hash)
            cells.append(cell)
    return cells


def _run_request(req: SweepRequest, cell: Cell) -> RunRequest:
    import dataclasses

    return dataclasses.replace(req.cells, method=cell.method, seed=cell.seed, sets=list(cell.sets))


def sweep_name(req: SweepRequest) -> str:
    if req.name:
        return req.name
    c = req.cells
    key = digest(
        {
            "methods": req.methods,
            "budgets": sorted(req.budgets),
            "seeds": req.seeds,
            "limit": c.limit,
            **({"method_budgets": {m: sorted(v) for m, v in req.method_budgets.items()}} if req.method_budgets else {}),
            "sets": sorted(c.sets),
            "prompts": c.prompts,
            "suite": c.suite,
            "model": c.model,
        }
    )
    model = Path(c.model).name if ("/" in c.model or Path(c.model).exists()) else c.model
    return f"{req.suite}-{model}-{key[:8]}"


def run_sweep(req: SweepRequest, log: Callable[[str], None] | None = None) -> tuple[dict[str, Any], Path]:
    """Run (or reuse) every cell, then write sweep.json/.csv/.md and the plots; returns (sweep, its folder)."""
    import sys

    from tqdm.auto import tqdm

    from craft_bench.runner import run

    log = log or (lambda s: print(s, file=sys.stderr))
    t0 = time.perf_counter()
    store = Store(req.cells.out)
    cells = plan(req, store)
    base = registry.baseline_method()
    if not any(registry.methods.resolve_name(m) == base for m in req.methods):
        log(f"sweep: {base} added (every delta is paired against it)")
    if req.judges:
        from craft_bench.rewards.composite import CompositeScorer

        CompositeScorer.load(req.judges, device=req.cells.device or "auto")  # a judge that cannot load stops us now
    folder = store.root / "sweeps" / sweep_name(req)
    mine = cells if req.shard is None else cells[req.shard[0] :: req.shard[1]]
    if req.shard is not None:
        i, n = req.shard
        log(f"sweep: shard {i}/{n} runs {len(mine)} of {len(cells)} cells -> {folder}")
        # The other shards' cells enter the tables when they are finished (read, never run, here).
        for k, cell in enumerate(cells):
            finished = cell.run_dir / "results.json"
            if k % n != i and finished.is_file():
                try:
                    cell.cached, cell.results = True, read_results(finished)
                except NotResults as exc:  # damaged: that shard's rerun says so; this one's tables leave the cell out
                    cell.cached = False
                    log(f"sweep: warning: skipping {exc}")
    else:
        log(f"sweep: {len(cells)} cells -> {folder}")
    bar = tqdm(mine, desc="sweep", unit="cell", disable=not req.cells.progress)
    for cell in bar:
        bar.set_postfix_str(f"{cell.method} {cell.budget or ''} s{cell.seed}".strip())
        t = time.perf_counter()
        cell.cached = (cell.run_dir / "results.json").is_file()
        results, run_dir = run(_run_request(req, cell), log=log)
        cell.results, cell.run_dir, cell.wall_s = results, run_dir, time.perf_counter() - t
        _write(folder, _document(req, cells, store, time.perf_counter() - t0, final=False))
    doc = _document(req, cells, store, time.perf_counter() - t0, final=True)
    _write(folder, doc)
    return doc, folder


# --------------------------------------------------------------------------- what a cell is worth


def training_stages(train: dict[str, Any] | None) -> dict[str, float]:
    """Seconds producing a cell's checkpoint from nothing takes, by stage (see the module docstring)."""
    if not train:
        return {}
    timing = train.get("timing", {})
    cost = train.get("pool_cost") or {}
    stages = {  # an online method's rollouts and their scoring (sampling_s, reward_s) are its candidates and rewards
        "candidates": cost.get("generate_s", timing.get("generate_s", timing.get("sampling_s", 0.0))),
        "rewards": cost.get("score_s", timing.get("score_s", timing.get("reward_s", 0.0))),
        "expansion": cost.get("expand_s", timing.get("expand_s", 0.0)),
        "selection": timing.get("filter_s", 0.0) + timing.get("pairs_s", 0.0) + timing.get("read_s", 0.0),
        "encoding": timing.get("cache_s", 0.0),
        "optimisation": float(train.get("step_s", 0.0)) * int(train.get("steps", 0)),
    }
    return {k: round(float(v), 3) for k, v in stages.items()}


def _headline(results: dict[str, Any]) -> dict[str, Any]:
    m = results["metrics"][results.get("headline", "overall")]
    return {k: m[k] for k in ("value", "ci_low", "ci_high", "n") if k in m}


def _delta(baseline: Cell | None, cell: Cell) -> dict[str, Any] | None:
    from craft_bench.report.compare import compare_records
    from craft_bench.report.tables import load_records

    if baseline is None or baseline is cell or baseline.results is None:
        return None
    comps = compare_records(baseline.results, load_records(baseline.run_dir), load_records(cell.run_dir), cell.seed)
    head = next((c for c in comps if c.metric == baseline.results.get("headline", "overall")), None)
    if head is None:
        return None
    return {
        "delta": head.delta,
        "ci_low": head.ci_low,
        "ci_high": head.ci_high,
        "p_value": head.p_value,
        "verdict": head.verdict,
        "n_prompts": head.n_prompts,
    }


def _cell_dict(cell: Cell, baseline: Cell | None, folder: Path) -> dict[str, Any]:
    import os

    res = cell.results or {}
    train = res.get("train")
    log_path = (
        cell.run_dir.parents[2] / "checkpoints" / train["checkpoint"] / "train_log.jsonl"
        if train and train.get("checkpoint")
        else None
    )
    return {
        "method": cell.method,
        "budget": cell.budget,
        "seed": cell.seed,
        "run": os.path.relpath(cell.run_dir, folder) if cell.run_dir else None,
        "spec_hash": res.get("spec_hash"),
        "headline": _headline(res),
        "delta_vs_vanilla": _delta(baseline, cell),
        "samples_used": (train or {}).get("samples_used", 0),
        "steps": (train or {}).get("steps", 0),
        "train_s": training_stages(train),
        "train_wall_s": res.get("timing", {}).get("train_s", 0.0),
        "images_generated": (train or {}).get("images_generated", 0),
        "reward_calls": (train or {}).get("reward_calls", 0),
        "peak_memory_mb": round((train or {}).get("peak_memory_bytes", 0) / 2**20, 1) if train else None,
        "trained_on": (train or {}).get("rewards", []),
        "train_log": os.path.relpath(log_path, folder) if log_path and log_path.is_file() else None,
        "eval_s": round(res.get("timing", {}).get("generate_s", 0.0) + res.get("timing", {}).get("score_s", 0.0), 3),
        "cached": cell.cached,
    }


# --------------------------------------------------------------------------- grid-level tables


def _mean(xs: Sequence[float]) -> float:
    return float(sum(xs) / len(xs))


def compute_to_match(cells: list[dict[str, Any]], reference: str) -> list[dict[str, Any]]:
    """For each trained method and each budget of the reference method: the training seconds the method needs to reach
    the reference's headline there (seed means; the smallest budget of the grid that reaches it), as a ratio."""
    by: dict[tuple[str, Any], list[dict[str, Any]]] = {}
    for c in cells:
        if c["budget"] is not None:
            by.setdefault((c["method"], c["budget"]), []).append(c)

    def summary(group: list[dict[str, Any]]) -> tuple[float, float, float]:
        return (
            _mean([g["headline"]["value"] for g in group]),
            _mean([sum(g["train_s"].values()) for g in group]),
            _mean([g["train_s"].get("optimisation", 0.0) for g in group]),
        )

    rows = []
    methods = list(dict.fromkeys(m for m, _ in by if m != reference))
    for ref_budget in sorted(b for m, b in by if m == reference):
        target, ref_s, ref_opt = summary(by[(reference, ref_budget)])
        for m in methods:
            row = {
                "method": m,
                "reference": reference,
                "budget": ref_budget,
                "reference_headline": target,
                "reference_train_s": round(ref_s, 3),
                "ratio": None,
            }
            budgets = sorted(b for mm, b in by if mm == m)
            hit = next((b for b in budgets if summary(by[(m, b)])[0] >= target), None)
            if hit is None:
                best = max(budgets, key=lambda b: summary(by[(m, b)])[0])
                row["note"] = f"not reached within the grid (best {summary(by[(m, best)])[0]:.4f} at budget {best})"
            else:
                value, secs, opt = summary(by[(m, hit)])
                row.update(
                    matched_budget=hit,
                    headline=value,
                    train_s=round(secs, 3),
                    ratio=round(secs / ref_s, 3) if ref_s else None,
                    optimisation_ratio=round(opt / ref_opt, 3) if ref_opt else None,
                )
            rows.append(row)
    return rows


def seed_spread(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per trained method and budget, the paired deltas against baseline across seeds: mean, standard deviation, range,
    how many seeds found it significantly better / worse, and whether every seed's delta has the mean's sign (a gain
    that flips sign across seeds is not a gain)."""
    import statistics

    by: dict[tuple[str, Any], list[dict[str, Any]]] = {}
    for c in cells:
        if c["budget"] is not None and c.get("delta_vs_vanilla"):
            by.setdefault((c["method"], c["budget"]), []).append(c)
    rows = []
    for (method, budget), group in by.items():
        deltas = [g["delta_vs_vanilla"]["delta"] for g in group]
        mean = statistics.fmean(deltas)
        rows.append(
            {
                "method": method,
                "budget": budget,
                "seeds": sorted(g["seed"] for g in group),
                "mean_delta": mean,
                "sd": statistics.stdev(deltas) if len(deltas) > 1 else None,
                "min": min(deltas),
                "max": max(deltas),
                "better": sum(g["delta_vs_vanilla"]["verdict"] == "better" for g in group),
                "worse": sum(g["delta_vs_vanilla"]["verdict"] == "worse" for g in group),
                "same_sign": all((d > 0) == (mean > 0) and d != 0 for d in deltas),
                "headline_mean": statistics.fmean(g["headline"]["value"] for g in group),
            }
        )
    return rows


def reward_hacking(req: SweepRequest, cells: list[Cell], store: Store, suite_name: str) -> list[dict[str, Any]]:
    """Per trained cell: its paired gain over baseline (same seed, same images) on every reward any cell trained on and
    on the extra judges, marked trained-on or held-out, next to its gain on the suite's headline (held out)."""
    from craft_bench.api import MetricDef
    from craft_bench.report.stats import compare_metric
    from craft_bench.report.tables import load_records
    from craft_bench.train.pool import cached_scores

    done = [c for c in cells if c.results is not None]
    trained = [c for c in done if c.results.get("train")]
    judges = list(dict.fromkeys([r for c in trained for r in c.results["train"].get("rewards", [])] + list(req.judges)))
    baseline = {c.seed: c for c in done if c.method == registry.baseline_method()}
    records = {id(c): load_records(c.run_dir) for c in done}
    scores: dict[int, dict[str, list[float]]] = {}
    if judges:
        from craft_bench.models import resolve_device

        device = resolve_device(req.cells.device)
        for c in done:
            entries = [(r["image"], str(store.image_path(r["image"])), r["prompt"]) for r in records[id(c)]]
            scores[id(c)], _ = cached_scores(entries, judges, store.root, device)
    rows = []
    for c in trained:
        v = baseline.get(c.seed)
        if v is None:
            continue
        mine = c.results["train"].get("rewards", [])
        for judge in judges:
            metric = MetricDef(judge, judge, "score")
            a = [{**r, "score": s} for r, s in zip(records[id(v)], scores[id(v)][judge])]
            b = [{**r, "score": s} for r, s in zip(records[id(c)], scores[id(c)][judge])]
            comp = compare_metric(metric, a, b, seed=c.seed)
            if comp is not None:
                rows.append(
                    {
                        "method": c.method,
                        "budget": c.budget,
                        "seed": c.seed,
                        "judge": judge,
                        "trained_on": judge in mine,
                        "gain": comp.delta,
                        "ci_low": comp.ci_low,
                        "ci_high": comp.ci_high,
                        "p_value": comp.p_value,
                        "verdict": comp.verdict,
                    }
                )
        d = _delta(v, c)
        if d is not None:
            rows.append(
                {
                    "method": c.method,
                    "budget": c.budget,
                    "seed": c.seed,
                    "judge": suite_name,
                    "trained_on": False,
                    "gain": d["delta"],
                    "ci_low": d["ci_low"],
                    "ci_high": d["ci_high"],
                    "p_value": d["p_value"],
                    "verdict": d["verdict"],
                }
            )
    return rows


# --------------------------------------------------------------------------- the files


def _document(req: SweepRequest, cells: list[Cell], store: Store, wall_s: float, final: bool) -> dict[str, Any]:
    from craft_bench.version import versions

    folder = store.root / "sweeps" / sweep_name(req)
    done = [c for c in cells if c.results is not None]
    baseline = {c.seed: c for c in done if c.method == registry.baseline_method()}
    cell_dicts = [_cell_dict(c, baseline.get(c.seed), folder) for c in done]
    first = done[0].results if done else {}
    doc: dict[str, Any] = {
        "schema_version": 1,
        "name": sweep_name(req),
        "suite": req.suite,
        "model": first.get("model", req.cells.model),
        "headline": first.get("headline", "overall"),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "wall_s": round(wall_s, 3),
        "cells_s": round(sum(c["train_wall_s"] + c["eval_s"] for c in cell_dicts), 3),
        "complete": final and len(done) == len(cells),
        "cells_planned": len(cells),
        "methods": list(dict.fromkeys(c.method for c in cells)),
        "budgets": sorted(set(req.budgets)),
        "seeds": req.seeds,
        **(
            {"method_budgets": {registry.methods.resolve_name(m): sorted(v) for m, v in req.method_budgets.items()}}
            if req.method_budgets
            else {}
        ),
        "budget_fields": {c.method: registry.methods.get(c.method).budget_field for c in cells},
        "sets": [f"{k}={v}" for k, v in req.sets],
        "limit": req.cells.limit,
        "reference": reference_of(req),
        "baseline": registry.baseline_method(),
        "versions": versions(),
        "cells": cell_dicts,
    }
    if final:
        doc["compute_to_match"] = compute_to_match(cell_dicts, reference_of(req))
        doc["seed_spread"] = seed_spread(cell_dicts)
        doc["reward_hacking"] = reward_hacking(req, cells, store, req.suite)
    return doc


def _write(folder: Path, doc: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / "sweep.json", doc)
    if not doc["cells"]:
        return
    atomic_write_text(folder / "sweep.csv", to_csv(doc))
    if "compute_to_match" in doc:
        atomic_write_text(folder / "sweep.md", to_markdown(doc))
        from craft_bench.report.sweep import load_sweep, plots

        plots(load_sweep(folder / "sweep.json"), folder, target=folder / "plots")


def to_csv(doc: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(
        [
            "method",
            "budget",
            "seed",
            "headline",
            "ci_low",
            "ci_high",
            "delta",
            "delta_ci_low",
            "delta_ci_high",
            "p_value",
            "verdict",
            "samples_used",
            "steps",
            "train_s",
            *[f"{s}_s" for s in STAGES],
            "images_generated",
            "reward_calls",
            "peak_memory_mb",
            "run",
        ]
    )
    for c in doc["cells"]:
        d = c["delta_vs_vanilla"] or {}
        h = c["headline"]
        w.writerow(
            [
                c["method"],
                c["budget"] if c["budget"] is not None else "",
                c["seed"],
                h["value"],
                h.get("ci_low"),
                h.get("ci_high"),
                d.get("delta", ""),
                d.get("ci_low", ""),
                d.get("ci_high", ""),
                d.get("p_value", ""),
                d.get("verdict", ""),
                c["samples_used"],
                c["steps"],
                round(sum(c["train_s"].values()), 3),
                *[c["train_s"].get(s, "") for s in STAGES],
                c["images_generated"],
                c["reward_calls"],
                c["peak_memory_mb"] if c["peak_memory_mb"] is not None else "",
                c["run"],
            ]
        )
    return buf.getvalue()


def _ci(value: float, lo: Any, hi: Any, signed: bool = False) -> str:
    f = (lambda x: f"{x:+.4f}") if signed else (lambda x: f"{x:.4f}")
    return f"{f(value)} [{f(lo)}, {f(hi)}]" if lo is not None else f(value)


def to_markdown(doc: dict[str, Any]) -> str:
    base = doc.get("baseline", "the baseline")  # sweep.json files before the key: vanilla
    out = [
        f"# sweep {doc['name']}",
        "",
        f"suite {doc['suite']}, model {doc['model']}, seeds {', '.join(map(str, doc['seeds']))}; "
        f"headline `{doc['headline']}` (95% CI); wall time of this invocation {doc['wall_s']:.0f} s, all cells "
        f"(training + evaluation, as each was run) {doc['cells_s']:.0f} s.",
        "",
        f"| method | budget | seed | headline | Δ vs {base} | verdict | samples | train s | "
        + " | ".join(STAGES)
        + " | images gen. | reward calls | peak MB |",
        "|---" * (11 + len(STAGES)) + "|",
    ]
    for c in doc["cells"]:
        d = c["delta_vs_vanilla"]
        h = c["headline"]
        out.append(
            "| "
            + " | ".join(
                [
                    c["method"],
                    "" if c["budget"] is None else str(c["budget"]),
                    str(c["seed"]),
                    _ci(h["value"], h.get("ci_low"), h.get("ci_high")),
                    _ci(d["delta"], d["ci_low"], d["ci_high"], signed=True) if d else "",
                    d["verdict"] if d else "",
                    str(c["samples_used"]),
                    f"{sum(c['train_s'].values()):.1f}",
                    *[f"{c['train_s'].get(s, 0.0):.1f}" if c["train_s"] else "" for s in STAGES],
                    str(c["images_generated"]),
                    str(c["reward_calls"]),
                    "" if c["peak_memory_mb"] is None else f"{c['peak_memory_mb']:.0f}",
                ]
            )
            + " |"
        )
    spread = doc.get("seed_spread") or []
    if any(len(r["seeds"]) > 1 for r in spread):
        out += [
            "",
            "## Across seeds",
            "",
            f"Paired Δ vs {base} over the seeds (each seed: its own training run, candidate pool and "
            "evaluation images, "
            f"paired with {base}'s run at that seed). *same sign*: every seed's Δ has the mean's sign.",
            "",
            "| method | budget | seeds | headline (mean) | Δ mean | Δ sd | Δ min | Δ max | better / worse | "
            "same sign |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in spread:
            sd = "" if r["sd"] is None else f"{r['sd']:.4f}"
            out.append(
                f"| {r['method']} | {r['budget']} | {len(r['seeds'])} | {r['headline_mean']:.4f} | "
                f"{r['mean_delta']:+.4f} | {sd} | "
                f"{r['min']:+.4f} | {r['max']:+.4f} | {r['better']} / {r['worse']} | "
                f"{'yes' if r['same_sign'] else 'no'} |"
            )
    out += [
        "",
        f"## Compute to match {doc['reference']}",
        "",
        "| method | reference budget | reference headline | reference train s | matched at budget | train s "
        "| ratio | optimisation-only ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in doc.get("compute_to_match", []):
        if r.get("ratio") is None and "note" in r:
            out.append(
                f"| {r['method']} | {r['budget']} | {r['reference_headline']:.4f} | {r['reference_train_s']:.1f} | "
                f"{r['note']} | | | |"
            )
        else:
            opt = r.get("optimisation_ratio")
            out.append(
                f"| {r['method']} | {r['budget']} | {r['reference_headline']:.4f} | {r['reference_train_s']:.1f} | "
                f"{r['matched_budget']} | {r['train_s']:.1f} | {r['ratio']}x | {opt}x |"
            )
    judges = list(dict.fromkeys(r["judge"] for r in doc.get("reward_hacking", [])))
    out += [
        "",
        "## Reward hacking",
        "",
        f"Paired gain over {base} (same prompts and seeds) on each judge; *T* = a reward the method trained on, "
        "*H* = held out.",
        "",
        "| method | budget | seed | " + " | ".join(judges) + " |",
        "|---" * (3 + len(judges)) + "|",
    ]
    keyed: dict[tuple[Any, ...], dict[str, dict[str, Any]]] = {}
    for r in doc.get("reward_hacking", []):
        keyed.setdefault((r["method"], r["budget"], r["seed"]), {})[r["judge"]] = r
    for (m, b, s), row in keyed.items():
        cells = []
        for j in judges:
            r = row.get(j)
            cells.append(
                ""
                if r is None
                else f"{_ci(r['gain'], r['ci_low'], r['ci_high'], signed=True)} {'*T*' if r['trained_on'] else '*H*'}"
            )
        out.append(f"| {m} | {'' if b is None else b} | {s} | " + " | ".join(cells) + " |")
    out += [
        "",
        "Plots: `plots/headline-vs-samples.{png,svg}`, `plots/headline-vs-compute.{png,svg}`, "
        "`plots/headline-vs-images.{png,svg}`, `plots/rewards-vs-compute.{png,svg}`, "
        "`plots/delta-by-seed.{png,svg}`, `plots/training-curves.{png,svg}`.",
        "",
    ]
    return "\n".join(out)
