"""GenEval rule engine: every rule and boundary of the official evaluate_images.py decision procedure."""

import numpy as np
import pytest

from craft_bench.api import Detection
from craft_bench.suites.geneval_rules import (
    OFFICIAL,
    Rules,
    compute_iou,
    evaluate,
    evaluate_detections,
    relative_position,
    select_objects,
    summarize,
)


def det(label, score, box=(0, 0, 10, 10), color=None):
    return Detection(label, score, tuple(float(v) for v in box), None, color)


def line(tag, include, exclude=None, prompt="p"):
    out = {"tag": tag, "include": include, "prompt": prompt}
    if exclude is not None:
        out["exclude"] = exclude
    return out


SINGLE = line("single_object", [{"class": "circle", "count": 1}])
TWO = line("two_object", [{"class": "circle", "count": 1}, {"class": "square", "count": 1}])
COUNT3 = line("counting", [{"class": "circle", "count": 3}], [{"class": "circle", "count": 4}])
RED = line("colors", [{"class": "circle", "count": 1, "color": "red"}])
LEFT = line("position", [{"class": "square", "count": 1}, {"class": "circle", "count": 1, "position": ["left of", 0]}])


def verdict(dets, meta, **kw):
    correct, reason, _ = evaluate_detections(dets, meta, **kw)
    return correct, reason


# --------------------------------------------------------------------------- thresholds and selection


def test_confidence_must_exceed_0_3_strictly():
    assert verdict([det("circle", 0.3)], SINGLE) == (False, "expected circle>=1, found 0")
    assert verdict([det("circle", 0.30000001)], SINGLE) == (True, "")


def test_counting_prompts_use_0_9_strictly():
    three = lambda s: [det("circle", s, (20 * i, 0, 20 * i + 10, 10)) for i in range(3)]  # noqa: E731
    assert verdict(three(0.9), COUNT3) == (False, "expected circle>=3, found 0")
    assert verdict(three(0.90001), COUNT3) == (True, "")
    # the same 0.5-confidence objects count for a non-counting prompt
    assert verdict(three(0.5)[:1], SINGLE) == (True, "")


def test_detections_sorted_by_confidence_and_capped_at_16_per_class():
    scores = np.linspace(0.91, 0.99, 17)
    dets = [det("circle", s, (i, 0, i + 5, 5)) for i, s in enumerate(scores)]
    picked = select_objects(dets, "counting")["circle"]
    assert len(picked) == OFFICIAL.max_objects == 16
    assert [d.score for d in picked] == sorted(scores, reverse=True)[:16]
    assert select_objects(dets, "counting", Rules(max_objects=4))["circle"][0].score == pytest.approx(0.99)
    # an exclude clause sees at most the 16 kept detections
    assert verdict(dets, line("counting", [{"class": "circle", "count": 2}], [{"class": "circle", "count": 17}])) == (
        True,
        "",
    )
    assert verdict(dets, line("counting", [{"class": "circle", "count": 2}], [{"class": "circle", "count": 16}])) == (
        False,
        "expected circle<16, found 16",
    )


def test_ties_follow_the_official_reversed_argsort():
    # np.argsort([0.8, 0.8])[::-1] == [1, 0]: of two equally confident objects the later one is first.
    dets = [det("circle", 0.8, color="blue"), det("circle", 0.8, (20, 0, 30, 10), color="red")]
    assert list(np.argsort([0.8, 0.8])[::-1]) == [1, 0]
    assert [d.color for d in select_objects(dets, "colors")["circle"]] == ["red", "blue"]
    assert verdict(dets, RED) == (True, "")
    assert verdict(dets, line("colors", [{"class": "circle", "count": 1, "color": "blue"}])) == (
        False,
        "expected blue circle>=1, found 0 blue; and 1 red",
    )


def test_optional_per_class_nms():
    a, b = det("circle", 0.9, (0, 0, 10, 10)), det("circle", 0.8, (1, 0, 11, 10))
    assert compute_iou(a.box, b.box) == pytest.approx(110 / 132)  # +1-pixel areas: 11*10 / (121 + 121 - 110)
    assert len(select_objects([a, b], "two_object")["circle"]) == 2  # max_overlap 1.0: off, like the default
    assert len(select_objects([a, b], "two_object", Rules(max_overlap=0.5))["circle"]) == 1


