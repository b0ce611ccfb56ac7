"""Several processes (torchrun, gloo on CPU): generation and scoring are sharded by batch and chunk and merged in
order, so two processes write the same results.json, samples.jsonl and images as one."""

from __future__ import annotations

import json
from pathlib import Path

VOLATILE = ("timing", "created", "versions", "processes")


def _run_files(out: Path) -> dict[str, str]:
    (run_dir,) = out.glob("runs/*/*")
    return {p.name: p.read_text() for p in run_dir.iterdir()}


def test_two_processes_write_the_same_run_as_one(cli, tiny_sdxl, tmp_path, monkeypatch):
    """Parti (a paired suite: the method's and the baseline's images, a reward judge) on a tiny SDXL: 2 processes =
    1."""
    from craft_bench import runner

    monkeypatch.setattr(runner, "SCORE_CHUNK", 4)  # several chunks, so both processes score
    args = [
        "run",
        "--method",
        "redshift",
        "--suite",
        "parti",
        "--model",
        str(tiny_sdxl),
        "--set",
        "suite.prompts=mini",
        "--set",
        "suite.judge=mini-clip",
        "--set",
        "suite.n_per_challenge=2",
        "--set",
        "suite.images_per_prompt=1",
        "--set",
        "steps=2",
        "--set",
        "sampler.batch_size=3",
        "--no-progress",
        "--json",
    ]
    one = json.loads(cli(*args, "--out", str(tmp_path / "one")).stdout)
    env = dict(cli.env, CRAFT_BENCH_SCORE_CHUNK="4")
    proc = cli.__class__(env)(
        *args, "--out", str(tmp_path / "two"), "--num-processes", "2", subprocess=True, timeout=600
    )
    two = json.loads(proc.stdout)  # one table: only the first process reports
    assert two["processes"] == 2 and "(2 processes)" in proc.stderr
    assert {k: v for k, v in one.items() if k not in VOLATILE} == {k: v for k, v in two.items() if k not in VOLATILE}
    assert two["generation"] == {
        "images": 16,
        "generated": 16,
        "cached": 0,
        "baseline": {"images": 16, "generated": 16, "cached": 0},
    }
    files_one, files_two = _run_files(tmp_path / "one"), _run_files(tmp_path / "two")
    assert sorted(files_two) == ["results.json", "run_spec.json", "samples.jsonl"]  # no partial files left
    assert (
        files_one["samples.jsonl"] == files_two["samples.jsonl"]
        and files_one["run_spec.json"] == files_two["run_spec.json"]
    )
    images = lambda root: {p.name: p.read_bytes() for p in (root / "images").glob("*/*.png")}  # noqa: E731
    assert images(tmp_path / "one") == images(tmp_path / "two") and len(images(tmp_path / "one")) == 32
