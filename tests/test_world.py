"""Worlds (craft_bench/world.py): a model's world decided in one place, the defaults each world names, and a second
toy world defined in one file (tests/toy_world.py) picked up by runs as a plug-in."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from craft_bench import registry
from craft_bench.errors import UserError
from craft_bench.mini.world import MINI
from craft_bench.world import SD15, SDXL, World, world_of

REPO = Path(__file__).resolve().parent.parent


def model(name: str, source: str | None = None, family: str = "sdxl") -> SimpleNamespace:
    return SimpleNamespace(name=name, source=source, family=family)


def test_a_models_world_is_what_its_folder_declares_else_its_familys(tmp_path):
    from craft_bench.mini.train import write_folder_hint
    from craft_bench.models import resolve_model

    assert world_of(resolve_model("mini")[0]) is MINI  # the shipped folder's craft_bench.json says "mini"
    assert world_of(model("sdxl", "stabilityai/stable-diffusion-xl-base-1.0")) is SDXL
    assert world_of(model("sd15", "stable-diffusion-v1-5/stable-diffusion-v1-5", "sd15")) is SD15
    folder = tmp_path / "mini"
    folder.mkdir()
    assert (
        world_of(model(folder.name, str(folder), "sd15")) is SD15
    )  # a plain folder is its family's, whatever its name
    write_folder_hint(folder)
    assert world_of(model(folder.name, str(folder))) is MINI  # the mini recipes' folders say world "mini"
    (folder / "craft_bench.json").write_text('{"world": "mnii"}')
    with pytest.raises(UserError, match=r"craft_bench.json: unknown world 'mnii'; did you mean 'mini'\?"):
        world_of(model(folder.name, str(folder)))
    (folder / "craft_bench.json").write_text("{broken")  # unreadable: declares nothing (resolve_model reports it)
    assert world_of(model(folder.name, str(folder))) is SDXL


def test_every_registered_world_names_what_is_registered():
    for name in registry.worlds.names():
        w = registry.worlds.get(name)
        assert isinstance(w, World) and w.name == name
        assert w.prompts in ("mini", "official") and w.depth_estimator in ("mini", "")
        assert w.detector in registry.detectors and w.judge in registry.rewards
        assert all(r in registry.rewards for r in (*w.rewards, *w.pool_rewards))
        assert w.candidate_guidance is None or w.candidate_guidance >= 0
    assert {"mini", "sdxl", "sd15"} <= set(registry.worlds.names())


def test_the_real_worlds_and_the_mini_world():
    for w in (SDXL, SD15):
        assert (w.prompts, w.detector, w.judge, w.depth_estimator) == ("official", "mmdet", "hps", "")
        assert w.rewards == ("hps", "pickscore", "aes", "imagereward", "clip") and w.pool_rewards == (
            "hps",
            "pickscore",
            "aes",
        )
        assert w.candidate_guidance is None and w.rewrites("a cat") is None and w.controlnet_dir("canny") is None
        assert dict(w.train_preset) == {}  # each method's paper recipe per family
    assert (MINI.prompts, MINI.detector, MINI.judge, MINI.depth_estimator) == ("mini", "mini", "mini-clip", "mini")
    assert MINI.rewards == MINI.pool_rewards == ("mini-clip", "mini-aes") and MINI.candidate_guidance == 3.0
    assert dict(MINI.train_preset) == {"lr": 2e-5, "steps": 100, "batch_size": 32, "lora_rank": 0}
    assert "a photo of a cross" in MINI.rewrites("a photo of a cross") and len(MINI.rewrites("a photo of a cross")) > 2
    assert (MINI.controlnet_dir("depth") / "config.json").is_file()


def test_the_world_is_decided_in_one_module():
    """Issue 21's acceptance: no other module asks whether a model is a mini model."""
    hits = []
    for folder in ("craft_bench", "methods", "suites"):
        for path in sorted((REPO / folder).rglob("*.py")):
            text = path.read_text()
            hits += [
                f"{path.relative_to(REPO)}: {m}"
                for m in re.findall(r"is_mini_world|world_key|MINI_\w+|folder_world\(", text)
                if path.name not in ("world.py", "models.py") or "folder_world" not in m
            ]
    assert hits == []


def test_no_method_imports_another_method():
    for path in sorted((REPO / "methods").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith("craft_bench.methods"), f"{path.name} imports {node.module}"
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("craft_bench.methods") for a in node.names), path.name


def test_the_pool_has_its_own_version_in_every_pool_based_methods_identity(monkeypatch):
    from craft_bench.train import pool

    for name in ("craft", "diff-dpo", "mapo", "smpo"):
        cls = registry.methods.get(name)
        assert cls.version == pool.pool_method_version("2") == "2+pool2"  # pool version 2: the mini training grammar
    assert registry.methods.get("sft-random").version == "1+pool2"
    monkeypatch.setattr(pool, "POOL_VERSION", "1")
    assert pool.pool_method_version("2") == "2"  # pool version 1 is left out: identities made before it stay


