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

# Measured on the tree before the world profile (commit 9d90de6), device cpu (dtype float32), seed 0.
SPEC_HASHES = {
    "vanilla x geneval": "4b79d1e0a88086e9534f7e99fb0a466548d4e2712d1b83a0d3832e769a800e91",
    "vanilla x parti": "4a0c6da416fbb10c45c5ec7f3fb6defeabaafafeb35791f769ba75b18de6e52d",
    "vanilla x rewards": "b171e8508e5c2eb4948ecc6e6c19dca08769281ef631cc018df202884c255ebf",
    "vanilla x controlnet-canny": "0cc628f0fc58f9a01c0b463afeafe158af4f53e44d7a16087e0187d3a7e20944",
    "vanilla x controlnet-depth": "2ac069591df2aa192cce16123a21e5228c9d11e4619e52dd6448807e18836c50",
    "craft x geneval": "627fd6530664063139c5db3d4cbfff4e9294167bb95f3d08281c06a846e5b342",
    "craft x parti": "c5b7f11d73a694b5b78b694d127af9b065c33d486a205eaeedba0e8f2cfaccd9",
    "craft x rewards": "59f4ff080f337f53d81d7b1ae5931115613d312e90ea96f91831d030b0992780",
    "craft x controlnet-canny": "766f8459a638714f1ff12bcd44640b0d8403771bab4d6b4b702108c772bad950",
    "craft x controlnet-depth": "c756aafda70c5f5268c0d42a34b9f630351a3affd7def3161df636f4ecf945fe",
    "diff-dpo x geneval": "a962abba79e91666d65f748d5f59a341d9d827f11306a1f9fb0ce0822c0192bc",
    "diff-dpo x parti": "0f3c595d72ff6c2fff62377cec4bbcd3815cc736b48ec5d8d0b2924377a862a9",
    "diff-dpo x rewards": "10be96211512f1597fe5b44fc8a36fba25e331102f38ad2bc7dd93fb0383a38b",
    "diff-dpo x controlnet-canny": "0b4656e3f457c2888e137d8d315489691ba30aa1158adba3acb3584090cdac05",
    "diff-dpo x controlnet-depth": "e764da4e679067b672ba9f419dfe8b94d778273b00ca8538661637efdcdcc1fe",
    "mapo x geneval": "6cb70383266e9f740c497cde20b0763feffb407d514b45ed85c9363a9cc45d1d",
    "mapo x parti": "c2da0079a8c1cf9e2606774cc6dcff82c1b01a99eedcffc184827cd380f3d2ba",
    "mapo x rewards": "cb4e8d86fd671c27fa4567c7f161f8b139abafb489c104e9d77a7d9dbd61ee4a",
    "mapo x controlnet-canny": "64db8fdeb9f585b638d73eb907beba0849135c8c570d416b2eb909ebdfd6c769",
    "mapo x controlnet-depth": "76575e05c335887e3e59f70f34ea9d0ba2f83b38a478f2fe4ed6fae271986a27",
    "smpo x geneval": "08076c8e56abd456205ca702154b8350dabff41636d169db15fa6c85a12d5e62",
    "smpo x parti": "4d66b9f8291537599224b0b9b7d33d3fc3198fee2b809ef91798f876d579f8aa",
    "smpo x rewards": "a83a741454d6f9886e1466b0057549baa3d5d8d909f9b07aae1721b689af3820",
    "smpo x controlnet-canny": "bbe165fcdfa441f4ff8ae1b2b00d36ee1e847e1820c48ac7c344387db66ff21d",
    "smpo x controlnet-depth": "f6321a723f8359650380ec4999360128df8e03f19532f68eb26df8e498f0973f",
}
CHECKPOINT_HASHES = {
    "craft": "f4d991bff8a0b5eda7b9e59a7fff493009640ca2d0f8e15abf5cd38a0a21deb7",
    "diff-dpo": "39724021b8799374439d77e75e1d217d60d57c465a5e946f64b9bc46fac2151a",
    "mapo": "81c7cca60ad01ea8d2549c80d2e7fed01577dbe3efb42e59fbc6241116603747",
    "smpo": "e666544c03ee4c57bbfebc253c42465b923ebd812ee376ecfee6fea9d24ae414",
}
# Training settings on mini: CRAFT's ablation; the DPO family at CRAFT's steps, batch and rank, each at its paper's rate.
MINI_LR = {"craft": 2e-5, "diff-dpo": 2.048e-5, "mapo": 1e-5, "smpo": 1.024e-5}
MINI_SETTINGS = {"steps": 100, "batch_size": 32, "grad_accum": 1, "lora_rank": 0, "lora_alpha": 1.0,
                 "lora_targets": "to_q,to_k,to_v,to_out.0", "optimizer": "adamw", "schedule": "constant", "warmup": 0,
                 "weight_decay": 0.01, "max_grad_norm": 1.0, "ema_decay": 0.0, "snr_gamma": 0.0, "cond_dropout": 0.0,
                 "timestep_min": 0.0, "gradient_checkpointing": False, "mixed_precision": "auto", "ckpt_every": 50,
                 "cache_encodings": True}
