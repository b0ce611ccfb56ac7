"""The regression gate catches a broken CRAFT: the test-only variant with its filter inverted (it keeps the
candidates the rewards like least; registered through CRAFT_BENCH_PLUGINS=toy_plugins, as a user's plug-in would
be) trains on the same pool with the same settings and is significantly worse on GenEval-mini, so
`craft-bench compare --fail-on-regression` exits 1.

The candidates are drawn at the sampler's guidance 5 (not mini's default 3): its candidates differ more within a
group, so keeping the worst does visible damage in 60 steps (measured: -0.142 [-0.242, -0.042], p = 0.024; at
guidance 3 the same settings gave -0.050 [-0.133, +0.042], which the gate rightly does not call a regression)."""

import pytest

SMALL = ["--limit", "60", "--set", "suite.images_per_prompt=2", "--set", "method.pool_size=24", "--set", "method.budget=24",
         "--set", "method.steps=60", "--set", "method.lr=3e-4", "--set", "method.batch_size=16", "--set", "method.guidance=5", "--no-progress"]


def test_an_inverted_filter_is_caught_by_the_regression_gate(cli, tmp_path):
    out = str(tmp_path / "res")
    good = cli("run", "--method", "craft", "--suite", "geneval", "--out", out, *SMALL)
    bad = cli("run", "--method", "craft-inverted", "--suite", "geneval", "--out", out, *SMALL)
    a = good.stdout.strip().splitlines()[-1].removeprefix("run folder: ")
    b = bad.stdout.strip().splitlines()[-1].removeprefix("run folder: ")
    gate = cli("compare", a, b, "--fail-on-regression", check=False)
    assert gate.returncode == 1, gate.stdout + gate.stderr
    assert "significantly worse" in gate.stderr
    # and the gate passes a run against itself
    assert cli("compare", a, a, "--fail-on-regression", check=False).returncode == 0
