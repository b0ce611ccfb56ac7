"""The mini world's defaults: what ``auto`` means for ``--model mini`` and for every folder the mini recipes write.

Its own prompt sets (the grammar's GenEval-format and Parti-style prompts; scenes as ControlNet conditions; the
grammar as the training pools' prompts), the ``mini`` detector, the mini rewards (mini-clip in HPS's and PickScore's
role, mini-aes in LAION AES's; mini-clip judges Parti), the shipped ControlNets and the mini depth estimator, the
grammar's paraphrases for template expansion, candidates at guidance 3 and the training preset every method shares
here. ``craft_bench.world`` explains worlds; this file is all that is particular to this one.
"""

from __future__ import annotations

from craft_bench.world import World

# Guidance of pool candidates. The ablation (docs/methods.md) found that training on candidates drawn at the sampler's
# 5.0 and then sampling at 5.0 again compounds guidance (more objects than asked, colours collapsing: GenEval-mini
# -0.035, p = 0.005), while candidates at 3.0 did not harm.
CANDIDATE_GUIDANCE = 3.0

# Training settings of every method on mini: CRAFT's, chosen by the ablation in docs/methods.md (full UNet, 100 steps at
# batch 32, AdamW 2e-5). The DPO family trains under the same conditions, each at its paper's rate (its own preset).
TRAIN_PRESET = {"lr": 2e-5, "steps": 100, "batch_size": 32, "lora_rank": 0}

MINI = World(
    name="mini",
    description="the embedded mini world: its prompt grammar, detector, rewards, ControlNets and training preset",
    prompts="mini",
    detector="mini",
    judge="mini-clip",
    rewards=("mini-clip", "mini-aes"),
    pool_rewards=("mini-clip", "mini-aes"),
    candidate_guidance=CANDIDATE_GUIDANCE,
    paraphrases="craft_bench.mini.prompts:paraphrases",
    controlnet="craft_bench.mini.controlnet:shipped",
    depth_estimator="mini",
    train_preset=TRAIN_PRESET,
)