def test_ls_lists_the_worlds(cli):
    out = cli("ls", "worlds").stdout
    assert out.startswith("worlds:") and all(f"  {w} " in out for w in ("mini", "sd15", "sdxl"))


# --------------------------------------------------------------------------- a second toy world, one file


@pytest.fixture(scope="module")
def toy_weights(tmp_path_factory) -> Path:
    """The toy model's folder: the mini model's weights, its craft_bench.json declaring the toy world."""
    import shutil

    from craft_bench.mini.model import BASE_DIR

    folder = Path(shutil.copytree(BASE_DIR, tmp_path_factory.mktemp("toy") / "toy-mini"))
    hint = json.loads((folder / "craft_bench.json").read_text())
    (folder / "craft_bench.json").write_text(json.dumps({**hint, "world": "toy-world"}))
    return folder


@pytest.fixture
def toy_world(monkeypatch, toy_weights):
    """tests/toy_world.py, registered as a user's plug-in module is (named in CRAFT_BENCH_PLUGINS), its model's
    weights where its preset looks."""
    monkeypatch.setenv("CRAFT_BENCH_PLUGINS", "toy_world")
    monkeypatch.setenv("CRAFT_BENCH_TOY_MINI", str(toy_weights))
    registry.reset_plugins_for_tests()
    assert "toy-world" in registry.worlds and "toy-mini" in registry.models
    return registry.worlds.get("toy-world")


def test_a_second_world_in_one_file_sets_every_default_of_a_run(toy_world, tmp_path):
    from craft_bench.api import RunContext
    from craft_bench.mini.prompts import geneval_prompts
    from craft_bench.runner import RunRequest, resolve
    from craft_bench.store import Store
    from craft_bench.suites.parti import judge_name
    from craft_bench.suites.rewards import reward_names
    from craft_bench.train.expand import expand
    from craft_bench.train.method import settings_for
    from craft_bench.train.pool import method_pool, pool_prompts

    r = resolve(RunRequest(method="craft", suite="geneval", model="toy-mini", device="cpu"))
    assert r.world is toy_world and r.spec.model.name == "toy-mini"
    ctx = RunContext(spec=r.spec, store=Store(tmp_path), device="cpu", dtype=r.spec.dtype, seed=0, world=r.world)
    # suites
    assert r.suite.detector_name(ctx) == "mini-v1"
    assert r.suite.metadata_lines(ctx) == geneval_prompts(40, 1000)
    assert judge_name("auto", ctx) == "mini-aes" and reward_names("auto", ctx) == ("mini-aes",)
    # the candidate pool and its expansions
    spec, sampler = method_pool(r.method.config, ctx)
    assert sampler.guidance_scale == 2.0 and spec.rewards == ("mini-aes", "mini-clip")
    prompts = pool_prompts(spec, ctx.world)[0]
    assert len(prompts) == 100
    out = expand(prompts[:1], spec, tmp_path, ctx.world)
    assert out[prompts[0]][0] in (f"{prompts[0]}, in toy land", f"toy land: {prompts[0]}")
    # training: the world's preset, under every method without its own preset for this world
    for method in ("craft", "diff-dpo"):
        s = settings_for(registry.methods.get(method)(), ctx.world)
        assert (s["lr"], s["steps"], s["batch_size"], s["lora_rank"]) == (1e-4, 7, 4, 2)


def test_the_second_worlds_folder_is_in_it_by_path_too(toy_world, toy_weights):
    from craft_bench.runner import RunRequest, resolve

    r = resolve(RunRequest(method="vanilla", suite="rewards", model=str(toy_weights), device="cpu"))
    assert (
        r.world is toy_world
        and r.spec.model.digest != resolve(RunRequest(method="vanilla", suite="rewards")).spec.model.digest
    )


def test_a_run_on_the_second_worlds_model_uses_its_defaults(cli_env, toy_weights, tmp_path):
    """End to end, in a fresh process whose only knowledge of the world is CRAFT_BENCH_PLUGINS=toy_world: the reward
    benchmark's rewards=auto scores the toy world's one reward (the mini world's would be mini-clip and mini-aes)."""
    env = {**cli_env, "CRAFT_BENCH_PLUGINS": "toy_world", "CRAFT_BENCH_TOY_MINI": str(toy_weights)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "craft_bench",
            "run",
            "--method",
            "vanilla",
            "--suite",
            "rewards",
            "--model",
            "toy-mini",
            "--limit",
            "2",
            "--out",
            str(tmp_path),
            "--device",
            "cpu",
            "--json",
            "--no-progress",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert results["model"] == "toy-mini"
    assert {m["column"] for m in results["metric_defs"]} == {"mini-aes"}
    assert results["metrics"]["overall"]["display_name"] == "overall: mini-aes mean"