# --------------------------------------------------------------------------- includes, colours, excludes


def test_includes_are_anded_and_each_reports():
    assert verdict([det("circle", 0.9), det("square", 0.9, (20, 0, 30, 10))], TWO) == (True, "")
    assert verdict([det("circle", 0.9)], TWO) == (False, "expected square>=1, found 0")
    assert verdict([], TWO) == (False, "expected circle>=1, found 0\nexpected square>=1, found 0")
    # extra objects of other classes do not matter (no exclude clause)
    assert verdict([det("circle", 0.9), det("square", 0.9, (20, 0, 30, 10)), det("cross", 0.99)], TWO)[0]


def test_counting_includes_and_excludes():
    circles = [det("circle", 0.95, (15 * i, 0, 15 * i + 10, 10)) for i in range(5)]
    assert verdict(circles[:2], COUNT3) == (False, "expected circle>=3, found 2")
    assert verdict(circles[:3], COUNT3) == (True, "")
    assert verdict(circles[:4], COUNT3) == (False, "expected circle<4, found 4")
    assert verdict(circles[:5], COUNT3) == (False, "expected circle<4, found 5")
    # low-confidence extras are not counted
    assert verdict(circles[:3] + [det("circle", 0.85, (80, 0, 90, 10))], COUNT3) == (True, "")


def test_colour_is_checked_on_the_top_count_detections():
    dets = [det("circle", 0.9, color="blue"), det("circle", 0.5, (20, 0, 30, 10), color="red")]
    assert verdict(dets, RED) == (False, "expected red circle>=1, found 0 red; and 1 blue")
    dets[0] = det("circle", 0.4, color="blue")
    assert verdict(dets, RED) == (True, "")
    two_red = line("colors", [{"class": "circle", "count": 2, "color": "red"}])
    pair = [det("circle", 0.9, color="red"), det("circle", 0.8, (20, 0, 30, 10), color="green")]
    assert verdict(pair, two_red) == (False, "expected red circle>=2, found 1 red; and 1 red, 1 green")
    # a detector that gives no colour never matches a colour clause
    assert verdict([det("circle", 0.9)], RED) == (False, "expected red circle>=1, found 0 red; and ")


def test_colour_hook_replaces_detector_colours():
    calls = []

    def classify(image, found, classname):
        calls.append((image, len(found), classname))
        return ["red"] * len(found)

    assert verdict([det("circle", 0.9, color="blue")], RED, image="IMG", color_fn=classify) == (True, "")
    assert calls == [("IMG", 1, "circle")]


# --------------------------------------------------------------------------- position


def test_relations_in_all_four_directions():
    centre = (40, 40, 50, 50)
    assert relative_position((10, 40, 20, 50), centre) == ["left of"]
    assert relative_position((70, 40, 80, 50), centre) == ["right of"]
    assert relative_position((40, 10, 50, 20), centre) == ["above"]  # image y grows downwards
    assert relative_position((40, 70, 50, 80), centre) == ["below"]
    assert relative_position((10, 10, 20, 20), centre) == ["left of", "above"]  # a clear diagonal gives both


def test_position_margin_and_half_rule_boundaries():
    # offset (-6, -8), widths 5 + 5 (margin 1.0), heights 40 + 40 (margin 8 cancels dy):
    # dx = -(6 - 1) / 10 = -0.5 exactly, which is NOT "left of" (strict < -0.5).
    b = (10.0, 0.0, 15.0, 40.0)
    assert relative_position((4.0, -8.0, 9.0, 32.0), b) == []
    assert relative_position((3.99, -8.0, 8.99, 32.0), b) == ["left of"]
    # touching boxes: centres 10 apart, margin 0.1 * 20 = 2 -> dx = -0.8
    assert relative_position((0, 0, 10, 10), (10, 0, 20, 10)) == ["left of"]
    # heavy overlap: the margin swallows the offset -> no relation at all
    assert relative_position((0, 0, 10, 10), (1, 0, 11, 10)) == []
    assert relative_position((0, 0, 10, 10), (0, 0, 10, 10)) == []
    # a larger margin option removes a relation that the default keeps
    assert relative_position((0, 0, 10, 10), (12, 0, 22, 10), threshold=0.6) == []


