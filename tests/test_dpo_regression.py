"""The regression gate catches a broken Diffusion-DPO: the test-only variant with the sign of its logit flipped (it
learns to prefer the rejected image; registered through CRAFT_BENCH_PLUGINS=toy_plugins, as a user's plug-in would
be) trains on the same pairs with the same settings and is significantly worse on GenEval-mini, so
`craft-bench compare --fail-on-regression` exits 1.

Settings: a small pool (24 prompts, no expansion, scored by mini-clip, the reward that agrees best with people on
mini images) and a rate high enough that 40 steps move the model. Both variants end below vanilla at this rate; the
flipped one collapses (measured: 0.267 vs 0.083 at 40 steps on 60 prompts x 2, p = 0.0006). The candidates are
drawn at the sampler's guidance 5, as when that was measured (mini's pool default is 3)."""

SMALL = ["--limit", "60", "--set", "suite.images_per_prompt=2", "--set", "method.pool_size=24", "--set", "method.pairs=24",
         "--set", "method.expansion=none", "--set", "method.rewards=mini-clip", "--set", "method.steps=40",
         "--set", "method.lr=3e-4", "--set", "method.batch_size=8", "--set", "method.guidance=5", "--no-progress"]


def test_a_flipped_dpo_logit_is_caught_by_the_regression_gate(cli, tmp_path):
    out = str(tmp_path / "res")
    good = cli("run", "--method", "diff-dpo", "--suite", "geneval", "--out", out, *SMALL)
    bad = cli("run", "--method", "diff-dpo-flipped", "--suite", "geneval", "--out", out, *SMALL)
    a = good.stdout.strip().splitlines()[-1].removeprefix("run folder: ")
    b = bad.stdout.strip().splitlines()[-1].removeprefix("run folder: ")
    gate = cli("compare", a, b, "--fail-on-regression", check=False)
    assert gate.returncode == 1, gate.stdout + gate.stderr
    assert "significantly worse" in gate.stderr
    assert cli("compare", a, a, "--fail-on-regression", check=False).returncode == 0
