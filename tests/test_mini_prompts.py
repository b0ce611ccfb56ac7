"""Mini GenEval prompts: official format and phrasing, seeds, satisfying scenes, paraphrases, training pairs."""

import json
from pathlib import Path

import numpy as np
import pytest

from craft_bench.mini.prompts import (
    RELATIONS,
    TASKS,
    caption_for,
    geneval_phrase,
    geneval_prompts,
    paraphrases,
    parse_prompt,
    read_metadata,
    scene_for,
    task_pool,
    training_pairs,
)
from craft_bench.mini.scenes import SHAPES
from craft_bench.mini.shapes import oracle_detections
from craft_bench.suites.geneval import official_metadata_path
from craft_bench.suites.geneval_rules import evaluate_detections

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "geneval" / "evaluation_metadata.jsonl"


def _official() -> list[dict]:
    return read_metadata(official_metadata_path())


def test_shipped_official_metadata_matches_the_shared_copy():
    if not SHARED.exists():
        pytest.skip("../shared/data/geneval not present")
    assert official_metadata_path().read_bytes() == SHARED.read_bytes()
    assert len(_official()) == 553


def test_phrasing_rules_reproduce_every_official_prompt():
    for line in _official():
        assert geneval_phrase(line["tag"], line["include"]) == line["prompt"]


def test_mini_lines_have_the_official_structure(tmp_path):
    official = _official()
    mini = geneval_prompts(20, seed=1000)
    path = tmp_path / "mini.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in mini))
    assert read_metadata(path) == mini  # the same reader as the official file
    shapes = {}
    for line in official:
        key = (tuple(line), tuple(tuple(c) for c in line["include"]), tuple(tuple(c) for c in line.get("exclude", [])))
        shapes.setdefault(line["tag"], set()).add(key)
    for line in mini:
        key = (tuple(line), tuple(tuple(c) for c in line["include"]), tuple(tuple(c) for c in line.get("exclude", [])))
        assert key in shapes[line["tag"]], line  # same keys, in the same order, per task
        assert line["prompt"] == geneval_phrase(line["tag"], line["include"])
    assert {line["tag"] for line in mini} == set(TASKS)


def test_official_and_mini_position_and_counting_conventions():
    pos = [line for line in geneval_prompts(30, seed=3) if line["tag"] == "position"]
    for line in pos:
        target, mover = line["include"]
        assert mover["position"][0] in RELATIONS and mover["position"][1] == 0
        assert line["prompt"] == f"a photo of {_a(mover['class'])} {mover['position'][0]} {_a(target['class'])}"
    for line in task_pool("counting"):
        n = line["include"][0]["count"]
        assert 2 <= n <= 4 and line["exclude"] == [{"class": line["include"][0]["class"], "count": n + 1}]
    assert parse_prompt("a photo of three crosses")["include"] == [{"class": "cross", "count": 3}]
    assert parse_prompt("a photo of an orange circle")["include"][0]["color"] == "orange"
    assert parse_prompt("a cat") is None


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def test_prompt_seed_draws_apart_and_exclude_removes():
    a, b = geneval_prompts(40, seed=1000), geneval_prompts(40, seed=1)
    assert a == geneval_prompts(40, seed=1000)
    assert len(a) == 6 * 40
    pa = {line["prompt"] for line in a if line["tag"] == "color_attr"}
    pb = {line["prompt"] for line in b if line["tag"] == "color_attr"}
    assert len(pa & pb) <= 4  # 1800 possible color_attr prompts
    assert geneval_prompts(10, seed=1000) == [l for t in TASKS for l in [x for x in a if x["tag"] == t][:10]]  # noqa: E741
    held_out = {line["prompt"] for line in a}
    train = geneval_prompts(40, seed=1, exclude=held_out)
    assert not held_out & {line["prompt"] for line in train}
    assert {line["tag"] for line in train} == {"position", "color_attr", "colors"}  # the small tasks are used up
    single = [line["prompt"] for line in a if line["tag"] == "single_object"]
    assert sorted(set(single)) == sorted(f"a photo of {_a(s)}" for s in SHAPES)
    assert max(single.count(p) for p in single) - min(single.count(p) for p in single) <= 1  # balanced cycles


