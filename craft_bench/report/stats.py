"""Metrics with uncertainty: stratified cluster bootstrap CIs and paired comparisons.

Every suite metric is declared as a ``MetricDef``: a (stratified) mean of one per-image column. Images
of one prompt are a cluster (they share the prompt, so they are not independent); resampling is done
over prompts within strata, which keeps GenEval's task mix fixed exactly as its "mean of task means"
assumes. A paired comparison of two runs uses only the images both share (same prompt, same seed):
the estimate is then a fixed linear combination of per-prompt sums, so the paired permutation test
(swap the two runs' values within a prompt; ``scipy.stats.permutation_test``) and the bootstrap of the
difference are exact to compute and fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from craft_bench.api import MetricDef

N_RESAMPLES = 2000
CONFIDENCE = 0.95
ALPHA = 0.05


@dataclass
class Clusters:
    """Per-prompt sums and counts of one metric column, with each prompt's stratum."""

    ids: list[str]
    sums: np.ndarray  # [C]
    counts: np.ndarray  # [C]
    strata: np.ndarray  # [C] int codes
    n_records: int


def clusters_for(
    metric: MetricDef, records: Sequence[dict[str, Any]], only: set[tuple[str, int]] | None = None
) -> Clusters:
    """Group records by prompt (``item_id``); ``only`` restricts to (item_id, seed) pairs."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    alls: dict[str, bool] = {}
    anys: dict[str, bool] = {}
    stratum_of: dict[str, str] = {}
    n = 0
    for r in records:
        if metric.where_stratum is not None and r.get("stratum") != metric.where_stratum:
            continue
        if any(r.get(col) != want for col, want in metric.where):
            continue
        if only is not None and (r["item_id"], r["seed"]) not in only:
            continue
        value = r.get(metric.column)
        if value is None:
            continue
        cid = r["item_id"]
        sums[cid] = sums.get(cid, 0.0) + float(value)
        counts[cid] = counts.get(cid, 0) + 1
        alls[cid] = alls.get(cid, True) and bool(value)
        anys[cid] = anys.get(cid, False) or bool(value)
        stratum_of[cid] = r.get("stratum", "") if metric.stratify else ""
        n += 1
    ids = sorted(sums)
    if metric.per_prompt in ("all", "any"):
        flags = alls if metric.per_prompt == "all" else anys
        s = np.array([1.0 if flags[c] else 0.0 for c in ids])
        k = np.ones(len(ids))
    elif metric.per_prompt != "mean":
        raise ValueError(
            f"metric '{metric.name}': per_prompt must be 'mean', 'all' or 'any', not '{metric.per_prompt}'"
        )
    else:
        s = np.array([sums[c] for c in ids], dtype=float)
        k = np.array([counts[c] for c in ids], dtype=float)
    names = sorted(set(stratum_of.values()))
    codes = np.array([names.index(stratum_of[c]) for c in ids], dtype=int)
    return Clusters(ids, s, k, codes, n)


def _estimate(sums: np.ndarray, counts: np.ndarray, strata: np.ndarray, scale: float) -> np.ndarray:
    """Mean over strata of (sum / count within stratum). Works on [..., C] arrays."""
    values = []
    for h in np.unique(strata):
        m = strata == h
        values.append(sums[..., m].sum(-1) / counts[..., m].sum(-1))
    return scale * np.mean(values, axis=0)


def _stratified_draws(strata: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """[B, C] indices: each stratum's clusters resampled with replacement within the stratum."""
    idx = np.empty((n_resamples, len(strata)), dtype=int)
    for h in np.unique(strata):
        members = np.flatnonzero(strata == h)
        idx[:, members] = rng.choice(members, size=(n_resamples, len(members)), replace=True)
    return idx


