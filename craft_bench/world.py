"""Worlds: what follows from the kind of model a run is on, decided in one place.

A model lives in a world: the embedded ``mini`` world (craft_bench/mini/world.py) or a real family's (``sdxl``,
``sd15``, below). A world names what every ``auto`` setting means there -- the prompt sets suites and candidate pools
draw, GenEval's detector, the rewards and the Parti judge, the ControlNets and depth estimator, the candidates'
guidance, template expansion's rewrites and the training preset that methods share -- so suites, pools and methods
read ``ctx.world`` and none asks which model it is.

``world_of`` is the only place a model's world is decided: the world its weights folder's ``craft_bench.json``
declares (``{"world": "mini"}``: the shipped mini model's folder and every folder the mini recipes write), else its
family's. ``runner.resolve`` calls it once per run and the run context carries the answer. Worlds are plug-ins
(``registry.worlds``): another world is one file that defines a ``World`` and registers it; its models' folders
declare it.

A world decides defaults, never identities: run specs and checkpoint hashes keep settings as given (``auto``, a
training setting left None) and the model's weights digest. That is enough because the world is read from what the
digest covers (``craft_bench.json`` and ``model_index.json`` are among the hashed files), never from a name: one
digest, one world, so one checkpoint hash or pool digest always means one set of training settings and one pool.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from craft_bench.errors import UserError


@dataclass(frozen=True, kw_only=True)
class World:
    """The defaults of one world. Names are registered plug-in names (detectors, rewards); ``"module:attr"`` strings
    are imported only when used."""

    name: str  # registry name; also the key of a method's own training presets (``TrainableMethod.presets``)
    description: str
    # Which of each suite's prompt sets ``prompts=auto`` means: "official" (GenEval's, PartiPrompts, HPDv2; ControlNet
    # suites need a data folder; pools a prompt file) or "mini" (the mini grammar's sets, scenes as ControlNet
    # conditions, the grammar as the pool's prompts).
    prompts: str
    detector: str  # GenEval's detector=auto
    judge: str  # Parti's judge=auto
    rewards: tuple[str, ...]  # rewards=auto of the reward and ControlNet suites (the first is the headline)
    pool_rewards: tuple[str, ...]  # rewards=auto of candidate pools (what pool-based methods train on)
    candidate_guidance: float | None  # guidance of pool candidates with guidance unset; None: the run's sampler's
    paraphrases: str | None  # "module:function" prompt -> rewrites for expansion=template; None: detail templates
    controlnet: (
        str | None
    )  # "module:function" control -> ControlNet folder for controlnet=auto; None: the family's published one
    depth_estimator: str  # controlnet-depth's depth_estimator=auto: "mini", or "" (a transformers estimator)
    # Training settings every trainable method uses here where neither the run nor the method's own preset for this
    # world sets them (a world whose methods all have their own published recipes has none).
    train_preset: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def rewrites(self, prompt: str) -> list[str] | None:
        """The world's own rewrites of ``prompt`` (the prompt itself among them), or None when it has none."""
        return None if self.paraphrases is None else list(_load(self.paraphrases)(prompt))

    def controlnet_dir(self, control: str) -> Any:
        """The folder of the world's own ControlNet for ``control``, or None (the family's published one)."""
        return None if self.controlnet is None else _load(self.controlnet)(control)


def _load(target: str) -> Any:
    module, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


# Real models: the published prompt sets, GenEval's official detector, the learned rewards (the suites' five; pools
# train on CRAFT's three), candidates at the run's own guidance (as the papers draw them), and no shared training
# preset: each method has its paper's recipe per family.
REAL_REWARDS = ("hps", "pickscore", "aes", "imagereward", "clip")
REAL_POOL_REWARDS = ("hps", "pickscore", "aes")


def _real(family: str, description: str) -> World:
    return World(
        name=family,
        description=description,
        prompts="official",
        detector="mmdet",
        judge="hps",
        rewards=REAL_REWARDS,
        pool_rewards=REAL_POOL_REWARDS,
        candidate_guidance=None,
        paraphrases=None,
        controlnet=None,
        depth_estimator="",
    )


SDXL = _real("sdxl", "real SDXL-family models: official prompt sets, GenEval's detector, HPS/PickScore/AES/... rewards")
SD15 = _real(
    "sd15", "real SD1.5-family models: official prompt sets, GenEval's detector, HPS/PickScore/AES/... rewards"
)


def world_of(model: Any) -> World:
    """The world of a model (a ``ModelSpec``, or anything with its ``source`` and ``family``): the one place this is
    decided. The world its folder's ``craft_bench.json`` declares, else its family's; an unknown name is a one-line
    error naming the file."""
    from craft_bench import registry
    from craft_bench.models import FOLDER_HINT, folder_world

    source = getattr(model, "source", None)
    declared = folder_world(source)
    try:
        return registry.worlds.get(declared or model.family)
    except UserError as exc:
        raise UserError(f"{Path(source) / FOLDER_HINT if declared else 'model ' + repr(model.name)}: {exc}") from None
