"""The regression gate catches a broken method: a test-only variant registered through
CRAFT_BENCH_PLUGINS=toy_plugins (as a user's plug-in would be) trains on the same pool with the same settings and is
significantly worse on GenEval-mini, so `craft-bench compare --fail-on-regression` exits 1; a run against itself
passes.

- CRAFT with its filter inverted (it keeps the candidates the rewards like least). Candidates at the sampler's
  guidance 5 (not mini's default 3): they differ more within a group, so keeping the worst does visible damage in
  60 steps (measured: -0.125 [-0.225, -0.025]; at guidance 3 the same settings gave -0.050
  [-0.133, +0.042], which the gate rightly does not call a regression).
- Diffusion-DPO with the sign of its logit flipped (it learns to prefer the rejected image). A small pool (24
  prompts, no expansion, scored by mini-clip, the learned reward that agrees best with people on mini images) and a rate
  high enough that 40 steps move the model; both variants end below vanilla at this rate, the flipped one collapses
  (measured: 0.267 vs 0.083 on 60 prompts x 2, p = 0.0006), candidates at guidance 5 as when that was measured.
- GRPO with its advantages' sign flipped (it learns to make what its reward dislikes), the rule reward mini-geneval,
  256 images (8 iterations of 4 prompts x 8), no KL term (measured: 0.542 vs 0.267, -0.275 [-0.383, -0.167],
  p = 0.0004).

All three train on 24 GenEval-grammar prompts (prompt seed 4242, the pool of pool version 1; a regression gate needs no
held-out training prompts): on the training grammar's prompts (pool version 2), 24 prompts move the mini model too
little at this scale for either broken variant to show (measured: craft-inverted +0.017 [-0.083, +0.117] with the
rule reward, diff-dpo-flipped better than diff-dpo at this rate).
"""

import json

import pytest

COMMON = [
    "--limit",
    "60",
    "--set",
    "suite.images_per_prompt=2",
    "--set",
    "method.pool_size=24",
    "--set",
    "method.lr=3e-4",
    "--set",
    "method.guidance=5",
    "--no-progress",
]
CRAFT = ["--set", "method.budget=24", "--set", "method.steps=60", "--set", "method.batch_size=16"]
GRPO = [
    "--set",
    "method.rewards=mini-geneval",
    "--set",
    "method.kl_beta=0",
    "--set",
    "method.images=256",
    "--set",
    "method.prompts_per_iter=4",
    "--set",
    "method.group_size=8",
    "--set",
    "method.inner_steps=1",
]
DPO = [
    "--set",
    "method.pairs=24",
    "--set",
    "method.expansion=none",
    "--set",
    "method.rewards=mini-clip",
    "--set",
    "method.steps=40",
    "--set",
    "method.batch_size=8",
]


def gate_pool(path):
    """The 24 GenEval-grammar prompts (4 per task, prompt seed 4242, round-robin over tasks) as a pool file."""
    from craft_bench.mini.prompts import TASKS, geneval_prompts

    lines = geneval_prompts(4, 4242)
    chosen = [ln for i in range(4) for t in TASKS for ln in [[x for x in lines if x["tag"] == t][i]]]
    path.write_text("".join(json.dumps(ln) + "\n" for ln in chosen))
    return str(path)


@pytest.mark.parametrize(
    "good,broken,settings",
    [("craft", "craft-inverted", CRAFT), ("diff-dpo", "diff-dpo-flipped", DPO), ("grpo", "grpo-flipped", GRPO)],
)
def test_a_broken_variant_is_caught_by_the_regression_gate(cli, tmp_path, good, broken, settings):
    out = str(tmp_path / "res")
    pool = ["--set", f"method.pool={gate_pool(tmp_path / 'pool.jsonl')}"]
    folders = []
    for method in (good, broken):
        proc = cli("run", "--method", method, "--suite", "geneval", "--out", out, *COMMON, *settings, *pool)
        folders.append(proc.stdout.strip().splitlines()[-1].removeprefix("run folder: "))
    gate = cli("compare", *folders, "--fail-on-regression", check=False)
    assert gate.returncode == 1, gate.stdout + gate.stderr
    assert "significantly worse" in gate.stderr
    assert cli("compare", folders[0], folders[0], "--fail-on-regression", check=False).returncode == 0
