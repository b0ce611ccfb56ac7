"""The reward-benchmark suite: mini rewards on the mini prompts, the five real rewards (tiny checkpoints) on
HPDv2-format
prompts with HPSv2's x100 per-style convention, and the one-line errors for missing prompts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tiny_rewards as T

from craft_bench.errors import UserError
from craft_bench.suites.rewards import HPDV2_STYLES, read_hpdv2

STYLE_PROMPTS = {
    "anime": ["a cat in anime style", "a red bird"],
    "concept-art": ["a castle on a hill", "a blue robot"],
    "paintings": ["an oil painting of a horse", "two dogs in a park"],
    "photo": ["a photo of a wooden table", "the moon at sunset"],
}


def _records(out: Path) -> list[dict]:
    run_dir = next((out / "runs" / "rewards").iterdir())
    return [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]


def test_mini_default_is_mini_clip_and_mini_aes_on_the_mini_prompts(cli, tmp_path):
    out = tmp_path / "res"
    res = cli.run_json("run", "--method", "vanilla", "--suite", "rewards", "--out", str(out), "--limit", "12")
    m = res["metrics"]
    assert m["overall"]["value"] == m["mini-clip"]["value"] and m["overall"]["n"] == 12
    assert {"mini-clip", "mini-aes", "mini-clip.position", "mini-aes.counting"} <= set(m)
    recs = _records(out)
    assert np.mean([r["mini-aes"] for r in recs]) == pytest.approx(m["mini-aes"]["value"])
    # Items are GenEval-mini's, so image i of a prompt is the very image a GenEval-mini run makes.
    gen = cli.run_json(
        "run",
        "--method",
        "vanilla",
        "--suite",
        "geneval",
        "--out",
        str(out),
        "--limit",
        "12",
        "--set",
        "suite.images_per_prompt=1",
    )
    assert gen["generation"]["cached"] == 12
    # On Parti prompts the set is the parti suite's, images included.
    cli.run_json("run", "--method", "vanilla", "--suite", "parti", "--out", str(out), "--limit", "8")
    parti = cli.run_json(
        "run",
        "--method",
        "vanilla",
        "--suite",
        "rewards",
        "--out",
        str(out),
        "--limit",
        "8",
        "--set",
        "suite.prompts=parti",
    )
    assert parti["generation"]["cached"] == 8 and "mini-aes.circles" in parti["metrics"]


@pytest.fixture(scope="module")
def real_sources(tmp_path_factory):
    return ",".join(T.build_reward_set(tmp_path_factory.mktemp("suite-rewards"), pickscore=True))


def test_real_rewards_on_hpdv2_prompts_with_the_hps_convention(cli, tiny_sdxl, real_sources, tmp_path):
    bench = tmp_path / "benchmark"
    bench.mkdir()
    for style, prompts in STYLE_PROMPTS.items():
        (bench / f"{style}.json").write_text(json.dumps(prompts))
    out = tmp_path / "res"
    res = cli.run_json(
        "run",
        "--method",
        "vanilla",
        "--suite",
        "rewards",
        "--model",
        str(tiny_sdxl),
        "--out",
        str(out),
        "--set",
        "steps=2",
        "--set",
        f"suite.sources={real_sources}",
        "--set",
        f"suite.hpdv2={tmp_path}",
    )  # the folder above benchmark/ works too
    m = res["metrics"]
    names = ["hps", "pickscore", "aes", "imagereward", "clip"]
    assert set(names) <= set(m) and m["overall"] == {**m["hps"], "display_name": m["overall"]["display_name"]}
    recs = _records(out)
    assert len(recs) == 8 and [r["stratum"] for r in recs] == [s for s in HPDV2_STYLES for _ in range(2)]
    for style in HPDV2_STYLES:  # HPSv2's table: 100 x mean cosine per style, and the average over every image
        mine = [r["hps"] for r in recs if r["stratum"] == style]
        assert m[f"hps_x100.{style.replace('-', '_')}"]["value"] == pytest.approx(100 * np.mean(mine))
        assert m[f"pickscore.{style.replace('-', '_')}"]["value"] == pytest.approx(
            np.mean([r["pickscore"] for r in recs if r["stratum"] == style])
        )
    assert m["hps_x100.average"]["value"] == pytest.approx(100 * np.mean([r["hps"] for r in recs]))
    assert all(-1 <= r["hps"] <= 1 and r["clip"] >= 0 for r in recs)
    # The scores are the rewards' own, as `craft-bench score` computes them on the stored images.
    from craft_bench.rewards.composite import CompositeScorer, parse_sources

    sources, options = parse_sources(real_sources.split(","))
    scorer = CompositeScorer.load(names, sources=sources, options=options, device="cpu")
    images = [out / "images" / r["image"][:2] / f"{r['image']}.png" for r in recs]
    wide = scorer.wide(scorer.score(images, [r["prompt"] for r in recs]))
    for name in names:
        assert [r[name] for r in recs] == pytest.approx(wide[name].tolist(), abs=1e-5)


def test_hpdv2_prompts_from_a_json_file_and_the_hub_miss(tmp_path, monkeypatch):
    path = tmp_path / "all.json"
    path.write_text(json.dumps(STYLE_PROMPTS))  # what hpsv2.benchmark_prompts('all') returns
    assert read_hpdv2(path) == STYLE_PROMPTS
    monkeypatch.delenv("CRAFT_BENCH_HPDV2", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(UserError) as err:
        read_hpdv2()
    T.check_one_line(err.value, "benchmark/anime.json", "zhwang/HPDv2", "suite.hpdv2", "CRAFT_BENCH_HPDV2")
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "anime.json").write_text("[]")
    with pytest.raises(UserError) as err:
        read_hpdv2(tmp_path / "partial")
    T.check_one_line(err.value, "concept-art.json", "paintings.json", "photo.json")
    (tmp_path / "bad.json").write_text('{"anime": [1, 2]}')
    with pytest.raises(UserError, match="style"):
        read_hpdv2(tmp_path / "bad.json")


def test_unknown_reward_fails_before_generation(cli, tmp_path):
    proc = cli(
        "run",
        "--method",
        "vanilla",
        "--suite",
        "rewards",
        "--out",
        str(tmp_path),
        "--set",
        "suite.rewards=mini-clip,pickscor",
        check=False,
    )
    assert proc.returncode == 2 and "pickscore" in proc.stderr
    assert not (tmp_path / "images").exists() or not any((tmp_path / "images").rglob("*.png"))
