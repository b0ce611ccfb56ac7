"""The mini rule reward (``mini-geneval``) and the mini training-prompt grammar it is trained on: the reward is the
judge with partial credit, and no training prompt asks for what an evaluation prompt asks for."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from craft_bench import registry
from craft_bench.api import Detection
from craft_bench.errors import UserError
from craft_bench.mini import prompts as P
from craft_bench.mini.rule_reward import clause_credits, rule_score
from craft_bench.mini.scenes import render_batch
from craft_bench.suites.geneval_rules import OFFICIAL, select_objects


@pytest.fixture(scope="module")
def reward():
    return registry.rewards.get("mini-geneval").load()


def _det(label: str, box: tuple[float, float, float, float], color: str = "red", score: float = 0.95) -> Detection:
    return Detection(label=label, score=score, box=box, color=color)


def test_clause_credits_by_hand() -> None:
    colour = lambda dets, cls: [d.color for d in dets]  # noqa: E731
    # "three red circles": two red circles and one blue one found -> count 1 - |3-3|/3 = 1, colour 2/3
    meta = P.metadata_for("a photo of three red circles")
    objs = select_objects(
        [
            _det("circle", (0, 0, 10, 10)),
            _det("circle", (20, 0, 30, 10)),
            _det("circle", (40, 0, 50, 10), color="blue"),
        ],
        meta["tag"],
    )
    assert clause_credits(objs, meta, colour, OFFICIAL) == pytest.approx([2 / 3])
    # four circles asked as two: count credit max(0, 1 - 2/2) = 0; one of two: 1/2
    meta2 = P.metadata_for("a photo of two circles")
    four = [_det("circle", (i * 12, 0, i * 12 + 10, 10)) for i in range(4)]
    assert clause_credits(select_objects(four, "counting"), meta2, colour, OFFICIAL) == [0.0]
    assert clause_credits(select_objects(four[:1], "counting"), meta2, colour, OFFICIAL) == [0.5]
    # "a red circle left of a blue square": the square (clause 0) found, the circle found but to its right
    meta3 = P.metadata_for("a photo of a red circle left of a blue square")
    objs3 = select_objects(
        [_det("square", (0, 20, 10, 30), "blue"), _det("circle", (40, 20, 50, 30), "red")], "position"
    )
    assert clause_credits(objs3, meta3, colour, OFFICIAL) == [1.0, 0.0]
    assert rule_score(False, [1.0, 0.0]) == pytest.approx(0.25)
    assert rule_score(True, [0.0]) == 1.0 and rule_score(False, []) == 0.0


def test_rule_reward_on_renders_and_wrong_scenes(reward) -> None:
    """Renders of a prompt's scene score 1; scenes of a changed prompt (one attribute wrong) score < 0.5."""
    rng = np.random.default_rng(3)
    metas = P.training_prompts(48, 11) + P.geneval_prompts(4, 12)
    good = [Image.fromarray(a) for a in render_batch([P.scene_for(m, rng) for m in metas])]
    bad = [Image.fromarray(a) for a in render_batch([P.scene_for(P.mislabel(m, rng), rng) for m in metas])]
    prompts = [m["prompt"] for m in metas]
    s_good, s_bad = reward.score(good, prompts), reward.score(bad, prompts)
    assert float((s_good == 1).float().mean()) >= 0.95
    assert float(s_bad.max()) < 0.5 and float(s_bad.mean()) < 0.3
    assert float((s_good > s_bad).float().mean()) >= 0.95


def test_rule_reward_refuses_foreign_prompts(reward) -> None:
    image = Image.new("RGB", (64, 64), (128, 128, 128))
    with pytest.raises(UserError, match="mini-geneval judges mini GenEval"):
        reward.score([image], ["a cat on a sofa"])


def test_training_prompts_are_disjoint_from_every_evaluation_set() -> None:
    """Order-insensitively: "A and B" equals "B and A", "A left of B" equals "B right of A"."""
    a = P.metadata_for("a photo of a red circle and a blue square")
    b = P.metadata_for("a photo of a blue square and a red circle")
    assert a is not None and b is not None and P.canonical(a) == P.canonical(b)
    left = P.metadata_for("a photo of a red circle left of a blue square")
    right = P.metadata_for("a photo of a blue square right of a red circle")
    assert (
        P.canonical(left)
        == P.canonical(right)
        != P.canonical(P.metadata_for("a photo of a red circle right of a blue square"))
    )
    train = P.training_prompts(400, 4242)  # 100 per family: within every family's space (counting has 150)
    evaluation = [m for s in P.EVAL_GENEVAL_SEEDS for m in P.geneval_prompts(40, s)]
    assert not {P.canonical(m) for m in train} & {P.canonical(m) for m in evaluation}
    assert {m["tag"] for m in train} == set(P.TRAIN_FAMILIES)
    assert len({m["prompt"] for m in train}) == len(train)  # no repeats while a family's space lasts
    # every training prompt parses back to its metadata, and its scenes satisfy it
    for m in train[:40]:
        assert P.metadata_for(m["prompt"]) == m
        P.scene_for(m, np.random.default_rng(0))