def test_scene_for_satisfies_every_task():
    rng = np.random.default_rng(0)
    for line in geneval_prompts(15, seed=11):
        scene = scene_for(line, rng)
        correct, reason, _ = evaluate_detections(oracle_detections(scene), line)
        assert correct, (line["prompt"], reason, scene)
        assert len(scene.objects) == sum(c["count"] for c in line["include"])
    with pytest.raises(ValueError, match="not a mini-world prompt"):
        scene_for(_official()[0], rng)


def test_paraphrases():
    for meta in [geneval_prompts(3, seed=5, tasks=(t,))[0] for t in TASKS]:
        texts = paraphrases(meta)
        assert texts[0] == meta["prompt"] and len(set(texts)) == len(texts) >= 9
        for text in texts:
            for clause in meta["include"]:
                assert clause["class"] in text
                if "color" in clause:
                    assert clause["color"] in text
        assert paraphrases(meta["prompt"]) == texts  # from the text alone
    left = paraphrases("a photo of a circle left of a square")
    assert "a circle to the left of a square" in left and "a square with a circle on its left" in left
    assert not any("right" in t or "above" in t or "below" in t for t in left)
    free = paraphrases("a watercolor of a fox")
    assert free[0] == "a watercolor of a fox" and len(free) >= 9 and all("fox" in t for t in free)


def test_captions_and_training_pairs():
    rng = np.random.default_rng(4)
    pairs = training_pairs(400, seed=9)
    assert pairs == training_pairs(400, seed=9) and pairs != training_pairs(400, seed=10)
    texts = [t for _, t in pairs]
    assert len(set(texts)) > 200
    tags = {parse_prompt(t)["tag"] for t in texts if parse_prompt(t)}
    assert tags == set(TASKS)  # the exact GenEval prompts of every task are in the mix
    assert sum(parse_prompt(t) is None for t in texts) > 150  # and paraphrases / free captions
    for scene, text in pairs[:100]:
        assert 1 <= len(scene.objects) <= 4 and text
        for obj in scene.objects:
            assert obj.shape in text  # every object is described
    scene = pairs[0][0]
    assert caption_for(scene, np.random.default_rng(1)) == caption_for(scene, np.random.default_rng(1))
    assert all(any(o.shape in c for o in scene.objects) for c in [caption_for(scene, rng) for _ in range(20)])


def test_parti_style_set_has_its_challenges_and_categories():
    from collections import Counter

    from craft_bench.mini.prompts import PARTI_CHALLENGES, parse_prompt, parti_category, parti_prompts

    rows = parti_prompts(30, 2000)
    assert rows == parti_prompts(30, 2000) and rows != parti_prompts(30, 2001)
    assert Counter(r["challenge"] for r in rows) == {c: 30 for c in PARTI_CHALLENGES}
    assert [r["challenge"] for r in rows[:8]] == list(PARTI_CHALLENGES)  # interleaved: --limit mixes challenges
    assert {r["category"] for r in rows} == {"Circles", "Squares", "Triangles", "Diamonds", "Crosses"}
    assert all(r["category"] == parti_category(r["prompt"]) for r in rows)
    by = {c: [r["prompt"] for r in rows if r["challenge"] == c] for c in PARTI_CHALLENGES}
    assert len(set(by["Basic"])) == 10  # its whole space (5 shapes, with or without "a photo of"), then repeats
    assert all(len(set(by[c])) == 30 for c in ("Fine-grained Detail", "Properties & Positioning", "Complex"))
    assert all(parse_prompt(p)["tag"] == "color_attr" for p in by["Fine-grained Detail"])
    assert all(" and " in p for p in by["Complex"])  # 3-4 objects in at least two groups
    assert all(parse_prompt(p) is None for p in by["Linguistic Structures"])  # never the plain GenEval phrasing
    assert parti_category("two big crosses and a circle") == "Crosses" and parti_category("nothing") == "Other"
