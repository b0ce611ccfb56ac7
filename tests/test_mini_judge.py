"""The mini GenEval judge against people: the committed judge set (generated images, two labellers' passes)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from craft_bench.mini.eval_judge import DEFAULT_SET, evaluate, read_set
from craft_bench.mini.prompts import TASKS

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(
    not (DEFAULT_SET / "labels.jsonl").is_file(), reason="data/mini-judge not in this checkout"
)


@pytest.fixture(scope="module")
def judged():
    results, per_image = evaluate(["mini", "mini-v1"], DEFAULT_SET, None, "labels.jsonl")
    return results, per_image


def test_the_set_is_what_its_readme_says():
    rows = read_set(DEFAULT_SET, "labels.jsonl")
    assert len(rows) >= 1500 and {r["split"] for r in rows} >= {"dev", "test", "holdout", "trained", "trained2"}
    assert len({r["image_key"] for r in rows}) == len(rows)  # no image twice
    for r in rows:
        assert (DEFAULT_SET / "images" / f"{r['id']}.png").is_file()
        labels = json.loads(json.dumps(r))
        assert labels["label"] in (0, 1, None)
    labelled = [r for r in rows if r["label"] is not None]
    assert len(labelled) >= 600
    for task in TASKS:  # every task has both verdicts among the labelled images
        assert {r["label"] for r in labelled if r["task"] == task} == {0, 1}


def test_the_mini_detector_agrees_with_people(judged):
    """Issue 10's acceptance: >= 95% agreement overall and per task, false negatives and false positives each
    <= 5% of their class (measured: 0.984 overall over 1494 consensus-labelled images)."""
    mini = judged[0]["mini"]
    assert mini["all"].rate >= 0.95
    for task in TASKS:
        assert mini[task].rate >= 0.95, (task, mini[task].as_dict())
    assert mini["all"].fn_rate <= 0.05 and mini["all"].fp_rate <= 0.05


def test_the_first_detector_did_not(judged):
    """The flatness-judging first detector misses most objects a person sees in counting (the reason for v2)."""
    v1, mini = judged[0]["mini-v1"], judged[0]["mini"]
    assert v1["all"].rate < mini["all"].rate - 0.1
    assert v1["counting"].fn_rate > 0.4


def test_merge_keeps_only_consensus(tmp_path):
    (tmp_path / "passes").mkdir()
    items = [
        {"id": f"x{i}", "split": "dev", "task": "colors", "prompt": "a photo of a red circle", "image_key": str(i)}
        for i in range(4)
    ]
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items))
    a = [1, 0, 1, None]
    b = [1, 0, 0, 1]
    for name, labels in (("a", a), ("b", b)):
        (tmp_path / "passes" / f"{name}.jsonl").write_text(
            "".join(json.dumps({"id": f"x{i}", "label": v, "note": ""}) + "\n" for i, v in enumerate(labels))
        )
    env = {**os.environ, "CRAFT_BENCH_JUDGE_SET": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, str(REPO / "tools" / "judge" / "judgeset.py"), "merge"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    merged = [json.loads(x) for x in (tmp_path / "labels.jsonl").read_text().splitlines()]
    assert [m["label"] for m in merged] == [1, 0, None, None]
    assert "agree on 2/3" in out


def test_mini_clip_auroc_on_the_judge_set():
    from craft_bench.mini.eval_rewards import evaluate as reward_auroc

    result = reward_auroc("judge", split="holdout")
    assert result["images"] == "judge"
    per = result["per_task"]
    assert per["colors"]["auroc"] > 0.8  # mini-clip knows colours (measured 0.97 on all splits)
    assert sum(v["n_correct"] + v["n_incorrect"] for v in per.values()) > 400
