"""`craft-bench sweep` on a tiny SDXL with the toy suite: the budget lands on each method's field, every cell is a
normal cached run (a rerun with more budgets redoes only the new cells), sweep.json is what `craft-bench report`
reads, and the tables (compute to match, reward hacking) and plots are written; compute-to-match by hand."""

import csv
import io
import json

import pytest

SETS = [
    "method.k=2",
    "method.rewards=mini-clip,mini-aes",
    "method.filter=none",
    "method.steps=2",
    "method.batch_size=2",
    "method.lora_rank=4",
    "method.lr=1e-3",
    "sampler.steps=2",
    "suite.n_prompts=3",
    "suite.images_per_prompt=2",
]


@pytest.fixture(scope="module")
def prompts(tmp_path_factory):
    path = tmp_path_factory.mktemp("pool") / "prompts.txt"
    path.write_text("a red apple\na blue lake\na green forest\na white cloud\na black cat\na teal wave\n")
    return path


def sweep(cli, tiny_sdxl, out, prompts, budgets, *extra, check=True):
    args = [
        "sweep",
        "--methods",
        "diff-dpo,craft",
        "--budgets",
        budgets,
        "--suite",
        "toy",
        "--model",
        str(tiny_sdxl),
        "--out",
        str(out),
        "--no-progress",
        "--set",
        f"method.pool={prompts}",
        *[a for s in SETS for a in ("--set", s)],
        *extra,
    ]
    return cli(*args, check=check)


def test_a_sweep_runs_resumes_and_writes_what_the_report_reads(cli, tiny_sdxl, prompts, tmp_path):
    out = tmp_path / "res"
    first = sweep(cli, tiny_sdxl, out, prompts, "2", "--name", "small")
    assert "vanilla added" in first.stderr
    folder = out / "sweeps" / "grid"
    # as a job array would: each shard runs every 2nd cell; finished cells of the other shard enter its tables
    half = sweep(cli, tiny_sdxl, out, prompts, "2,4", "--name", "grid", "--shard", "1/2")
    assert "shard 1/2 runs 2 of 5 cells" in half.stderr
    assert half.stderr.count("cached: ") == 1  # diff-dpo @2 from the first sweep; diff-dpo @4 ran
    partial = json.loads((folder / "sweep.json").read_text())
    assert not partial["complete"] and [(c["method"], c["budget"]) for c in partial["cells"]] == [
        ("vanilla", None),
        ("diff-dpo", 2),
        ("craft", 2),
        ("diff-dpo", 4),
    ]
    other = sweep(cli, tiny_sdxl, out, prompts, "2,4", "--name", "grid", "--shard", "0/2")
    assert other.stderr.count("cached: ") == 2  # vanilla, craft @2; craft @4 ran
    second = sweep(cli, tiny_sdxl, out, prompts, "2,4", "--name", "grid")
    assert second.stderr.count("cached: ") == 5  # every cell was run by a shard
    doc = json.loads((folder / "sweep.json").read_text())
    assert doc["complete"] and [(c["method"], c["budget"]) for c in doc["cells"]] == [
        ("vanilla", None),
        ("diff-dpo", 2),
        ("craft", 2),
        ("diff-dpo", 4),
        ("craft", 4),
    ]
    assert all(c["cached"] for c in doc["cells"])
    assert doc["budget_fields"] == {"vanilla": None, "diff-dpo": "pairs", "craft": "budget"}
    for c in doc["cells"][1:]:
        config = dict(json.loads((folder / c["run"] / "run_spec.json").read_text())["method"]["config"])
        assert config[doc["budget_fields"][c["method"]]] == c["budget"] and config["pool_size"] == 100
        assert c["samples_used"] == c["budget"] and c["delta_vs_vanilla"]["verdict"]
        assert set(c["train_s"]) == {"candidates", "rewards", "expansion", "selection", "encoding", "optimisation"}
        assert (folder / c["train_log"]).is_file() and c["trained_on"] == ["mini-clip", "mini-aes"]
    # one pool, charged to every method alike (its recorded cost, not what the cache made of it this time)
    assert len({c["train_s"]["candidates"] for c in doc["cells"][1:]}) == 1
    assert doc["cells"][0]["delta_vs_vanilla"] is None and doc["cells"][0]["train_s"] == {}
    assert {(r["method"], r["budget"]) for r in doc["compute_to_match"]} == {("diff-dpo", 2), ("diff-dpo", 4)}
    judges = {(r["judge"], r["trained_on"]) for r in doc["reward_hacking"]}
    assert judges == {("mini-clip", True), ("mini-aes", True), ("toy", False)}
    assert len(doc["reward_hacking"]) == 4 * 3
    rows = list(csv.DictReader(io.StringIO((folder / "sweep.csv").read_text())))
    assert len(rows) == 5 and rows[1]["method"] == "diff-dpo" and float(rows[1]["train_s"]) > 0
    md = (folder / "sweep.md").read_text()
    assert "## Compute to match craft" in md and "## Reward hacking" in md and "*T*" in md and "*H*" in md
    for table in (b for b in md.split("\n\n") if b.startswith("|")):  # every row as wide as its header
        assert len({line.count("|") for line in table.splitlines()}) == 1, table
    assert "## Across seeds" not in md and doc["seed_spread"][0]["seeds"] == [0]  # one seed: the table waits for more
    for stem in (
        "headline-vs-samples",
        "headline-vs-compute",
        "headline-vs-images",
        "rewards-vs-compute",
        "delta-by-seed",
        "training-curves",
    ):
        assert (folder / "plots" / f"{stem}.png").stat().st_size > 1000 and (folder / "plots" / f"{stem}.svg").is_file()
    from craft_bench.report.sweep import load_sweep

    loaded = load_sweep(folder / "sweep.json")  # the report's reader takes it as written
    assert len(loaded.cells) == 5 and all(c.run_dir is not None for c in loaded.cells)
    assert all(c.train_log for c in loaded.cells[1:]) and loaded.cells[0].train_total == 0
    report = cli("report", str(folder), "--out", str(tmp_path / "site"), "--no-progress")
    assert "1 sweep" in report.stdout and (tmp_path / "site" / "sweep-grid.html").is_file()