def test_position_clause():
    square = det("square", 0.9, (40, 40, 50, 50))
    assert verdict([square, det("circle", 0.9, (10, 40, 20, 50))], LEFT) == (True, "")
    assert verdict([square, det("circle", 0.9, (70, 40, 80, 50))], LEFT) == (
        False,
        "expected circle left of target, found right of target",
    )
    assert verdict([square, det("circle", 0.9, (41, 40, 51, 50))], LEFT) == (
        False,
        "expected circle left of target, found  target",
    )
    # the most confident circle is the one checked
    dets = [square, det("circle", 0.9, (70, 40, 80, 50)), det("circle", 0.95, (10, 40, 20, 50))]
    assert verdict(dets, LEFT) == (True, "")


def test_position_is_skipped_when_colour_failed():
    meta = line(
        "position",
        [{"class": "square", "count": 1}, {"class": "circle", "count": 1, "color": "red", "position": ["left of", 0]}],
    )
    square = det("square", 0.9, (40, 40, 50, 50))
    wrong_side_blue = det("circle", 0.9, (70, 40, 80, 50), color="blue")
    assert verdict([square, wrong_side_blue], meta) == (False, "expected red circle>=1, found 0 red; and 1 blue")
    wrong_side_red = det("circle", 0.9, (70, 40, 80, 50), color="red")
    assert verdict([square, wrong_side_red], meta) == (False, "expected circle left of target, found right of target")


def test_position_needs_a_matched_target_group():
    meta = line(
        "position",
        [{"class": "square", "count": 1, "color": "red"}, {"class": "circle", "count": 1, "position": ["left of", 0]}],
    )
    dets = [det("square", 0.9, (40, 40, 50, 50), color="blue"), det("circle", 0.9, (10, 40, 20, 50))]
    assert verdict(dets, meta) == (
        False,
        "expected red square>=1, found 0 red; and 1 blue\nno target for circle to be left of",
    )


def test_position_checks_every_object_against_every_target():
    meta = line(
        "position", [{"class": "square", "count": 1}, {"class": "circle", "count": 2, "position": ["left of", 0]}]
    )
    square = det("square", 0.9, (40, 40, 50, 50))
    both_left = [square, det("circle", 0.9, (10, 40, 20, 50)), det("circle", 0.8, (10, 10, 20, 20))]
    assert verdict(both_left, meta) == (True, "")
    one_right = [square, det("circle", 0.9, (10, 40, 20, 50)), det("circle", 0.8, (70, 40, 80, 50))]
    assert verdict(one_right, meta) == (False, "expected circle left of target, found right of target")


def test_evaluate_takes_preselected_objects():
    objects = {"circle": [det("circle", 0.1)]}  # evaluate() trusts the selection it is given
    assert evaluate(objects, SINGLE) == (True, "")


# --------------------------------------------------------------------------- aggregation


def test_summary_is_mean_of_task_means_and_any_image_per_prompt():
    records = [
        {"tag": "single_object", "correct": 1, "item_id": "a"},
        {"tag": "single_object", "correct": 1, "item_id": "a"},
        {"tag": "counting", "correct": 1, "item_id": "b"},
        {"tag": "counting", "correct": 0, "item_id": "b"},
        {"tag": "counting", "correct": 0, "item_id": "c"},
        {"tag": "counting", "correct": 0, "item_id": "c"},
    ]
    s = summarize(records)
    assert s["single_object"] == 1.0 and s["counting"] == 0.25
    assert s["overall"] == pytest.approx(0.625)  # not the pooled 0.5
    assert s["images_correct"] == pytest.approx(0.5)
    assert s["prompts_correct"] == pytest.approx(2 / 3)  # a and b have a correct image
