"""Run identities pinned: what every default `run` on `--model mini` resolves to, measured once and hard-coded.

A refactoring that moves a decision (which prompts, detector, rewards, candidate guidance, training preset) must
leave every spec hash, trained checkpoint's hash, candidate pool and image key as it was; a change that means to
alter one bumps a suite's, a method's or the pool's version and updates the values here, saying why. Resolve only:
no image is generated and no model trained (the suites' ``items`` do load the rewards and render the conditions
they need, as a run does before its first image).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from craft_bench.api import Checkpoint
from craft_bench.generate import plan
from craft_bench.runner import RunRequest, resolve
from craft_bench.spec import digest, to_jsonable
from craft_bench.store import Store

METHODS = ("vanilla", "craft", "diff-dpo", "mapo", "smpo")
POOL_METHODS = METHODS[1:]
SUITES = ("geneval", "parti", "rewards", "controlnet-canny", "controlnet-depth")

# Measured on the tree before the world profile (commit 9d90de6), device cpu (dtype float32), seed 0; the pool-based
# methods' values (spec and checkpoint hashes, the pool's digest, prompts and image keys) re-measured at pool version 2,
# when the mini pool moved to the training grammar (prompts disjoint from every evaluation set; train/pool.py); every
# image key re-measured at generation version 2 (fixed-shape batches, every sampler setting in the key; generate.py).
SPEC_HASHES = {
    "vanilla x geneval": "4b79d1e0a88086e9534f7e99fb0a466548d4e2712d1b83a0d3832e769a800e91",
    "vanilla x parti": "4a0c6da416fbb10c45c5ec7f3fb6defeabaafafeb35791f769ba75b18de6e52d",
    "vanilla x rewards": "b171e8508e5c2eb4948ecc6e6c19dca08769281ef631cc018df202884c255ebf",
    "vanilla x controlnet-canny": "0cc628f0fc58f9a01c0b463afeafe158af4f53e44d7a16087e0187d3a7e20944",
    "vanilla x controlnet-depth": "2ac069591df2aa192cce16123a21e5228c9d11e4619e52dd6448807e18836c50",
    "craft x geneval": "696669f585d390af3b406cba87da7b32991e922a0f3f853e7a57f37fbce3dd15",
    "craft x parti": "9ad6323ae52b5675787c5e006ef55106afded57d5ec824be153a4e066b9ede92",
    "craft x rewards": "ba0985c3817933443a011569e95ed359431c591c5bea0181514fd5af4c2cd17d",
    "craft x controlnet-canny": "0c83563a02e194fce25407eb22ed885837134d64f4334c0079bfa1c53110943d",
    "craft x controlnet-depth": "1429a59e80fe42a17c44673416f59e6a8eabdddca51f9a548e2c11c64d03b1dc",
    "diff-dpo x geneval": "6be462107f01fb35520469dac2994864253581ab36f1fb9ac46f251f559aca0c",
    "diff-dpo x parti": "2adb215ceb6919fdc69a9f79daaf7c00aae44a5e2e88d9b5e6fa60f3f145d262",
    "diff-dpo x rewards": "87f0865e13aacdfd919eb9440dabe4f392a0a81e481cc60cb896b74a8ba21520",
    "diff-dpo x controlnet-canny": "ab571eefa6c6ece0f989d2cdd195f4b3fced8c4b013de3ecca72deff637eb5a9",
    "diff-dpo x controlnet-depth": "fe8bcd8c40bb944bd91cc94cfb649c1458d652631ef1c76e619d41e46daf59d6",
    "mapo x geneval": "38b1b29addcc1765fb37a2995dd0465cbb502401041ff67d34ae297212ee7119",
    "mapo x parti": "2706e98510ea4fbce6713604ed7af60a65550161680f6484a4bbd8d9f0771221",
    "mapo x rewards": "1aaa2e96657f4f387425cfd8caf08a9f6775acbe8641b963f09af27e50ff14e4",
    "mapo x controlnet-canny": "33af33c6b5ac59d797bd8c6869ee43f3db81f59378e31eaedb4f70fa0f3efb39",
    "mapo x controlnet-depth": "0f078c21fea21f0b1c4f355ce5c9e62b7f6bdc1f1e64c526f93a188710f573ed",
    "smpo x geneval": "85a4eb9dfca7d67bb6427a77fb661ac25c260fbcc6980c0670f3bc0e92d5c8b3",
    "smpo x parti": "5d5f57faa492f3c66d7e478b15bee2daf9f9ed8f353a533888f3119135151260",
    "smpo x rewards": "d389c5179649a1026dada2ea4a497ec0502b74d9624c30fe4bcc6ed18c3473aa",
    "smpo x controlnet-canny": "50c030691dca7f92417522c622c2714ebbe43de3acc9077a9ba3c55798f82860",
    "smpo x controlnet-depth": "57188a6ff2e8b3ef0664f865b706a56364fc700eea794d0215848283cb6d8faf",
}
CHECKPOINT_HASHES = {
    "craft": "308d5ce07eb6ef34d5a00758438713613f707d2288c7ff483d9b2f80cd8fab3f",
    "diff-dpo": "fdb3611a0d6da1cf464dec0766172de9e16c1f21712d05c12a575654d5bc1494",
    "mapo": "9dea06ad43fb255291faf167ac9cec6c5a612973bde5e52535fdf0cbb68aac12",
    "smpo": "b79488787b52c44ab743af38b75096125c43850965d1f87eaeff35888e95f6d1",
}
# Training settings on mini: CRAFT's ablation; the DPO family at CRAFT's steps, batch and rank, each at its paper's
# rate.
MINI_LR = {"craft": 2e-5, "diff-dpo": 2.048e-5, "mapo": 1e-5, "smpo": 1.024e-5}
MINI_SETTINGS = {
    "steps": 100,
    "batch_size": 32,
    "grad_accum": 1,
    "lora_rank": 0,
    "lora_alpha": 1.0,
    "lora_targets": "to_q,to_k,to_v,to_out.0",
    "optimizer": "adamw",
    "schedule": "constant",
    "warmup": 0,
    "weight_decay": 0.01,
    "max_grad_norm": 1.0,
    "ema_decay": 0.0,
    "snr_gamma": 0.0,
    "cond_dropout": 0.0,
    "timestep_min": 0.0,
    "gradient_checkpointing": False,
    "mixed_precision": "auto",
    "ckpt_every": 50,
    "latents": "encode",
    "cache_encodings": True,
    "report_to": "none",
}
# The one pool every pool-based method shares by default (pool_cost's key: pool spec + model + candidate sampler).
POOL_DIGEST = "8da998a5bf7dd4e992e3d94048a6874253d92a5f590b2af3e078d9abfbe326a6"
POOL_SPEC = {
    "prompts": "auto",
    "size": 100,
    "prompt_seed": 4242,
    "k": 4,
    "expansion": "template",
    "expansions_per_prompt": 1,
    "llm": [],
    "rewards": ["mini-clip", "mini-aes"],
    "score_against": "original",
    "seed": 0,
    "version": "2",
}
POOL_EXPANSION_FILE = "4ee1d91a4b41120f5497e65c.json"  # the expansion cache's key
POOL_TEXTS = "4cfa51c2f2d34d186a516d2d34d267f72f5ef9bc5b78032076a872420d955d21"  # originals and expansions, in order
POOL_IMAGE_KEYS = "cc59b44319557f85a9a1a33fb93f36751f34c8c3311ebb16402a667b984abc70"  # every candidate's image key
# Each suite's items on mini (id, prompt, images, stratum, condition image) and vanilla's image keys.
ITEMS = {
    "geneval": "a99aee89b7eeb4ddc7accc457eb01666d5aa014c859f6b1085e5229db8db9baf",
    "parti": "79cc96cfdf89c8d536e88e9bbcf9f4df199ab84e34bc5b8c7800d979aab9e156",
    "rewards": "68b989bd524d52d1a7dc64d78348aaf54c1f3d792e98d193121c11580491c1af",
    "controlnet-canny": "2e4f9b392b0edcab745404a24015e74b6f7d2a596ec0bda55b25c658375600c9",
    "controlnet-depth": "91b13c79d7bae134929298dbcb3a3e66110f7e963e5bd5188d30b74fe28bbf0e",
}
IMAGE_KEYS = {
    "geneval": "f27d7e1c6b650256f17888037287ef1368c15d4797b8eeff1d927ef44b91ff75",
    "parti": "81eaf443252a73d37203060c5766791eb58019c96a7752dccfc68dc94e66ae1f",
    "rewards": "2a4399061b026950b82f8bbb71a40a3977bff5f870228ce49ba1d2ec31168567",
    "controlnet-canny": "e5d467e27cd7887b33b9b49a1b259a99d8398f3d3357c286e720a941da8a0449",
    "controlnet-depth": "0702cb922a6084ea693c9ab09e3c3f329e38a5b63abe07844e754b31b6db964b",
}


def sha(obj) -> str:
    return hashlib.sha256(json.dumps(obj).encode()).hexdigest()


def context(r, store):
    from craft_bench.api import RunContext

    return RunContext(
        spec=r.spec, store=store, device="cpu", dtype=r.spec.dtype, seed=r.spec.seed, world=r.world, progress=False
    )


def base_of(r) -> Checkpoint:
    return Checkpoint(model=r.spec.model, base_dir=str(r.model_path), digest=r.spec.model.digest)


def training_settings(r) -> dict:
    from craft_bench.train.method import settings_for

    return settings_for(r.method, r.world)


def pool_plan(r, ctx):
    """The pool a method's defaults ask for, as ``build_method_pool`` makes it: (pool spec, candidate sampler, prompts,
    expand(prompts, results root))."""
    from craft_bench.train.expand import expand
    from craft_bench.train.pool import method_pool, pool_prompts

    spec, sampler = method_pool(r.method.config, ctx)
    return (
        spec,
        sampler,
        pool_prompts(spec, ctx.world)[0],
        (lambda prompts, root: expand(prompts, spec, root, ctx.world, progress=False)),
    )


def run_request(method: str, suite: str) -> RunRequest:
    return RunRequest(method=method, suite=suite, model="mini", device="cpu")


@pytest.mark.parametrize("method", METHODS)
def test_spec_hashes_of_the_default_runs_on_mini(method):
    got = {f"{method} x {s}": resolve(run_request(method, s)).spec.hash for s in SUITES}
    assert got == {k: v for k, v in SPEC_HASHES.items() if k.startswith(f"{method} x ")}


@pytest.mark.parametrize("method", POOL_METHODS)
def test_checkpoints_settings_and_the_shared_pool_on_mini(method, tmp_path):
    from craft_bench.train.pool import candidate_items

    r = resolve(run_request(method, "geneval"))
    store = Store(tmp_path)
    ctx = context(r, store)
    base = base_of(r)
    assert r.method.checkpoint_hash(base, ctx) == CHECKPOINT_HASHES[method]
    assert training_settings(r) == {"lr": MINI_LR[method], **MINI_SETTINGS}
    spec, sampler, prompts, expand = pool_plan(r, ctx)
    assert sampler.guidance_scale == 3.0 and to_jsonable(spec) == POOL_SPEC
    assert digest({"pool": to_jsonable(spec), "model": base.digest, "sampler": to_jsonable(sampler)}) == POOL_DIGEST
    expanded = expand(prompts, tmp_path)
    assert sorted(p.name for p in (tmp_path / "cache" / "expansions").iterdir()) == [POOL_EXPANSION_FILE]
    texts = [t for p in prompts for t in [p, *expanded.get(p, [])]]
    assert sha(texts) == POOL_TEXTS
    assert (
        sha([q.key for q in plan(candidate_items(texts, spec.k), base, sampler, spec.seed, ctx.dtype)])
        == POOL_IMAGE_KEYS
    )


@pytest.mark.parametrize("suite", SUITES)
def test_items_and_image_keys_of_each_suite_on_mini(suite, tmp_path):
    r = resolve(run_request("vanilla", suite))
    ctx = context(r, Store(tmp_path))
    try:
        items = r.suite.items(ctx, None)
        requests = plan(items, base_of(r), r.spec.sampler, r.spec.seed, r.spec.dtype, r.suite.controlnet(ctx))
    finally:
        r.suite.close()
    described = [
        (i.id, i.prompt, i.n_images, i.stratum, Path(i.control_image).name if i.control_image else None) for i in items
    ]
    assert (sha(described), sha([q.key for q in requests])) == (ITEMS[suite], IMAGE_KEYS[suite])


def test_a_folder_the_mini_recipes_wrote_is_a_mini_model(tmp_path):
    """A copy of the shipped base (its craft_bench.json says world "mini") resolves as a mini model: its name is the
    folder's, everything else is the preset's."""
    from craft_bench.mini.model import BASE_DIR

    folder = tmp_path / "step-005000"
    shutil.copytree(BASE_DIR, folder)
    r = resolve(RunRequest(method="craft", suite="geneval", model=str(folder), device="cpu"))
    assert r.spec.model.digest == resolve(run_request("craft", "geneval")).spec.model.digest
    ctx = context(r, Store(tmp_path / "results"))
    assert r.method.checkpoint_hash(base_of(r), ctx) == CHECKPOINT_HASHES["craft"]
    assert training_settings(r) == {"lr": MINI_LR["craft"], **MINI_SETTINGS}
    assert (
        digest(
            {
                "pool": to_jsonable(pool_plan(r, ctx)[0]),
                "model": r.spec.model.digest,
                "sampler": to_jsonable(pool_plan(r, ctx)[1]),
            }
        )
        == POOL_DIGEST
    )
    assert r.suite.detector_name(ctx) == "mini"


# The published recipes on real models (checkpoint contents, not hashes): (lr, steps, batch, rank); MaPO has no SD1.5
# one.
REAL_SETTINGS = {
    ("craft", "sdxl"): (5e-5, 200, 128, 0),
    ("craft", "sd15"): (5e-5, 120, 128, 0),
    ("diff-dpo", "sdxl"): (2.048e-5, 2000, 2048, 0),
    ("diff-dpo", "sd15"): (2.048e-5, 2000, 2048, 0),
    ("mapo", "sdxl"): (1e-5, 2000, 128, 0),
    ("mapo", "sd15"): None,
    ("smpo", "sdxl"): (1.024e-5, 200, 1024, 0),
    ("smpo", "sd15"): (1.024e-5, 200, 1024, 0),
}


def family_settings(method: str, family: str) -> dict:
    from types import SimpleNamespace

    from craft_bench import registry
    from craft_bench.train.method import settings_for
    from craft_bench.world import world_of

    return settings_for(
        registry.methods.get(method)(), world_of(SimpleNamespace(name="a-folder", source=None, family=family))
    )


@pytest.mark.parametrize("method,family", sorted(REAL_SETTINGS))
def test_training_settings_on_real_models(method, family):
    from craft_bench.errors import UserError

    want = REAL_SETTINGS[(method, family)]
    if want is None:
        with pytest.raises(UserError, match="no training preset for sd15"):
            family_settings(method, family)
        return
    s = family_settings(method, family)
    assert (s["lr"], s["steps"], s["batch_size"], s["lora_rank"]) == want