def test_an_online_method_gets_its_own_budgets_on_the_same_compute_axis(cli, tiny_sdxl, prompts, tmp_path):
    """GRPO's budget is the images it generates (--budgets grpo=...); its rollouts and their scoring are its candidate
    and reward stages, so compute to match compares it with CRAFT in the same seconds; its pool is not resized."""
    grpo = ["method.prompts_per_iter=2", "method.group_size=2", "method.inner_steps=2", "method.timestep_fraction=1"]
    args = [
        "sweep",
        "--methods",
        "craft,grpo",
        "--budgets",
        "2",
        "--budgets",
        "grpo=4,8",
        "--suite",
        "toy",
        "--model",
        str(tiny_sdxl),
        "--out",
        str(tmp_path / "res"),
        "--no-progress",
        "--name",
        "online",
        "--set",
        f"method.pool={prompts}",
        *[x for s in SETS + grpo for x in ("--set", s)],
    ]  # method.steps and batch_size go to CRAFT only
    cli(*args)
    doc = json.loads((tmp_path / "res" / "sweeps" / "online" / "sweep.json").read_text())
    assert [(c["method"], c["budget"]) for c in doc["cells"]] == [
        ("vanilla", None),
        ("craft", 2),
        ("grpo", 4),
        ("grpo", 8),
    ]
    assert doc["budget_fields"]["grpo"] == "images" and doc["method_budgets"] == {"grpo": [4, 8]}
    for c in doc["cells"][2:]:
        config = dict(
            json.loads((tmp_path / "res" / "sweeps" / "online" / c["run"] / "run_spec.json").read_text())["method"][
                "config"
            ]
        )
        assert (
            config["images"] == c["budget"] == c["images_generated"] == c["samples_used"] and config["pool_size"] == 100
        )
        assert c["train_s"]["candidates"] > 0 and c["train_s"]["rewards"] > 0 and c["train_s"]["optimisation"] > 0
        assert c["trained_on"] == ["mini-clip", "mini-aes"]  # the same composite reward as CRAFT's
    assert {(r["method"], r["budget"]) for r in doc["compute_to_match"]} == {("grpo", 2)}
    assert {r["judge"] for r in doc["reward_hacking"] if r["method"] == "grpo"} == {"mini-clip", "mini-aes", "toy"}


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--budgets", "0"], "--budgets"),
        (["--budgets", "2,x"], "comma-separated whole numbers"),
        (["--budgets", "2", "--set", "method.nonsense=1"], "none of the sweep's methods has a setting 'nonsense'"),
        (["--budgets", "2", "--reference", "mapo"], "--reference mapo"),
        (["--budgets", "2", "--shard", "2/2"], "--shard 2/2: give I/N with 0 <= I < N"),
        (["--budgets", "2", "--shard", "x"], "--shard x: give I/N"),
        (["--budgets", "grpo=4"], "give the common budgets too"),
        (["--budgets", "2", "--budgets", "mapo=4"], "--budgets mapo=...: 'mapo' is not among --methods"),
    ],
)
def test_bad_input_is_one_line(cli, tmp_path, extra, needle):
    proc = cli(
        "sweep", "--methods", "diff-dpo,craft", "--suite", "toy", "--out", str(tmp_path / "r"), *extra, check=False
    )
    assert proc.returncode == 2 and needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "runs").exists()


