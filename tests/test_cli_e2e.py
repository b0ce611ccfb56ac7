"""run -> images -> scores -> results.json -> leaderboard -> compare, through the CLI on tiny real pipelines."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

FAST = ["--set", "steps=2", "--set", "batch_size=4"]


def _results_files(root: Path) -> list[Path]:
    return sorted((root / "runs").glob("*/*/results.json"))


def test_run_leaderboard_compare_end_to_end(cli, tiny_sdxl, tmp_path):
    out = str(tmp_path / "res")
    a = cli.run_json("run", "--method", "vanilla", "--suite", "toy", "--model", str(tiny_sdxl), "--out", out, *FAST)
    b = cli.run_json("run", "--method", "redshift", "--suite", "toy", "--model", str(tiny_sdxl), "--out", out, *FAST)
    c = cli.run_json(
        "run",
        "--method",
        "redshift",
        "--suite",
        "toy",
        "--model",
        str(tiny_sdxl),
        "--out",
        out,
        *FAST,
        "--set",
        "method.shift=-0.6",
    )

    # results.json contract
    for res in (a, b, c):
        for key in (
            "schema_version",
            "suite",
            "method",
            "model",
            "spec_hash",
            "metrics",
            "timing",
            "versions",
            "created",
        ):
            assert key in res, key
        assert set(res["timing"]) >= {"generate_s", "score_s", "train_s", "device"}
        m = res["metrics"]["overall"]
        assert m["ci_low"] <= m["value"] <= m["ci_high"] and m["n"] == 16 and m["higher_is_better"] is True
    assert set(b["train"]) >= {"samples_used", "steps", "images_generated", "reward_calls"}
    assert a["spec_hash"] != b["spec_hash"] != c["spec_hash"]
    assert b["metrics"]["overall"]["value"] > a["metrics"]["overall"]["value"] > c["metrics"]["overall"]["value"]

    runs = _results_files(Path(out))
    assert len(runs) == 3
    run_a = next(p.parent for p in runs if json.loads(p.read_text())["spec_hash"] == a["spec_hash"])
    run_b = next(p.parent for p in runs if json.loads(p.read_text())["spec_hash"] == b["spec_hash"])
    run_c = next(p.parent for p in runs if json.loads(p.read_text())["spec_hash"] == c["spec_hash"])
    assert run_a.name.startswith("vanilla__tiny-sdxl__") and run_a.parent.name == "toy"
    samples = [json.loads(line) for line in (run_a / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 16 and all(
        Path(out, "images", s["image"][:2], s["image"] + ".png").is_file() for s in samples
    )
    assert json.loads((run_a / "run_spec.json").read_text())["spec_hash"] == a["spec_hash"]

    # leaderboard: all three formats, best first
    md = cli("leaderboard", "--out", out).stdout
    assert md.index("redshift") < md.index("vanilla")
    rows = list(
        csv.DictReader(io.StringIO(cli("leaderboard", "--out", out, "--format", "csv", "--suite", "toy").stdout))
    )
    assert [r["method"] for r in rows][1] == "vanilla" and len(rows) == 3
    assert float(rows[0]["overall"]) == b["metrics"]["overall"]["value"]
    lb = json.loads(cli("leaderboard", "--out", out, "--format", "json").stdout)
    assert lb["suite"] == "toy" and len(lb["rows"]) == 3
    for ext in ("md", "csv", "json"):
        assert (Path(out) / "leaderboard" / f"toy.{ext}").is_file()

    # compare: B better than A, C worse than A, A vs A no difference
    better = json.loads(cli("compare", str(run_a), str(run_b / "results.json"), "--json").stdout)
    head = next(m for m in better["metrics"] if m["metric"] == "overall")
    assert head["verdict"] == "better" and head["delta"] > 0 and head["ci_low"] > 0 and head["p_value"] < 0.05
    assert head["n_pairs"] == 16 and head["n_prompts"] == 8
    table = cli("compare", str(run_a), str(run_c)).stdout
    assert "worse" in table
    same = json.loads(cli("compare", str(run_a), str(run_a), "--json").stdout)
    assert all(m["verdict"] == "no significant difference" and m["delta"] == 0 for m in same["metrics"])

    # --fail-on-regression: exit 1 only when the headline metric is significantly worse
    assert cli("compare", str(run_a), str(run_c), "--fail-on-regression", check=False).returncode == 1
    assert cli("compare", str(run_a), str(run_b), "--fail-on-regression", check=False).returncode == 0


def test_rerun_is_a_cache_hit(cli, tiny_sdxl, tmp_path):
    out = str(tmp_path / "res")
    first = cli.run_json("run", "--method", "vanilla", "--suite", "toy", "--model", str(tiny_sdxl), "--out", out, *FAST)
    second = cli(
        "run",
        "--method",
        "vanilla",
        "--suite",
        "toy",
        "--model",
        str(tiny_sdxl),
        "--out",
        out,
        *FAST,
        "--json",
        "--no-progress",
    )
    assert json.loads(second.stdout) == first
    assert "cached" in second.stderr


def test_sd15_folder_runs_and_table_prints(cli, tiny_sd15, tmp_path):
    proc = cli(
        "run",
        "--method",
        "vanilla",
        "--suite",
        "toy",
        "--model",
        str(tiny_sd15),
        "--out",
        str(tmp_path),
        "--limit",
        "3",
        *FAST,
        "--no-progress",
    )
    assert "Redness" in proc.stdout and "95% CI" in proc.stdout and "run folder:" in proc.stdout
    res = json.loads(next((tmp_path / "runs").glob("*/*/results.json")).read_text())
    assert res["model"] == "tiny-sd15" and res["metrics"]["overall"]["n"] == 6


def test_limit_keeps_strata_balanced_and_prompts_file(cli, tiny_sdxl, tmp_path):
    res = cli.run_json(
        "run",
        "--method",
        "vanilla",
        "--suite",
        "toy",
        "--model",
        str(tiny_sdxl),
        "--out",
        str(tmp_path),
        "--limit",
        "4",
        *FAST,
    )
    samples = [json.loads(x) for x in next((tmp_path / "runs").glob("*/*/samples.jsonl")).read_text().splitlines()]
    assert sorted({s["stratum"] for s in samples}) == ["cool", "warm"] and res["metrics"]["overall"]["n"] == 8
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red square\na blue circle\n")
    res2 = cli.run_json(
        "run",
        "--method",
        "vanilla",
        "--suite",
        "toy",
        "--model",
        str(tiny_sdxl),
        "--out",
        str(tmp_path),
        "--prompts",
        str(prompts),
        *FAST,
    )
    assert res2["metrics"]["overall"]["n"] == 4 and res2["spec_hash"] != res["spec_hash"]


def test_leaderboard_and_compare_show_the_settings_that_differ(cli, tiny_sdxl, tmp_path):
    """Runs that differ only in sampler settings are told apart: the leaderboard lists each run's non-default
    settings, compare names the settings the two runs do not share."""
    out = str(tmp_path / "res")
    base = [
        "run",
        "--method",
        "vanilla",
        "--suite",
        "toy",
        "--model",
        str(tiny_sdxl),
        "--out",
        out,
        "--set",
        "batch_size=4",
    ]
    a = cli.run_json(*base, "--set", "steps=2")
    b = cli.run_json(*base, "--set", "steps=3", "--set", "guidance_scale=2")
    lb = {r["spec"]: r for r in json.loads(cli("leaderboard", "--out", out, "--format", "json").stdout)["rows"]}
    assert lb[a["spec_hash"][:8]]["settings"] == "steps=2"
    assert lb[b["spec_hash"][:8]]["settings"] == "steps=3 guidance_scale=2.0"
    md = cli("leaderboard", "--out", out).stdout
    assert "| settings" in md and "steps=3 guidance_scale=2.0" in md
    rows = list(csv.DictReader(io.StringIO((Path(out) / "leaderboard" / "toy.csv").read_text())))
    assert sorted(r["settings"] for r in rows) == ["steps=2", "steps=3 guidance_scale=2.0"]
    runs = {json.loads(p.read_text())["spec_hash"]: p.parent for p in _results_files(Path(out))}
    table = cli("compare", str(runs[a["spec_hash"]]), str(runs[b["spec_hash"]])).stdout
    assert "settings that differ: guidance_scale A=5.0 B=2.0; steps A=2 B=3" in table
    differ = json.loads(cli("compare", str(runs[a["spec_hash"]]), str(runs[b["spec_hash"]]), "--json").stdout)[
        "settings_differ"
    ]
    assert differ == [{"setting": "guidance_scale", "a": 5.0, "b": 2.0}, {"setting": "steps", "a": 2, "b": 3}]


def test_settings_that_differ_between_two_methods_are_the_method_not_its_settings():
    from craft_bench.report.collect import spec_differences

    def spec(method, config, steps):
        return {
            "method": {"name": method, "config": config},
            "suite": {"config": []},
            "sampler": {"steps": steps},
            "seed": 0,
            "model": {"name": "mini"},
        }

    craft = spec("craft", [["budget", 100], ["k", 4]], 10)
    assert spec_differences(spec("vanilla", [], 10), craft) == []  # the title names the two methods
    assert spec_differences(spec("vanilla", [], 12), craft) == [("steps", 12, 10)]
    assert spec_differences(spec("craft", [["budget", 50], ["k", 4]], 10), craft) == [("method.budget", 50, 100)]
