"""Determinism, resume after SIGKILL, concurrent runs on one results root, cache-key isolation."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

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
    args = [
        "run",
        "--method",
        "vanilla",
        "--suite",
        "toy",
        "--model",
        str(tiny_sdxl),
        "--set",
        "steps=6",
        "--set",
        "batch_size=1",
        "--set",
        "n_prompts=8",
        "--set",
        "images_per_prompt=3",
        "--no-progress",
    ]
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
    assert (
        resumed["generation"]["cached"] >= made
        and resumed["generation"]["generated"] == 24 - resumed["generation"]["cached"]
    )
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
    procs = [
        cli.popen(*base, "--method", "vanilla"),
        cli.popen(*base, "--method", "redshift"),
        cli.popen(*base, "--method", "vanilla"),
    ]
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
    assert k != image_key(
        d, replace(sampler, batch_size=99), 7, "a red apple", "float32"
    )  # the batch size fixes the kernels' shapes
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


# --------------------------------------------------------------------------- only finished, valid runs


def _error(proc) -> str:
    """The one error line of a failed command (after any log lines), exit status 2, no traceback."""
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("craft-bench: error: ")]
    assert proc.returncode == 2 and len(errors) == 1 and "Traceback" not in proc.stderr, (proc.returncode, proc.stderr)
    assert proc.stderr.strip().splitlines()[-1] == errors[0]
    return errors[0]


def _assert_nothing_kept(out: Path) -> None:
    """No run folder, no image, no temp file: what a run that failed before finishing may leave."""
    assert not list(out.glob("runs/*/*")), list(out.glob("runs/*/*"))
    assert not list(out.glob("images/*/*.png"))
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_failed_run_leaves_no_run_folder(cli, tiny_sdxl, tiny_sd15, tmp_path):
    """A model folder whose UNet weights are of another architecture fails when the pipeline loads: one line, and
    nothing in the results root looks like a run (no run_spec.json-only folder)."""
    import shutil

    broken = Path(shutil.copytree(tiny_sdxl, tmp_path / "broken-sdxl"))
    shutil.copy(
        tiny_sd15 / "unet" / "diffusion_pytorch_model.safetensors",
        broken / "unet" / "diffusion_pytorch_model.safetensors",
    )
    out = tmp_path / "res"
    proc = cli(
        "run", "--method", "vanilla", "--suite", "toy", "--model", str(broken), "--out", str(out), *FAST, check=False
    )
    err = _error(proc)
    assert "cannot load" in err and "another architecture" in err
    _assert_nothing_kept(out)
    assert "no finished runs" in cli("leaderboard", "--out", str(out), check=False).stderr


def test_non_finite_metric_is_never_written(cli, tiny_sdxl, tmp_path, toy_plugins, monkeypatch):
    real = toy_plugins.ToySuite.score

    def nan_score(self, items, images, ctx):
        return [{**rec, "redness": float("nan")} for rec in real(self, items, images, ctx)]

    monkeypatch.setattr(toy_plugins.ToySuite, "score", nan_score)
    out = tmp_path / "res"
    proc = cli(
        "run", "--method", "vanilla", "--suite", "toy", "--model", str(tiny_sdxl), "--out", str(out), *FAST, check=False
    )
    assert "not a finite number" in _error(proc)
    (run_dir,) = out.glob("runs/*/*")
    assert sorted(p.name for p in run_dir.iterdir()) == ["samples.partial.jsonl"]  # the scores are kept, nothing else
    assert "no finished runs" in cli("leaderboard", "--out", str(out), check=False).stderr


@pytest.mark.parametrize("overlap", [True, False], ids=["scored-beside-generation", "scored-after"])
def test_corrupted_cached_images_are_detected_and_regenerated(tiny_sdxl, tmp_path, toy_plugins, overlap, monkeypatch):
    """A truncated PNG (no IEND) is seen when the cache is listed; one damaged in the middle (IEND intact) when it is
    decoded for scoring. Both are made again, byte-identical although they now share a batch with other images (a
    larger run adds two prompts), and their scores equal the first run's. A run at another batch size asks for other
    images (its kernels see other shapes), so it never takes these."""
    from craft_bench.runner import RunRequest, run

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    out = tmp_path / "res"

    def req(bs, n):
        return RunRequest(
            method="vanilla",
            suite="toy",
            model=str(tiny_sdxl),
            out=str(out),
            progress=False,
            sets=[("steps", "2"), ("batch_size", str(bs)), ("n_prompts", str(n))],
            overlap=overlap,
        )

    _, first_dir = run(req(2, 8), log=lambda s: None)
    images = sorted((out / "images").glob("*/*.png"))
    original = {p: p.read_bytes() for p in images}
    truncated, damaged = images[3], images[7]
    truncated.write_bytes(original[truncated][: len(original[truncated]) // 2])
    data = bytearray(original[damaged])
    data[len(data) // 2 : len(data) // 2 + 16] = bytes(16)
    damaged.write_bytes(bytes(data))

    logs: list[str] = []
    second, second_dir = run(req(2, 10), log=logs.append)  # two more prompts: the same keys for the first eight
    assert second["generation"]["generated"] == 1 + 4  # the truncated one, seen before generation, and the new prompts'
    assert any("did not decode" in line for line in logs)  # the damaged one, seen while scoring
    assert {p: p.read_bytes() for p in images} == original

    def records(d):
        return {(r["item_id"], r["index"]): r for r in map(json.loads, (d / "samples.jsonl").read_text().splitlines())}

    before, after = records(first_dir), records(second_dir)
    assert before and all(after[k] == rec for k, rec in before.items())

    third, _ = run(req(4, 8), log=lambda s: None)
    assert third["generation"]["generated"] == 16 and third["generation"]["cached"] == 0
    assert {p: p.read_bytes() for p in images} == original


def _fsize_limit(limit: int):
    def preexec() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # Python ignores SIGXFSZ: writes fail with EFBIG

    return preexec


def test_full_disk_is_one_line_and_leaves_no_partial_file(cli, tiny_sdxl, tmp_path):
    """Files may not grow past 2 KB (RLIMIT_FSIZE, as on a full disk): the first PNG write fails."""
    import subprocess
    import sys

    out = tmp_path / "res"
    args = [
        sys.executable,
        "-m",
        "craft_bench",
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
    ]
    proc = subprocess.run(args, env=cli.env, capture_output=True, text=True, timeout=300, preexec_fn=_fsize_limit(2048))
    err = _error(proc)
    assert "disk or quota is full" in err and "--out" in err
    _assert_nothing_kept(out)


def test_full_tmpfs_keeps_what_was_written_and_the_rerun_finishes(cli, tiny_sdxl, tmp_path):
    """A real full file system: a 600 KB tmpfs (needs root; skipped elsewhere). The images that fit are complete and
    kept; after the disk is grown the rerun generates only the rest."""
    import subprocess

    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root); the RLIMIT_FSIZE test covers the error path")
    try:
        args = [
            "run",
            "--method",
            "vanilla",
            "--suite",
            "toy",
            "--model",
            str(tiny_sdxl),
            "--out",
            str(mnt / "res"),
            "--set",
            "steps=1",
            "--set",
            "batch_size=8",
            "--set",
            "n_prompts=40",
            "--set",
            "images_per_prompt=2",
            "--no-progress",
        ]
        proc = cli(*args, check=False, subprocess=True)
        assert "No space left on device" in _error(proc)
        kept = list((mnt / "res" / "images").glob("*/*.png"))
        assert kept and not [p for p in mnt.rglob("*") if p.name.endswith(".tmp")]
        from PIL import Image

        for p in kept:
            Image.open(p).load()
        assert not list((mnt / "res").glob("runs/*/*/results.json"))
        subprocess.run(["mount", "-o", "remount,size=8m", str(mnt)], check=True)
        done = json.loads(cli(*args, "--json", subprocess=True).stdout)
        assert done["generation"]["cached"] == len(kept) and done["generation"]["generated"] == 80 - len(kept)
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_prompts_and_names_cannot_write_outside_the_results_root(cli, tiny_sdxl, tmp_path):
    """Cache paths come from hashes: a prompt such as '../../x' or an absolute path names no file."""
    prompts = tmp_path / "evil.txt"
    prompts.write_text("../../x\n/etc/evil\n..\\\\..\\\\y\n")
    out = tmp_path / "deep" / "res"
    before = {p for p in tmp_path.rglob("*")}
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
        "--prompts",
        str(prompts),
        *FAST,
    )
    created = {p for p in tmp_path.rglob("*")} - before
    assert created and all(p == out or out in p.parents or p == out.parent for p in created), sorted(created)
    assert len(list(out.glob("images/*/*.png"))) == 6


def test_speed_settings_key_their_images_and_change_no_spec_hash(cli, tiny_sdxl, tmp_path):
    """channels_last and sliced VAE decoding run other kernels: their images differ from the plain ones by float
    rounding (one level at most here), so they are other images with other keys, and the metric barely moves; tiled
    decoding also keys its images; none of them changes an existing spec's hash (each is out of the spec at its
    default)."""
    from craft_bench.spec import SamplerSpec, digest

    assert digest(SamplerSpec()) == digest(
        {f: v for f, v in SamplerSpec().__dict__.items() if f not in ("channels_last", "compile", "vae_decode")}
    )
    args = [
        "run",
        "--method",
        "vanilla",
        "--suite",
        "toy",
        "--model",
        str(tiny_sdxl),
        *FAST,
        "--set",
        "n_prompts=3",
        "--json",
    ]
    plain = json.loads(cli(*args, "--out", str(tmp_path / "a")).stdout)
    fast = json.loads(
        cli(*args, "--set", "channels_last=true", "--set", "vae_decode=sliced", "--out", str(tmp_path / "a")).stdout
    )
    assert fast["spec_hash"] != plain["spec_hash"] and fast["generation"]["cached"] == 0

    def recs(r: dict) -> list[dict]:
        (run_dir,) = (tmp_path / "a" / "runs" / "toy").glob(f"*__{r['spec_hash'][:8]}")
        return [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]

    pairs = list(zip(recs(plain), recs(fast)))
    assert all(p["image"] != f["image"] and (p["item_id"], p["seed"]) == (f["item_id"], f["seed"]) for p, f in pairs)
    import numpy as np
    from PIL import Image

    img = lambda k: np.asarray(Image.open(tmp_path / "a" / "images" / k[:2] / f"{k}.png"), dtype=int)  # noqa: E731
    assert max(int(np.abs(img(p["image"]) - img(f["image"])).max()) for p, f in pairs) <= 1
    assert fast["metrics"]["overall"]["value"] == pytest.approx(plain["metrics"]["overall"]["value"], abs=1e-3)
    tiled = json.loads(cli(*args, "--set", "vae_decode=tiled", "--out", str(tmp_path / "a")).stdout)
    assert tiled["generation"]["cached"] == 0 and len(_image_bytes(tmp_path / "a")) == 18