def cell(method, budget, value, total, opt=1.0):
    return {
        "method": method,
        "budget": budget,
        "headline": {"value": value},
        "train_s": {"optimisation": opt, "rest": total - opt},
    }


def test_compute_to_match_by_hand():
    from craft_bench.sweep import compute_to_match

    cells = [
        cell("craft", 25, 0.50, 10.0),
        cell("craft", 25, 0.54, 14.0),  # seed mean 0.52 at 12 s
        cell("dpo", 25, 0.40, 20.0, 4.0),
        cell("dpo", 100, 0.53, 60.0, 8.0),
        cell("dpo", 400, 0.60, 200.0),
        cell("mapo", 25, 0.30, 5.0),
        cell("mapo", 100, 0.35, 9.0),
    ]
    rows = {r["method"]: r for r in compute_to_match(cells, "craft")}
    assert rows["dpo"]["matched_budget"] == 100 and rows["dpo"]["ratio"] == pytest.approx(60.0 / 12.0)
    assert rows["dpo"]["optimisation_ratio"] == pytest.approx(8.0 / 1.0)
    assert (
        rows["mapo"]["ratio"] is None
        and "not reached within the grid (best 0.3500 at budget 100)" == rows["mapo"]["note"]
    )


def test_seed_spread_by_hand():
    """The across-seeds table: mean, sd and range of the paired deltas; a gain that flips sign is flagged."""
    from craft_bench.sweep import seed_spread

    def c(method, seed, delta, verdict):
        return {
            "method": method,
            "budget": 100,
            "seed": seed,
            "headline": {"value": 0.5 + delta},
            "delta_vs_vanilla": {"delta": delta, "verdict": verdict},
        }

    cells = [
        c("craft", 0, 0.02, "no significant difference"),
        c("craft", 1, -0.01, "no significant difference"),
        c("craft", 2, 0.05, "better"),
        c("sft-renders", 0, 0.10, "better"),
        c("sft-renders", 1, 0.12, "better"),
        c("sft-renders", 2, 0.08, "better"),
        {"method": "vanilla", "budget": None, "seed": 0, "delta_vs_vanilla": None},
    ]
    rows = {r["method"]: r for r in seed_spread(cells)}
    assert set(rows) == {"craft", "sft-renders"}
    assert (
        rows["craft"]["mean_delta"] == pytest.approx(0.02)
        and rows["craft"]["min"] == -0.01
        and rows["craft"]["max"] == 0.05
    )
    assert (
        rows["craft"]["sd"] == pytest.approx(0.03) and not rows["craft"]["same_sign"] and rows["craft"]["better"] == 1
    )
    assert (
        rows["sft-renders"]["same_sign"]
        and rows["sft-renders"]["better"] == 3
        and rows["sft-renders"]["seeds"] == [0, 1, 2]
    )
