"""Every reader of results.json refuses a malformed or foreign file with one line naming it (compare, run's cache
hit, geneval summarize); the leaderboard and the report skip it with a warning and go on."""

from __future__ import annotations

import json
import shutil

import pytest

FAST = ["--set", "steps=2", "--set", "batch_size=2", "--set", "n_prompts=3", "--no-progress"]

FOREIGN = {
    "not-results": '{"not": "results"}',  # valid JSON, not a craft-bench result (was KeyError: 'suite')
    "not-json": "{results",
    "a-list": "[1, 2]",
    "no-metric-values": json.dumps(
        {"suite": "toy", "method": "vanilla", "model": "m", "spec_hash": "ab" * 32, "metrics": {"overall": {"n": 3}}}
    ),
}


def _one_line(proc) -> str:
    err = proc.stderr.strip()
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("case", sorted(FOREIGN))
def test_compare_refuses_a_foreign_results_json_in_one_line(cli, tmp_path, case):
    run = tmp_path / "X"
    run.mkdir()
    (run / "results.json").write_text(FOREIGN[case])
    err = _one_line(cli("compare", str(run), str(run), check=False))
    assert str(run / "results.json") in err and "results.json" in err


def test_geneval_summarize_refuses_a_results_json(cli, tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(FOREIGN["not-results"] + "\n")
    err = _one_line(cli("geneval", "summarize", str(path), "--out", str(tmp_path / "o"), check=False))
    assert str(path) in err


@pytest.fixture
def root_with_a_foreign_run(cli, tiny_sdxl, tmp_path):
    out = tmp_path / "res"
    cli("run", "--method", "vanilla", "--suite", "toy", "--model", str(tiny_sdxl), "--out", str(out), *FAST)
    (real,) = out.glob("runs/toy/*")
    foreign = out / "runs" / "toy" / "other-tool"
    foreign.mkdir()
    (foreign / "results.json").write_text(FOREIGN["not-results"])
    return out, real, foreign


def test_leaderboard_and_report_skip_a_foreign_results_json(cli, root_with_a_foreign_run):
    out, real, foreign = root_with_a_foreign_run
    board = cli("leaderboard", "--out", str(out))
    assert "vanilla" in board.stdout and real.name.rsplit("__", 1)[1] in board.stdout
    assert (
        f"warning: skipping {foreign / 'results.json'}: not a craft-bench results.json (it has no 'suite')"
        in board.stderr
    )
    report = cli("report", str(out), "--out", str(out / "site"), "--no-progress")
    assert (
        "report: 1 run" in report.stdout
        and "skipping" in report.stderr
        and str(foreign / "results.json") in report.stderr
    )

    import craft_bench

    assert list(craft_bench.leaderboard(out, suite="toy")["method"]) == ["vanilla"]  # the Python API skips it too


def test_a_damaged_finished_run_is_one_line_not_a_cache_hit(cli, tiny_sdxl, root_with_a_foreign_run):
    out, real, _ = root_with_a_foreign_run
    (real / "results.json").write_text(FOREIGN["not-results"])
    err = _one_line(
        cli(
            "run",
            "--method",
            "vanilla",
            "--suite",
            "toy",
            "--model",
            str(tiny_sdxl),
            "--out",
            str(out),
            *FAST,
            check=False,
        )
    )
    assert str(real / "results.json") in err and f"remove {real}" in err
    shutil.rmtree(real)
    cli(
        "run", "--method", "vanilla", "--suite", "toy", "--model", str(tiny_sdxl), "--out", str(out), *FAST
    )  # and it runs again
