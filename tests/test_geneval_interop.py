"""GenEval interop both ways: the run folder holds the official image layout, and `craft-bench geneval summarize`
reads the official evaluator's results.jsonl back into results.json with CIs."""

from __future__ import annotations

import json
import os
import random
import re

import pytest

from craft_bench.errors import UserError


@pytest.fixture(scope="module")
def mini_run(cli, tmp_path_factory):
    out = tmp_path_factory.mktemp("interop") / "res"
    res = cli.run_json(
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
        "suite.images_per_prompt=2",
    )
    run_dir = next((out / "runs" / "geneval").iterdir())
    records = [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]
    return res, run_dir, records, out


def test_run_folder_holds_genevals_layout(mini_run):
    _, run_dir, records, out = mini_run
    assert sorted(p.name for p in run_dir.iterdir() if p.is_dir()) == ["geneval"]  # one folder beside results.json
    folders = sorted(p.name for p in (run_dir / "geneval").iterdir())
    assert folders == [f"{k:05d}" for k in range(12)]
    item_ids = list(dict.fromkeys(r["item_id"] for r in records))
    for k, item_id in enumerate(item_ids):
        folder = run_dir / "geneval" / f"{k:05d}"
        with open(folder / "metadata.jsonl") as fp:  # the evaluator reads it with json.load
            meta = json.load(fp)
        mine = [r for r in records if r["item_id"] == item_id]
        assert meta["prompt"] == mine[0]["prompt"] and meta["tag"] == mine[0]["tag"]
        assert sorted(p.name for p in (folder / "samples").iterdir()) == ["0000.png", "0001.png"]
        for r in mine:
            png = folder / "samples" / f"{r['index']:04d}.png"
            assert re.match(r"\d+\.png", png.name)  # the evaluator's filter
            assert os.path.samefile(png, out / "images" / r["image"][:2] / f"{r['image']}.png")  # hard link
    from craft_bench.rewards.cli import discover

    assert len(discover(run_dir)) == len(records)  # `craft-bench score RUN_FOLDER` finds the layout in geneval/


def official_lines(run_dir, records, order_seed=0):
    """What evaluate_images.py would write for this folder: one line per image, in os.listdir order (any)."""
    item_ids = list(dict.fromkeys(r["item_id"] for r in records))
    lines = []
    for r in records:
        k = item_ids.index(r["item_id"])
        meta = json.loads((run_dir / "geneval" / f"{k:05d}" / "metadata.jsonl").read_text())
        lines.append(
            {
                "filename": str(run_dir / "geneval" / f"{k:05d}" / "samples" / f"{r['index']:04d}.png"),
                "tag": meta["tag"],
                "prompt": meta["prompt"],
                "correct": bool(r["correct"]),
                "reason": r["reason"],
                "metadata": json.dumps(meta),
                "details": r["details"],
            }
        )
    random.Random(order_seed).shuffle(lines)
    return lines


def test_summarize_reads_the_official_output_into_results_json(cli, mini_run, tmp_path):
    res, run_dir, records, _ = mini_run
    path = tmp_path / "results.jsonl"
    # pandas' to_json(orient="records", lines=True), as the evaluator writes it
    import pandas as pd

    with open(path, "w") as fp:
        pd.DataFrame(official_lines(run_dir, records)).to_json(fp, orient="records", lines=True)
    proc = cli("geneval", "summarize", str(path), "--model", "mini", "--json")
    summary = json.loads(proc.stdout)
    assert (tmp_path / "results.json").is_file() and (tmp_path / "samples.jsonl").is_file()
    assert summary["suite"] == "geneval" and summary["method"] == "official-evaluator" and summary["model"] == "mini"
    assert summary["source"]["images"] == len(records) == 24
    for name, metric in res["metrics"].items():  # same verdicts, same prompts, same bootstrap: the same numbers
        assert summary["metrics"][name] == pytest.approx(metric), name
    # The table form works, and `compare` pairs two summaries by prompt (the evaluator's output has no seeds).
    assert "GenEval overall" in cli("geneval", "summarize", str(path), "--out", str(tmp_path / "again")).stdout
    cmp = json.loads(cli("compare", str(tmp_path), str(tmp_path / "again"), "--json").stdout)
    head = next(m for m in cmp["metrics"] if m["metric"] == "overall")
    assert head["delta"] == 0 and head["verdict"] == "no significant difference"


def test_summarize_counts_prompts_by_folder_and_rejects_other_files(cli, tmp_path):
    rows = []
    for folder, tag, correct in [(0, "counting", [1, 0]), (1, "counting", [0, 0]), (2, "colors", [1, 1])]:
        meta = {"tag": tag, "include": [], "prompt": f"p{folder}"}
        for n, c in enumerate(correct):
            rows.append(
                {
                    "filename": f"/x/{folder:05d}/samples/{n:05d}.png",
                    "tag": tag,
                    "prompt": meta["prompt"],
                    "correct": bool(c),
                    "reason": "",
                    "metadata": json.dumps(meta),
                    "details": "{}",
                }
            )
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = json.loads(cli("geneval", "summarize", str(path), "--out", str(tmp_path / "o"), "--json").stdout)["metrics"]
    assert out["counting"]["value"] == 0.25 and out["colors"]["value"] == 1.0
    assert out["overall"]["value"] == pytest.approx(0.625)  # mean of task means (summary_scores.py)
    assert out["prompts_correct"]["value"] == pytest.approx(2 / 3)  # a prompt counts if ANY image is correct
    samples = [json.loads(x) for x in (tmp_path / "o" / "samples.jsonl").read_text().splitlines()]
    assert [s["item_id"] for s in samples] == ["counting-0000"] * 2 + ["counting-0001"] * 2 + ["colors-0000"] * 2

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"filename": "a.png", "tag": "colors"}\n')
    proc = cli("geneval", "summarize", str(bad), check=False)
    assert proc.returncode == 2 and "results.jsonl" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    from craft_bench.suites.geneval_official import read_official

    with pytest.raises(UserError, match="not <folder>/samples/<n>.png"):
        read_official(_write(tmp_path / "odd.jsonl", {**rows[0], "filename": "/x/img.png"}))


def _write(path, row):
    path.write_text(json.dumps(row) + "\n")
    return path
