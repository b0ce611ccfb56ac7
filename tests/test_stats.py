"""Bootstrap CIs and paired comparisons on synthetic records with known answers."""

from __future__ import annotations

import numpy as np

from craft_bench.api import MetricDef
from craft_bench.report.stats import compare_metric, summarize


def _records(values_by_stratum: dict[str, list[list[float]]]) -> list[dict]:
    recs = []
    for stratum, prompts in values_by_stratum.items():
        for p, vals in enumerate(prompts):
            for i, v in enumerate(vals):
                recs.append({"item_id": f"{stratum}-{p}", "seed": 1000 + i, "stratum": stratum, "x": v})
    return recs


def test_stratified_mean_of_means_and_ci():
    # stratum a: 2 prompts (mean 1.0), stratum b: 4 prompts (mean 0.0): mean of means 0.5, pooled 1/3
    recs = _records({"a": [[1, 1], [1, 1]], "b": [[0, 0]] * 4})
    strat = summarize(MetricDef("overall", "O", "x", stratify=True), recs)
    pooled = summarize(MetricDef("pooled", "P", "x"), recs)
    assert strat.value == 0.5 and abs(pooled.value - 1 / 3) < 1e-12
    assert strat.ci_low == strat.ci_high == 0.5  # strata fixed: no within-stratum variation
    assert pooled.ci_low < pooled.value < pooled.ci_high and pooled.n == 12
    only_a = summarize(MetricDef("a", "A", "x", where_stratum="a"), recs)
    assert only_a.value == 1.0 and only_a.n == 4
    allp = summarize(MetricDef("all", "All", "x", per_prompt="all"), _records({"s": [[1, 1], [1, 0], [0, 0], [1, 1]]}))
    assert allp.value == 0.5
    anyp = summarize(MetricDef("any", "Any", "x", per_prompt="any"), _records({"s": [[1, 1], [1, 0], [0, 0], [1, 1]]}))
    assert anyp.value == 0.75


def test_ci_covers_truth_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    small = _records({"s": [[v] for v in rng.normal(1.0, 1.0, 30)]})
    big = _records({"s": [[v] for v in rng.normal(1.0, 1.0, 600)]})
    m = MetricDef("overall", "O", "x")
    s, b = summarize(m, small), summarize(m, big)
    assert s.ci_low < 1.0 < s.ci_high and b.ci_low < 1.0 < b.ci_high
    assert (b.ci_high - b.ci_low) < 0.5 * (s.ci_high - s.ci_low)
    assert summarize(m, small, seed=3).ci_low == summarize(m, small, seed=3).ci_low  # seeded


def test_paired_compare_detects_shift_and_respects_direction():
    rng = np.random.default_rng(1)
    base = rng.normal(0, 1, (40, 2))
    a = _records({"s": base.tolist()})
    b = _records({"s": (base + 0.3 + rng.normal(0, 0.05, base.shape)).tolist()})
    up = compare_metric(MetricDef("overall", "O", "x"), a, b)
    assert up.verdict == "better" and up.p_value < 0.01 and up.ci_low > 0 and abs(up.delta - 0.3) < 0.05
    assert up.n_pairs == 80 and up.n_prompts == 40
    down = compare_metric(MetricDef("overall", "O", "x", higher_is_better=False), a, b)
    assert down.verdict == "worse"
    noise = _records({"s": (base + rng.normal(0, 0.05, base.shape)).tolist()})
    flat = compare_metric(MetricDef("overall", "O", "x"), a, noise)
    assert flat.verdict == "no significant difference" and flat.p_value > 0.05


def test_paired_compare_uses_only_shared_images():
    a = _records({"s": [[1, 1, 1]] * 8})
    b = _records({"s": [[0, 0]] * 8})  # B has 2 of the 3 seeds per prompt
    c = compare_metric(MetricDef("overall", "O", "x"), a, b)
    assert c.n_pairs == 16 and c.a == 1.0 and c.b == 0.0 and c.verdict == "worse"


def test_exact_permutation_test_with_few_prompts_is_honest():
    # 5 prompts can never reach p < 0.05 two-sided (minimum 2/32): the verdict must say so.
    c = compare_metric(MetricDef("overall", "O", "x"), _records({"s": [[1]] * 5}), _records({"s": [[0]] * 5}))
    assert abs(c.p_value - 0.0625) < 1e-9 and c.verdict == "no significant difference"


def test_where_restricts_to_records_with_those_column_values():
    recs = [
        {"item_id": f"p{i}", "seed": 0, "stratum": "s", "x": float(i), "challenge": "Basic" if i < 3 else "Complex"}
        for i in range(5)
    ]
    basic = summarize(MetricDef("b", "B", "x", where=(("challenge", "Basic"),)), recs)
    assert basic.value == 1.0 and basic.n == 3
    assert summarize(MetricDef("none", "N", "x", where=(("challenge", "Quantity"),)), recs) is None


def test_sign_test_over_prompts_drops_ties():
    from scipy.stats import binomtest

    # per-prompt mean wins: 8 above 1/2, 2 below, 5 exactly 1/2 (a tie, or a win and a loss)
    prompts = [[1.0]] * 8 + [[0.0]] * 2 + [[0.5]] * 3 + [[1.0, 0.0]] * 2
    mv = summarize(MetricDef("overall", "W", "x", sign_test_null=0.5), _records({"s": prompts}))
    assert mv.p_value == binomtest(8, 10, 0.5).pvalue
    assert "p_value" in mv.as_dict()
    assert summarize(MetricDef("overall", "W", "x"), _records({"s": prompts})).as_dict().keys() == {
        "value",
        "ci_low",
        "ci_high",
        "n",
    }
    ties = summarize(MetricDef("overall", "W", "x", sign_test_null=0.5), _records({"s": [[0.5]] * 6}))
    assert ties.p_value == 1.0 and ties.value == ties.ci_low == ties.ci_high == 0.5
