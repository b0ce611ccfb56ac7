"""`craft-bench run --method craft` end to end on a tiny SDXL: the pool, the filter, the shared trainer, the
checkpoint, the accounting in results.json, the cache, and the same run on two processes."""

import json
from pathlib import Path

import pytest
import torch


def craft_args(tiny_sdxl, prompts, out, *extra):
    return [
        "run",
        "--method",
        "craft",
        "--suite",
        "toy",
        "--model",
        str(tiny_sdxl),
        "--out",
        str(out),
        "--set",
        f"method.pool={prompts}",
        "--set",
        "method.pool_size=4",
        "--set",
        "method.k=2",
        "--set",
        "method.rewards=mini-clip,mini-aes",
        "--set",
        "method.filter=none",
        "--set",
        "method.budget=4",
        "--set",
        "method.steps=2",
        "--set",
        "method.batch_size=4",
        "--set",
        "method.lora_rank=4",
        "--set",
        "method.lr=1e-3",
        "--set",
        "sampler.steps=3",
        "--set",
        "suite.n_prompts=2",
        "--set",
        "suite.images_per_prompt=1",
        "--no-progress",
        *extra,
    ]


@pytest.fixture(scope="module")
def prompts(tmp_path_factory):
    path = tmp_path_factory.mktemp("pool") / "prompts.txt"
    path.write_text("a red apple\na blue lake\n\na green forest\na white cloud\na black cat\n")
    return path


def lora_weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(next(folder.glob("pytorch_lora_weights.*"))))


def test_craft_run_trains_records_and_caches(cli, tiny_sdxl, prompts, tmp_path):
    out = tmp_path / "res"
    results = cli.run_json(*craft_args(tiny_sdxl, prompts, out))
    train = results["train"]
    assert train["samples_used"] == 4 and train["steps"] == 2
    assert (
        train["images_generated"] == 16 and train["reward_calls"] == 32
    )  # (4 prompts + 4 expansions) x k=2; 2 rewards
    assert set(train["timing"]) >= {"generate_s", "score_s", "filter_s", "cache_s", "optimize_s"}
    assert train["peak_memory_bytes"] > 0 and train["device"] == "cpu" and results["timing"]["train_s"] > 0
    ckpt = out / "checkpoints"
    (folder,) = [p for p in ckpt.iterdir() if p.is_dir()]
    assert {p.name for p in folder.iterdir()} >= {
        "pytorch_lora_weights.safetensors",
        "train_log.jsonl",
        "train_info.json",
        "examples.jsonl",
    }
    log = [json.loads(x) for x in (folder / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2] and all({"loss", "lr", "grad_norm", "mse"} <= set(r) for r in log)
    again = cli("run", *craft_args(tiny_sdxl, prompts, out)[1:])
    assert "cached" in again.stderr  # a finished run is a cache hit


def test_two_processes_train_the_same_lora(cli, tiny_sdxl, prompts, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    cli(*craft_args(tiny_sdxl, prompts, one), subprocess=True, timeout=600)
    proc = cli(*craft_args(tiny_sdxl, prompts, two, "--num-processes", "2"), subprocess=True, timeout=600)
    assert "GenEval" not in proc.stdout and "Redness" in proc.stdout  # one table, printed by the first process
    (a,) = [p for p in (one / "checkpoints").iterdir() if p.is_dir()]
    (b,) = [p for p in (two / "checkpoints").iterdir() if p.is_dir()]
    wa, wb = lora_weights(a), lora_weights(b)
    va, vb = torch.cat([wa[k].flatten() for k in sorted(wa)]), torch.cat([wb[k].flatten() for k in sorted(wa)])
    # Equal up to float summation order; Adam's first steps (update ~ g / |g|) amplify it for near-zero gradients.
    assert float((va - vb).norm() / va.norm()) < 1e-3
    la, lb = ([json.loads(x)["loss"] for x in (f / "train_log.jsonl").read_text().splitlines()] for f in (a, b))
    assert la == pytest.approx(lb, rel=1e-4)
    assert json.loads((b / "train_info.json").read_text())["processes"] == 2


def test_two_rounds_train_from_the_first_rounds_model(cli, tiny_sdxl, prompts, tmp_path):
    out = tmp_path / "res"
    results = cli.run_json(*craft_args(tiny_sdxl, prompts, out, "--set", "method.rounds=2"))
    train = results["train"]
    assert len(train["rounds"]) == 2 and train["steps"] == 4 and train["samples_used"] == 8
    folders = sorted((p for p in (out / "checkpoints").iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    assert len(folders) == 2  # one checkpoint per round; round 2's candidates come from round 1's model
    r1, r2 = (json.loads((f / "examples.jsonl").read_text().splitlines()[0]) for f in folders)
    assert r1["image_key"] != r2["image_key"]