# The one pool every pool-based method shares by default (pool_cost's key: pool spec + model + candidate sampler).
POOL_DIGEST = "9c9bafa485f82314e4444fb10ad99f3468efd4512c0fc22bbb7f3476031fe836"
POOL_SPEC = {"prompts": "auto", "size": 100, "prompt_seed": 4242, "k": 4, "expansion": "template", "expansions_per_prompt": 1,
             "llm": [], "rewards": ["mini-clip", "mini-aes"], "score_against": "original", "seed": 0}
POOL_EXPANSION_FILE = "4ee1d91a4b41120f5497e65c.json"  # the expansion cache's key
POOL_TEXTS = "fa2cf09694c80cb834943211ad21f49f75a3a03d3249929c795ac02017112176"  # originals and expansions, in order
POOL_IMAGE_KEYS = "ac4d1dd276901673732bd974bb8568cced0ab2646ae581d54fdb7f048b64c6c0"  # every candidate's image key
# Each suite's items on mini (id, prompt, images, stratum, condition image) and vanilla's image keys.
ITEMS = {
    "geneval": "a99aee89b7eeb4ddc7accc457eb01666d5aa014c859f6b1085e5229db8db9baf",
    "parti": "79cc96cfdf89c8d536e88e9bbcf9f4df199ab84e34bc5b8c7800d979aab9e156",
    "rewards": "68b989bd524d52d1a7dc64d78348aaf54c1f3d792e98d193121c11580491c1af",
    "controlnet-canny": "2e4f9b392b0edcab745404a24015e74b6f7d2a596ec0bda55b25c658375600c9",
    "controlnet-depth": "91b13c79d7bae134929298dbcb3a3e66110f7e963e5bd5188d30b74fe28bbf0e",
}
IMAGE_KEYS = {
    "geneval": "08a377b178161f459f0fc5a171887bbbca2222386e1485807f257239680c326e",
    "parti": "a0858503e1d5627109ea187c00ba41b1232c8db3c1ad68f9861195119c6248dd",
    "rewards": "95a4f9ffaf5f716682079d61a30c95528627ad0d2ac01a3f9d7a504d87aad97b",
    "controlnet-canny": "949f05d47e80b1d56f1f72b323f4b22d4c5b0a3170ec23684250ebf2730a0b3e",
    "controlnet-depth": "0de8f1dccac412e0ca1d20a28519db5f0975268be6fb0198eb6cbe15f16e6d7d",
}


def sha(obj) -> str:
    return hashlib.sha256(json.dumps(obj).encode()).hexdigest()


def context(r, store):
    from craft_bench.api import RunContext

    return RunContext(spec=r.spec, store=store, device="cpu", dtype=r.spec.dtype, seed=r.spec.seed, world=r.world, progress=False)


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
    return spec, sampler, pool_prompts(spec, ctx.world)[0], (lambda prompts, root: expand(prompts, spec, root, ctx.world, progress=False))


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
    assert sha([q.key for q in plan(candidate_items(texts, spec.k), base, sampler, spec.seed, ctx.dtype)]) == POOL_IMAGE_KEYS


@pytest.mark.parametrize("suite", SUITES)
def test_items_and_image_keys_of_each_suite_on_mini(suite, tmp_path):
    r = resolve(run_request("vanilla", suite))
    ctx = context(r, Store(tmp_path))
    try:
        items = r.suite.items(ctx, None)
        requests = plan(items, base_of(r), r.spec.sampler, r.spec.seed, r.spec.dtype, r.suite.controlnet(ctx))
    finally:
        r.suite.close()
    described = [(i.id, i.prompt, i.n_images, i.stratum, Path(i.control_image).name if i.control_image else None) for i in items]
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
    assert digest({"pool": to_jsonable(pool_plan(r, ctx)[0]), "model": r.spec.model.digest,
                   "sampler": to_jsonable(pool_plan(r, ctx)[1])}) == POOL_DIGEST
    assert r.suite.detector_name(ctx) == "mini"


# The published recipes on real models (checkpoint contents, not hashes): (lr, steps, batch, rank); MaPO has no SD1.5 one.
REAL_SETTINGS = {
    ("craft", "sdxl"): (5e-5, 200, 128, 0), ("craft", "sd15"): (5e-5, 120, 128, 0),
    ("diff-dpo", "sdxl"): (2.048e-5, 2000, 2048, 0), ("diff-dpo", "sd15"): (2.048e-5, 2000, 2048, 0),
    ("mapo", "sdxl"): (1e-5, 2000, 128, 0), ("mapo", "sd15"): None,
    ("smpo", "sdxl"): (1.024e-5, 200, 1024, 0), ("smpo", "sd15"): (1.024e-5, 200, 1024, 0),
}


def family_settings(method: str, family: str) -> dict:
    from types import SimpleNamespace

    from craft_bench import registry
    from craft_bench.train.method import settings_for
    from craft_bench.world import world_of

    return settings_for(registry.methods.get(method)(), world_of(SimpleNamespace(name="a-folder", source=None, family=family)))


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
