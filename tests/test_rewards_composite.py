"""The composite scorer and ``craft-bench score`` on tiny real reward checkpoints."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import tiny_rewards as T
import torch
from seeded import PROMPTS, fixed_images

from craft_bench.errors import UserError
from craft_bench.rewards.cli import discover, main
from craft_bench.rewards.composite import CompositeScorer, load_reward

NAMES = ["hps", "aes", "clip", "imagereward"]


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    from craft_bench.rewards.composite import parse_sources

    pairs = T.build_reward_set(tmp_path_factory.mktemp("composite"))
    paths, options = parse_sources(pairs)
    return {"sources": paths, "options": options, "cli": [f"--source={p}" for p in pairs]}


@pytest.fixture(scope="module")
def scorer(sources):
    return CompositeScorer.load(
        NAMES, sources=sources["sources"], device="cpu", options=sources["options"], batch_size=3
    )


def test_composite_matches_each_reward_alone(scorer, sources):
    images = fixed_images()
    frame = scorer.score(images, PROMPTS, items=[f"i{k}" for k in range(len(images))])
    assert list(frame.columns) == ["item", "reward", "score"]
    assert len(frame) == len(NAMES) * len(images)
    wide = scorer.wide(frame)
    for name in NAMES:
        alone = load_reward(name, sources["sources"][name], device="cpu", **sources["options"].get(name, {}))
        torch.testing.assert_close(
            torch.tensor(wide[name].values, dtype=torch.float32), alone.score(images, PROMPTS), atol=1e-5, rtol=1e-5
        )


def test_images_are_preprocessed_once_per_family(scorer, monkeypatch):
    calls = []
    families = {}
    for name, reward in scorer.rewards.items():
        families.setdefault(reward.preprocessor.key, reward.preprocessor)
    assert len(families) == 2  # HPS pads; ImageReward, AES and CLIP score share the centre crop
    for key, pre in families.items():
        cls = type(pre)
        original = cls.__call__
        monkeypatch.setattr(
            cls, "__call__", lambda self, images, _o=original: (calls.append(self.key), _o(self, images))[1]
        )
    scorer.score(fixed_images()[:3], PROMPTS[:3])
    assert sorted(calls) == sorted(families)


def test_composite_accepts_paths(scorer, tmp_path):
    images = fixed_images()[:2]
    paths = []
    for i, im in enumerate(images):
        paths.append(tmp_path / f"{i}.png")
        im.save(paths[-1])
    a = scorer.score(paths, PROMPTS[:2])
    b = scorer.score(images, PROMPTS[:2])
    pd.testing.assert_frame_equal(a, b)


def _write_images(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for name, im in zip(names, fixed_images()):
        im.save(folder / name)


def test_score_cli_metadata_layout(sources, tmp_path, capsys):
    d = tmp_path / "imgs"
    _write_images(d, ["a.png", "b.png", "c.png"])
    (d / "metadata.jsonl").write_text(
        "".join(json.dumps({"file_name": f, "prompt": p}) + "\n" for f, p in zip(["a.png", "b.png", "c.png"], PROMPTS))
    )
    out = tmp_path / "out" / "s.csv"
    assert (
        main(
            [
                str(d),
                "--rewards",
                "hps,aes,clip,imagereward",
                "--out",
                str(out),
                "--device",
                "cpu",
                "--batch-size",
                "2",
                *sources["cli"],
            ]
        )
        == 0
    )
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["item", "image", "prompt", "reward", "score"] and len(frame) == 12
    summary = json.loads(out.with_suffix(".json").read_text())
    assert set(summary["rewards"]) == set(NAMES) and summary["n_images"] == 3
    assert "wrote" in capsys.readouterr().out


def test_discover_geneval_and_hps_layouts(tmp_path):
    g = tmp_path / "geneval"
    for i, prompt in enumerate(["a photo of a cat", "a photo of two dogs"]):
        _write_images(g / f"{i:05d}" / "samples", ["0000.png", "0001.png"])
        (g / f"{i:05d}" / "metadata.jsonl").write_text(json.dumps({"tag": "single_object", "prompt": prompt}) + "\n")
    found = discover(g)
    assert [(f[0], f[2]) for f in found][:3] == [
        ("00000/0000", "a photo of a cat"),
        ("00000/0001", "a photo of a cat"),
        ("00001/0000", "a photo of two dogs"),
    ]

    h = tmp_path / "hps"
    _write_images(h / "anime", ["00000.jpg", "00001.jpg"])
    (h / "anime.json").write_text(json.dumps(["prompt zero", "prompt one"]))
    assert [(f[0], f[2]) for f in discover(h)] == [("anime/00000", "prompt zero"), ("anime/00001", "prompt one")]

    c = tmp_path / "captions"
    _write_images(c, ["x.png"])
    (c / "x.txt").write_text("a red cube\n")
    assert discover(c)[0][2] == "a red cube"


def test_score_cli_without_prompts_is_a_user_error(tmp_path):
    _write_images(tmp_path, ["x.png"])
    with pytest.raises(UserError) as err:
        main([str(tmp_path), "--rewards", "aes"])
    T.check_one_line(err.value, "metadata.jsonl")


def test_score_cli_rejects_unknown_reward(tmp_path):
    _write_images(tmp_path, ["x.png"])
    (tmp_path / "x.txt").write_text("a cat")
    with pytest.raises(UserError) as err:
        main([str(tmp_path), "--rewards", "hpss"])
    T.check_one_line(err.value, "did you mean 'hps'")
