"""Parti-Prompts win rate: the shipped prompt file, the paired runner path, the judge, ties and the statistics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tiny_rewards as T

from craft_bench.errors import UserError
from craft_bench.suites.parti import PARTI_CATEGORIES, PARTI_CHALLENGES, parti_path, read_parti, win


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]


def _run_dir(out: Path, spec_hash: str) -> Path:
    return next(
        p.parent
        for p in (out / "runs").glob("parti/*/results.json")
        if json.loads(p.read_text())["spec_hash"] == spec_hash
    )


def test_shipped_parti_prompts_are_the_pinned_file():
    rows = read_parti()
    assert len(rows) == 1632
    assert set(r["category"] for r in rows) == set(PARTI_CATEGORIES) and set(r["challenge"] for r in rows) == set(
        PARTI_CHALLENGES
    )
    assert rows[0] == {"prompt": "bond", "category": "Abstract", "challenge": "Basic"}
    assert (parti_path().parent / "SOURCE_COMMIT").read_text().strip() == "5a657978134374ce28973948331b319adef164bd"


def test_a_tampered_copy_fails_its_checksum(tmp_path, monkeypatch):
    import craft_bench.suites.parti as parti

    copy = tmp_path / "PartiPrompts.tsv"
    copy.write_text(parti_path().read_text().replace("bond", "bind", 1))
    monkeypatch.setattr(parti, "parti_path", lambda: copy)
    with pytest.raises(UserError, match="sha256"):
        parti.read_parti()
    assert read_parti(copy)[0]["prompt"] == "bind"  # a user's own file is read as given
    bad = tmp_path / "bad.tsv"
    bad.write_text("prompt\tcat\nx\ty\n")
    with pytest.raises(UserError, match="needs a Prompt column"):
        read_parti(bad)


def test_a_plain_prompt_list_is_one_group(cli, tmp_path):
    """One prompt per line, as most users have it (was refused: 'a Parti prompt file is a TSV with ...'); a TSV
    without Category and Challenge reads the same way."""
    plain = tmp_path / "prompts.txt"
    plain.write_text("a red circle\n\ntwo blue squares  \na green triangle above a red square\n")
    rows = read_parti(plain)
    assert rows == [
        {"prompt": p, "category": "all", "challenge": "all"}
        for p in ("a red circle", "two blue squares", "a green triangle above a red square")
    ]
    tsv = tmp_path / "prompts.tsv"
    tsv.write_text("Prompt\tNote\na red circle\tx\ntwo blue squares\t\na green triangle above a red square\t\n")
    assert read_parti(tsv) == rows
    res = cli.run_json(
        "run", "--method", "vanilla", "--suite", "parti", "--prompts", str(plain), "--out", str(tmp_path / "res")
    )
    assert res["metrics"]["overall"]["n"] == 3 and res["metrics"]["overall"]["value"] == 0.5
    assert {k for k in res["metrics"] if k.startswith(("category.", "challenge."))} == {"category.all", "challenge.all"}


def test_ties_get_half_credit():
    assert (win(2.0, 1.0), win(1.0, 2.0), win(1.5, 1.5)) == (1.0, 0.0, 0.5)


def test_vanilla_against_itself_is_exactly_one_half(cli, tmp_path):
    out = tmp_path / "res"
    res = cli.run_json("run", "--method", "vanilla", "--suite", "parti", "--out", str(out), "--limit", "16")
    overall = res["metrics"]["overall"]
    assert (overall["value"], overall["ci_low"], overall["ci_high"], overall["p_value"], overall["n"]) == (
        0.5,
        0.5,
        0.5,
        1.0,
        16,
    )
    assert res["metrics"]["score_delta"]["value"] == 0.0
    assert res["generation"]["baseline"] == {"images": 16, "generated": 0, "cached": 16}  # the very same images
    assert res["baseline"]["method"] == "vanilla" and res["baseline"]["digest"]
    recs = _records(_run_dir(out, res["spec_hash"]))
    assert all(r["image"] == r["baseline_image"] and r["win"] == 0.5 and r["judge"] == "mini-clip" for r in recs)
    # breakdowns by the mini set's own categories and challenges
    assert {k for k in res["metrics"] if k.startswith("category.")} == {
        f"category.{c.lower()}" for c in {r["category"] for r in recs}
    }
    assert any(k.startswith("challenge.") for k in res["metrics"])
    assert (
        "sign test p"
        in cli("run", "--method", "vanilla", "--suite", "parti", "--out", str(out), "--limit", "16").stdout
    )


@pytest.fixture(scope="module")
def hps(tmp_path_factory):
    root = tmp_path_factory.mktemp("parti-hps")
    arch = T.build_hps(root / "hps")
    return f"hps={root / 'hps'},hps.arch={arch}"


def test_a_method_against_vanilla_with_the_hps_judge(cli, tiny_sdxl, hps, tmp_path):
    """Real-model path: tiny SDXL, the real HPS scorer on a tiny checkpoint, PartiPrompts rows; then a finished run
    folder as the baseline."""
    prompts = tmp_path / "p.tsv"
    rows = read_parti()[::150][:8]
    prompts.write_text(
        "Prompt\tCategory\tChallenge\tNote\n"
        + "".join(f"{r['prompt']}\t{r['category']}\t{r['challenge']}\t\n" for r in rows)
    )
    out = tmp_path / "res"
    common = [
        "--suite",
        "parti",
        "--model",
        str(tiny_sdxl),
        "--out",
        str(out),
        "--prompts",
        str(prompts),
        "--set",
        "steps=2",
        "--set",
        f"suite.sources={hps}",
        "--set",
        "suite.images_per_prompt=2",
    ]
    van = cli.run_json("run", "--method", "vanilla", *common)
    red = cli.run_json("run", "--method", "redshift", *common)
    assert red["baseline"]["method"] == "vanilla" and van["metrics"]["overall"]["value"] == 0.5
    red_recs, van_recs = _records(_run_dir(out, red["spec_hash"])), _records(_run_dir(out, van["spec_hash"]))
    # The baseline's images are vanilla's own, seed for seed; the method's differ.
    assert [r["baseline_image"] for r in red_recs] == [r["image"] for r in van_recs]
    assert all(r["image"] != r["baseline_image"] for r in red_recs)
    assert [r["baseline_score"] for r in red_recs] == pytest.approx([r["score"] for r in van_recs], abs=1e-6)
    for r in red_recs:
        assert r["judge"] == "hps" and r["win"] == win(r["score"], r["baseline_score"])
    wins = [r["win"] for r in red_recs]
    assert red["metrics"]["overall"]["value"] == pytest.approx(sum(wins) / len(wins))
    assert 0 <= red["metrics"]["overall"]["p_value"] <= 1
    assert set(k for k in red["metrics"] if k.startswith("category.")) <= {
        f"category.{c.lower().replace(' & ', '_').replace(' ', '_')}" for c in PARTI_CATEGORIES
    }

    # A finished run folder as the baseline: its method and config (redshift) are re-prepared, same images.
    red_dir = _run_dir(out, red["spec_hash"])
    again = cli.run_json("run", "--method", "vanilla", *common, "--set", f"suite.baseline={red_dir}")
    assert (
        again["baseline"]["method"] == "redshift"
        and again["baseline"]["config"] == json.loads((red_dir / "run_spec.json").read_text())["method"]["config"]
    )
    again_recs = _records(_run_dir(out, again["spec_hash"]))
    assert [r["baseline_image"] for r in again_recs] == [r["image"] for r in red_recs]
    assert again["metrics"]["overall"]["value"] == pytest.approx(1 - red["metrics"]["overall"]["value"])
    proc = cli(
        "run",
        "--method",
        "vanilla",
        "--suite",
        "parti",
        "--out",
        str(out),
        "--set",
        f"suite.baseline={red_dir}",
        check=False,
    )
    assert proc.returncode == 2 and "another base model" in proc.stderr  # a tiny-SDXL run cannot be mini's baseline


def test_bad_baselines_are_one_line_errors(cli, tmp_path):
    proc = cli(
        "run",
        "--method",
        "vanilla",
        "--suite",
        "parti",
        "--out",
        str(tmp_path),
        "--set",
        "suite.baseline=vanila",
        check=False,
    )
    assert proc.returncode == 2 and "vanilla" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    (tmp_path / "notarun").mkdir()
    proc = cli(
        "run",
        "--method",
        "vanilla",
        "--suite",
        "parti",
        "--out",
        str(tmp_path),
        "--set",
        f"suite.baseline={tmp_path / 'notarun'}",
        check=False,
    )
    assert proc.returncode == 2 and "run_spec.json" in proc.stderr
    proc = cli(
        "run",
        "--method",
        "vanilla",
        "--suite",
        "parti",
        "--out",
        str(tmp_path),
        "--set",
        "suite.judge=hpss",
        check=False,
    )
    assert proc.returncode == 2 and "hps" in proc.stderr


def test_a_lower_is_better_judge_wins_with_the_lower_score(monkeypatch):
    """A plug-in judge whose scores are costs: the image with the lower score wins."""
    from types import SimpleNamespace

    import pandas as pd

    from craft_bench.api import PromptItem, RunContext
    from craft_bench.suites.parti import Parti

    class Cost:
        higher_is_better = False

    class Scorer:
        rewards = {"cost": Cost()}

        def score(self, images, prompts):
            return pd.DataFrame({"item": range(len(images)), "reward": "cost", "score": [float(i) for i in images]})

    suite = Parti(Parti.Config(judge="cost"))
    monkeypatch.setattr(suite, "_load", lambda ctx: (setattr(suite, "_judge", "cost"), Scorer())[1])
    item = PromptItem("parti-0000", "x", 1, {"category": "Animals", "challenge": "Basic"}, "Animals")
    from craft_bench.mini.world import MINI

    ctx = RunContext(
        spec=SimpleNamespace(model=SimpleNamespace(name="mini")),
        store=None,
        device="cpu",
        dtype="float32",
        seed=0,
        world=MINI,
    )
    recs = suite.score_pairs([item, item, item], [1, 5, 3], [2, 4, 3], ctx)
    assert [r["win"] for r in recs] == [1.0, 0.0, 0.5]