@dataclass
class MetricValue:
    value: float
    ci_low: float
    ci_high: float
    n: int
    p_value: float | None = None  # sign test against ``MetricDef.sign_test_null``, where declared

    def as_dict(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {"value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high, "n": self.n}
        if self.p_value is not None:
            out["p_value"] = self.p_value
        return out


def sign_test(c: Clusters, null: float) -> float:
    """Two-sided sign test over prompts: each prompt's mean is above or below ``null`` (equal ones are
    dropped, the usual treatment of ties); exact binomial p-value, 1.0 when every prompt ties."""
    from scipy import stats as sstats

    means = c.sums / c.counts
    above, below = int(np.sum(means > null)), int(np.sum(means < null))
    if above + below == 0:
        return 1.0
    return float(sstats.binomtest(above, above + below, 0.5).pvalue)


def _percentile_ci(samples: np.ndarray) -> tuple[float, float]:
    lo, hi = np.quantile(samples, [(1 - CONFIDENCE) / 2, 1 - (1 - CONFIDENCE) / 2])
    return float(lo), float(hi)


def summarize(metric: MetricDef, records: Sequence[dict[str, Any]], seed: int = 0) -> MetricValue | None:
    """The metric's value with a percentile stratified-cluster-bootstrap CI (seeded)."""
    c = clusters_for(metric, records)
    if not c.ids:
        return None
    value = float(_estimate(c.sums, c.counts, c.strata, metric.scale))
    p = sign_test(c, metric.sign_test_null) if metric.sign_test_null is not None else None
    if len(c.ids) < 2:
        return MetricValue(value, value, value, c.n_records, p)
    rng = np.random.default_rng([seed, 0xB007])
    idx = _stratified_draws(c.strata, N_RESAMPLES, rng)
    boot = _estimate(c.sums[idx], c.counts[idx], c.strata, metric.scale)
    lo, hi = _percentile_ci(boot)
    return MetricValue(value, lo, hi, c.n_records, p)


@dataclass
class Comparison:
    metric: str
    display_name: str
    a: float
    b: float
    delta: float  # b - a
    ci_low: float
    ci_high: float
    p_value: float
    n_pairs: int  # shared images
    n_prompts: int
    verdict: str  # "better" | "worse" | "no significant difference" (b relative to a)
    higher_is_better: bool

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def compare_metric(
    metric: MetricDef, records_a: Sequence[dict[str, Any]], records_b: Sequence[dict[str, Any]], seed: int = 0
) -> Comparison | None:
    """Paired comparison of B against A over the (prompt, seed) images both runs scored."""
    from scipy import stats as sstats

    shared = {(r["item_id"], r["seed"]) for r in records_a} & {(r["item_id"], r["seed"]) for r in records_b}
    ca = clusters_for(metric, records_a, only=shared)
    cb = clusters_for(metric, records_b, only=shared)
    if not ca.ids or ca.ids != cb.ids:
        return None
    assert np.array_equal(ca.counts, cb.counts)
    a = float(_estimate(ca.sums, ca.counts, ca.strata, metric.scale))
    b = float(_estimate(cb.sums, cb.counts, cb.strata, metric.scale))
    delta = b - a
    n_prompts = len(ca.ids)
    if n_prompts < 2:
        return Comparison(
            metric.name,
            metric.display_name,
            a,
            b,
            delta,
            delta,
            delta,
            1.0,
            ca.n_records,
            n_prompts,
            "no significant difference",
            metric.higher_is_better,
        )

    rng = np.random.default_rng([seed, 0xC0DE])
    idx = _stratified_draws(ca.strata, N_RESAMPLES, rng)
    boot = _estimate(cb.sums[idx], cb.counts[idx], ca.strata, metric.scale) - _estimate(
        ca.sums[idx], ca.counts[idx], ca.strata, metric.scale
    )
    lo, hi = _percentile_ci(boot)

    # With the shared images fixed, the estimate is sum_c w_c * sum_c(x): a linear statistic whose
    # paired permutation distribution scipy computes by swapping A and B within prompts.
    weights = np.zeros(n_prompts)
    strata = np.unique(ca.strata)
    for h in strata:
        m = ca.strata == h
        weights[m] = metric.scale / (len(strata) * ca.counts[m].sum())

    def statistic(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.sum(weights * (x - y), axis=axis)

    if np.allclose(ca.sums, cb.sums):
        p = 1.0
    else:
        res = sstats.permutation_test(
            (cb.sums, ca.sums),
            statistic,
            permutation_type="samples",
            vectorized=True,
            n_resamples=min(N_RESAMPLES * 5, 2**n_prompts),
            alternative="two-sided",
            random_state=np.random.default_rng([seed, 0x7E57]),
        )
        p = float(res.pvalue)
    significant = p < ALPHA and (lo > 0 or hi < 0)
    if not significant:
        verdict = "no significant difference"
    else:
        verdict = "better" if (delta > 0) == metric.higher_is_better else "worse"
    return Comparison(
        metric.name,
        metric.display_name,
        a,
        b,
        delta,
        lo,
        hi,
        p,
        ca.n_records,
        n_prompts,
        verdict,
        metric.higher_is_better,
    )
