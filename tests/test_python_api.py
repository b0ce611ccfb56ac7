"""The Python API (craft_bench.run / compare / load / leaderboard), the one the CLI is built on; the README's example
run as written; the paired line a trainable run prints (`--vs`)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_craft_cli import craft_args

import craft_bench
from craft_bench.errors import UserError

README = Path(__file__).resolve().parents[1] / "README.md"
TOY = {"steps": 2, "batch_size": 4, "suite.n_prompts": 8}  # 8 prompts: an exact permutation test can reach p < 0.05


def test_run_load_compare_and_leaderboard_are_what_the_cli_prints(cli, tiny_sdxl, tmp_path, toy_plugins):
    out = tmp_path / "res"
    logs: list[str] = []
    base = craft_bench.run(
        "vanilla", "toy", model=str(tiny_sdxl), settings=TOY, out=out, progress=False, log=logs.append
    )
    assert isinstance(base, craft_bench.Result) and base.versus is None and base.train is None
    m = base.metrics
    assert list(m.index)[0] == "overall" and {"value", "ci_low", "ci_high", "n"} <= set(m.columns)
    assert (
        m.loc["overall", "ci_low"] <= m.loc["overall", "value"] <= m.loc["overall", "ci_high"]
        and m.loc["overall", "n"] == 16
    )
    s = base.samples
    assert len(s) == 16 and {"prompt", "seed", "image_path", "redness", "bright"} <= set(s.columns)
    assert all(Path(p).is_file() for p in s["image_path"])
    assert "verdict" not in s  # the headline (redness) is a score, not a 0/1 verdict
    assert s.groupby("stratum")["redness"].mean().mean() == pytest.approx(
        base.headline
    )  # overall: mean of stratum means

    red = craft_bench.run(
        "redshift",
        "toy",
        model=str(tiny_sdxl),
        settings={**TOY, "method.shift": 0.6},
        out=out,
        progress=False,
        log=logs.append,
    )
    # redshift is a trainable (test) method and the base model's run of the same protocol exists: compared with it
    assert red.versus is not None and red.versus.a.run_dir == base.run_dir and red.versus.verdict == "better"
    c = craft_bench.compare(base, red)
    assert c.verdict == "better" and not c.regressed and craft_bench.compare(red, base).regressed
    assert c.metrics.loc["overall", "delta"] == pytest.approx(red.headline - base.headline)
    assert c.line().startswith(f"vs vanilla ({base.run_dir.name}): Redness ↑") and c.line().endswith("better")

    # the CLI is the same path: its JSON is the API's, and the same request is the same (cached) run
    assert json.loads(cli("compare", str(base.run_dir), str(red.run_dir), "--json").stdout) == json.loads(
        json.dumps(c.as_dict())
    )
    again = cli.run_json(
        "run",
        "--method",
        "vanilla",
        "--suite",
        "toy",
        "--model",
        str(tiny_sdxl),
        "--out",
        str(out),
        *[a for k, v in TOY.items() for a in ("--set", f"{k}={v}")],
    )
    assert again["spec_hash"] == base.results["spec_hash"]
    assert (
        craft_bench.load(base.run_dir).results
        == base.results
        == craft_bench.load(base.run_dir / "results.json").results
    )

    board = craft_bench.leaderboard(out, suite="toy")
    assert list(board["method"]) == ["redshift", "vanilla"]  # best first
    assert {"overall", "overall_ci_low", "overall_ci_high", "settings", "run_dir"} <= set(board.columns)
    assert board.loc[1, "overall"] == pytest.approx(base.headline) and board.loc[1, "run_dir"] == str(base.run_dir)
    assert "redshift" in cli("leaderboard", "--out", str(out), "--suite", "toy").stdout

    with pytest.raises(UserError, match="--seed -1"):
        craft_bench.run("vanilla", "toy", model=str(tiny_sdxl), seed=-1, out=out)

    # a damaged base run costs the line under the table, not the finished run
    (base.run_dir / "results.json").write_text('{"not": "results"}')
    logs.clear()
    cached = craft_bench.run(
        "redshift",
        "toy",
        model=str(tiny_sdxl),
        settings={**TOY, "method.shift": 0.6},
        out=out,
        progress=False,
        log=logs.append,
    )
    assert cached.results == red.results and cached.versus is None
    assert any(line.startswith(f"craft-bench: warning: no paired comparison with {base.run_dir}") for line in logs), (
        logs
    )


def test_import_is_light():
    code = "import sys, craft_bench; craft_bench.run; craft_bench.Result; assert 'torch' not in sys.modules, 'torch'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_trainable_run_ends_with_the_paired_line(cli, tiny_sdxl, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red apple\na blue lake\na green forest\na white cloud\n")
    out = tmp_path / "res"
    alone = cli(*craft_args(tiny_sdxl, prompts, out))
    assert "vs vanilla" not in alone.stdout  # no base run yet, and none asked for
    vs = cli(*craft_args(tiny_sdxl, prompts, out), "--vs", "vanilla")
    base = list((out / "runs" / "toy").glob("vanilla__*"))
    assert len(base) == 1 and (base[0] / "results.json").is_file()  # --vs ran the base model on the same protocol
    line = vs.stdout.strip().splitlines()[-1]
    assert re.fullmatch(
        rf"vs vanilla \({base[0].name}\): Redness ↑  A -?\d\.\d{{4}}  B -?\d\.\d{{4}}  B - A [+-]\d\.\d{{4}} "
        r"\[[+-]\d\.\d{4}, [+-]\d\.\d{4}\]  p \S+  2 prompts  (better|worse|no significant difference)",
        line,
    ), line
    later = cli(*craft_args(tiny_sdxl, prompts, out))
    assert later.stdout.strip().splitlines()[-1] == line  # once the base run exists, every trainable run prints it


def _readme_example() -> str:
    text = README.read_text()
    section = text[text.index("## Python API") : text.index("## Command line")]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_runs_as_written(tmp_path, monkeypatch, capsys):
    """The README's notebook-style example on the mini model, in a fresh results root."""
    monkeypatch.setenv("CRAFT_BENCH_RESULTS", str(tmp_path / "results"))
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(_readme_example(), str(README), "exec"), scope)
    base, tuned, cmp = scope["base"], scope["tuned"], scope["cmp"]
    assert tuned.versus is not None and tuned.versus.a.run_dir == base.run_dir
    assert f"vs vanilla ({base.run_dir.name}): GenEval overall" in capsys.readouterr().out
    assert tuned.train["samples_used"] > 0 and set(scope["misses"]["verdict"]) <= {False}
    assert cmp.verdict in ("better", "worse", "no significant difference")
    assert os.path.isdir(tmp_path / "results" / "runs" / "geneval")
