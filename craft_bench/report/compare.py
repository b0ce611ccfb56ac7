"""Paired comparison of two finished runs: `craft-bench compare A B`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from craft_bench.api import MetricDef
from craft_bench.errors import UserError
from craft_bench.report.stats import Comparison, compare_metric
from craft_bench.report.tables import load_records, load_results


def compare_runs(path_a: str | Path, path_b: str | Path, seed: int = 0) -> tuple[dict[str, Any], dict[str, Any], list[Comparison]]:
    a, dir_a = load_results(path_a)
    b, dir_b = load_results(path_b)
    if a["suite"] != b["suite"]:
        raise UserError(f"cannot compare runs of different suites ('{a['suite']}' vs '{b['suite']}')")
    recs_a, recs_b = load_records(dir_a), load_records(dir_b)
    defs = [MetricDef(**d) for d in a.get("metric_defs", [])]
    comps = []
    for m in defs:
        c = compare_metric(m, recs_a, recs_b, seed=seed)
        if c is not None:
            comps.append(c)
    if not comps:
        raise UserError("the two runs share no scored images (same prompt, same seed); run both with the same suite, prompts and --seed")
    head = a.get("headline", "overall")
    comps.sort(key=lambda c: c.metric != head)
    return a, b, comps


def headline_regressed(a: dict[str, Any], comps: list[Comparison]) -> bool:
    head = a.get("headline", "overall")
    return any(c.metric == head and c.verdict == "worse" for c in comps)
