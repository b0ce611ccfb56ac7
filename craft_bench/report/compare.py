"""Paired comparison of two finished runs: `craft-bench compare A B`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from craft_bench.api import MetricDef
from craft_bench.errors import UserError
from craft_bench.report.stats import Comparison, compare_metric
from craft_bench.report.tables import load_records, load_results


def metric_def_from_dict(d: dict[str, Any]) -> MetricDef:
    """A MetricDef read back from results.json (JSON turned its ``where`` pairs into lists)."""
    return MetricDef(**{**d, "where": tuple(tuple(pair) for pair in d.get("where", ()))})


def compare_runs(
    path_a: str | Path, path_b: str | Path, seed: int = 0
) -> tuple[dict[str, Any], dict[str, Any], list[Comparison]]:
    a, dir_a = load_results(path_a)
    b, dir_b = load_results(path_b)
    if a["suite"] != b["suite"]:
        raise UserError(f"cannot compare runs of different suites ('{a['suite']}' vs '{b['suite']}')")
    comps = compare_records(a, load_records(dir_a), load_records(dir_b), seed)
    if not comps:
        raise UserError(
            "the two runs share no scored images (same prompt, same seed); run both with the same suite, "
            "prompts and --seed"
        )
    return a, b, comps


def compare_records(
    a: dict[str, Any], recs_a: list[dict[str, Any]], recs_b: list[dict[str, Any]], seed: int = 0
) -> list[Comparison]:
    """Every metric of A's suite compared over the shared images, headline first; [] if none are shared."""
    comps = []
    for d in a.get("metric_defs", []):
        try:
            m = metric_def_from_dict(d)
        except TypeError as exc:
            raise UserError(
                f"run {a.get('spec_hash', '?')[:8]}: its metric '{d.get('name')}' was written by another "
                f"craft-bench version ({exc}); upgrade craft-bench"
            ) from None
        c = compare_metric(m, recs_a, recs_b, seed=seed)
        if c is not None:
            comps.append(c)
    head = a.get("headline", "overall")
    comps.sort(key=lambda c: c.metric != head)
    return comps


def headline_regressed(a: dict[str, Any], comps: list[Comparison]) -> bool:
    head = a.get("headline", "overall")
    return any(c.metric == head and c.verdict == "worse" for c in comps)
