"""Determinism, resume after SIGKILL, concurrent runs on one results root, cache-key isolation."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

FAST = ["--set", "steps=2", "--set", "batch_size=2", "--no-progress"]


def _strip(res: dict) -> dict:
    res = dict(res)
    for volatile in ("timing", "created", "generation", "versions"):
        res.pop(volatile, None)
    return res


def _image_bytes(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (root / "images").glob("*/*.png")}


def test_same_spec_twice_gives_identical_images_and_results(cli, tiny_sdxl, tmp_path):
    args = ["run", "--method", "vanilla", "--suite", "toy", "--model", str(tiny_sdxl), *FAST, "--json"]
    r1 = json.loads(cli(*args, "--out", str(tmp_path / "one")).stdout)
    r2 = json.loads(cli(*args, "--out", str(tmp_path / "two")).stdout)
    assert _strip(r1) == _strip(r2)
    i1, i2 = _image_bytes(tmp_path / "one"), _image_bytes(tmp_path / "two")
    assert i1 == i2 and len(i1) == 16
    # a different seed changes every image
    r3 = json.loads(cli(*args, "--out", str(tmp_path / "one"), "--seed", "1").stdout)
    assert r3["spec_hash"] != r1["spec_hash"]
    assert len(_image_bytes(tmp_path / "one")) == 32


def test_resume_after_sigkill(cli, tiny_sdxl, tmp_path):
    out = tmp_path / "killed"
    args = ["run", "--method", "vanilla", "--suite", "toy", "--model", str(tiny_sdxl), "--set", "steps=6", "--set", "batch_size=1",
            "--set", "n_prompts=8", "--set", "images_per_prompt=3", "--no-progress"]
    child = cli.popen(*args, "--out", str(out))
    deadline = time.time() + 240
    while time.time() < deadline and len(list((out / "images").glob("*/*.png"))) < 4:
        time.sleep(0.2)
        assert child.poll() is None, child.communicate()
    child.send_signal(signal.SIGKILL)
    child.wait()
    made = len(list((out / "images").glob("*/*.png")))
    assert 4 <= made < 24, made
    assert not list(out.glob("runs/*/*/results.json"))

    resumed = json.loads(cli(*args, "--out", str(out), "--json").stdout)
    assert resumed["generation"]["cached"] >= made and resumed["generation"]["generated"] == 24 - resumed["generation"]["cached"]
    fresh = json.loads(cli(*args, "--out", str(tmp_path / "fresh"), "--json").stdout)
    assert _strip(resumed) == _strip(fresh)
    leftovers = [p for p in out.rglob("*") if p.name.endswith(".tmp") or p.name.endswith(".partial.jsonl")]
    assert leftovers == []
    assert _image_bytes(out) == _image_bytes(tmp_path / "fresh")


def test_killed_scoring_resumes_from_partial_records(cli, tiny_sdxl, tmp_path, toy_plugins, monkeypatch):
    """A run killed while scoring keeps its scored records and rescoring only does the rest."""
    from craft_bench import runner

    out = tmp_path / "res"
    args = ["run", "--method", "vanilla", "--suite", "toy", "--model", str(tiny_sdxl), "--out", str(out), *FAST]
    calls = {"n": 0}
    real_score = toy_plugins.ToySuite.score

    def dying_score(self, items, images, ctx):
        calls["n"] += len(images)
        if calls["n"] > 8:
            raise KeyboardInterrupt
        return real_score(self, items, images, ctx)

    monkeypatch.setattr(runner, "SCORE_CHUNK", 4)
    monkeypatch.setattr(toy_plugins.ToySuite, "score", dying_score)
    assert cli(*args, check=False).returncode == 130
    partial = next(out.glob("runs/*/*/samples.partial.jsonl"))
    assert len(partial.read_text().splitlines()) == 8
    calls["n"] = -100
    done = json.loads(cli(*args, "--json").stdout)
    assert calls["n"] == -100 + 8  # only the 8 unscored images were scored again
    assert done["metrics"]["overall"]["n"] == 16 and not partial.exists()


def test_two_concurrent_runs_share_one_results_root(cli, tiny_sdxl, tmp_path):
    out = str(tmp_path / "shared")
    base = ["run", "--suite", "toy", "--model", str(tiny_sdxl), "--out", out, *FAST, "--json"]
    procs = [cli.popen(*base, "--method", "vanilla"), cli.popen(*base, "--method", "redshift"), cli.popen(*base, "--method", "vanilla")]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [o[1][-2000:] for o in outs]
    results = [json.loads(o[0]) for o in outs]
    assert _strip(results[0]) == _strip(results[2])
    assert results[0]["spec_hash"] != results[1]["spec_hash"]
    assert len(list(Path(out).glob("runs/*/*/results.json"))) == 2
    for p in Path(out).glob("images/*/*.png"):
        from PIL import Image

        Image.open(p).verify()


def test_cache_keys_isolate_models_samplers_and_precision(tiny_sdxl, tiny_sd15, tmp_path, monkeypatch):
    from tiny_models import build_tiny_sdxl

    from craft_bench.api import Checkpoint, PromptItem
    from craft_bench.generate import derive_seed, image_key, plan
    from craft_bench.models import resolve_model

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    other = build_tiny_sdxl(tmp_path / "other-sdxl", seed=1)  # same architecture, other weights
    specs = [resolve_model(str(p))[0] for p in (tiny_sdxl, tiny_sd15, other)]
    assert len({s.digest for s in specs}) == 3
    _, sampler, _ = resolve_model(str(tiny_sdxl))
    items = [PromptItem("p0", "a red apple", n_images=2)]
    keys = [plan(items, Checkpoint(model=s), sampler, 0, "float32")[0].key for s in specs]
    assert len(set(keys)) == 3

    d = specs[0].digest
    k = image_key(d, sampler, 7, "a red apple", "float32")
    assert k == image_key(d, sampler, 7, "a red apple", "float32")
    from dataclasses import replace

    assert k != image_key(d, replace(sampler, steps=sampler.steps + 1), 7, "a red apple", "float32")
    assert k != image_key(d, replace(sampler, guidance_scale=1.0), 7, "a red apple", "float32")
    assert k == image_key(d, replace(sampler, batch_size=99), 7, "a red apple", "float32")  # batching never changes pixels' key
    assert k != image_key(d, sampler, 8, "a red apple", "float32")
    assert k != image_key(d, sampler, 7, "a red apple ", "float32")
    assert k != image_key(d, sampler, 7, "a red apple", "float16")
    # seeds: per (run seed, prompt id, index); adding prompts never changes another image's seed
    more = plan(items + [PromptItem("p1", "x", n_images=2)], Checkpoint(model=specs[0]), sampler, 0, "float32")
    assert [r.seed for r in more[:2]] == [derive_seed(0, "p0", 0), derive_seed(0, "p0", 1)]
    assert len({r.seed for r in more}) == 4


def test_weights_digest_is_memoised_and_tracks_changes(tiny_sdxl, tmp_path, monkeypatch):
    import shutil

    from craft_bench.models import weights_digest

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    copy = Path(shutil.copytree(tiny_sdxl, tmp_path / "copy"))
    d1 = weights_digest(copy)
    assert (tmp_path / "xdg" / "craft-bench" / "digests.json").is_file()
    assert weights_digest(copy) == d1
    w = copy / "unet" / "diffusion_pytorch_model.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 1
    w.write_bytes(bytes(data))
    os.utime(w, ns=(time.time_ns(), time.time_ns() + 1000))
    assert weights_digest(copy) != d1
