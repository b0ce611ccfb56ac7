"""Named, lazily imported plug-ins: models, methods, suites, rewards, detectors, worlds.

An entry is registered as a ``"module:attribute"`` string with a one-line description, so
``craft-bench ls`` and ``--help`` never import torch or a plug-in's backend. Third-party
plug-ins arrive through entry points (groups ``craft_bench.<kind>``) or through the
``CRAFT_BENCH_PLUGINS`` environment variable (comma-separated modules imported on first use),
which is the quick way to add a method or suite without packaging it.
"""

from __future__ import annotations

import difflib
import importlib
import os
from dataclasses import dataclass
from typing import Any, Iterator

from craft_bench.errors import UserError

ENTRY_POINT_PREFIX = "craft_bench."
PLUGINS_ENV = "CRAFT_BENCH_PLUGINS"


@dataclass
class Entry:
    name: str
    target: Any  # "module:attr" string until loaded, then the object
    description: str
    aliases: tuple[str, ...] = ()

    def load(self) -> Any:
        if isinstance(self.target, str):
            module_name, _, attr = self.target.partition(":")
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:
                raise UserError(
                    f"plug-in '{self.name}' could not be imported ({module_name}: {exc}); "
                    "install its dependencies or remove it"
                ) from exc
            obj = module
            for part in attr.split("."):
                obj = getattr(obj, part)
            self.target = obj
        return self.target


class Registry:
    """One kind of plug-in. Lookups accept names and aliases, case-insensitively."""

    def __init__(self, kind: str, singular: str) -> None:
        self.kind = kind
        self.singular = singular
        self._entries: dict[str, Entry] = {}
        self._aliases: dict[str, str] = {}

    def register(
        self,
        name: str,
        target: Any = None,
        description: str = "",
        aliases: tuple[str, ...] | list[str] = (),
        replace: bool = False,
    ) -> Any:
        """Register ``target`` (object or ``"module:attr"``); usable as a decorator."""

        def _add(obj: Any) -> Any:
            key = name.lower()
            if key in self._entries and not replace:
                raise ValueError(f"{self.singular} '{name}' is already registered")
            desc = description or _first_line(getattr(obj, "description", "") or getattr(obj, "__doc__", ""))
            self._entries[key] = Entry(key, obj, desc, tuple(a.lower() for a in aliases))
            for alias in aliases:
                self._aliases[alias.lower()] = key
            return obj

        if target is None:
            return _add
        return _add(target)

    def _ensure_plugins(self) -> None:
        load_external_plugins()

    def names(self) -> list[str]:
        self._ensure_plugins()
        return sorted(self._entries)

    def entries(self) -> Iterator[Entry]:
        self._ensure_plugins()
        for key in sorted(self._entries):
            yield self._entries[key]

    def resolve_name(self, name: str) -> str:
        self._ensure_plugins()
        key = name.lower()
        key = self._aliases.get(key, key)
        if key not in self._entries:
            candidates = list(self._entries) + list(self._aliases)
            close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.5)
            hint = f"; did you mean '{self._aliases.get(close[0], close[0])}'?" if close else ""
            known = ", ".join(sorted(self._entries)) or "none"
            raise UserError(
                f"unknown {self.singular} '{name}'{hint} (known: {known}; see `craft-bench ls {self.kind}`)"
            )
        return key

    def __contains__(self, name: str) -> bool:
        try:
            self.resolve_name(name)
        except UserError:
            return False
        return True

    def get(self, name: str) -> Any:
        return self._entries[self.resolve_name(name)].load()

    def describe(self, name: str) -> str:
        return self._entries[self.resolve_name(name)].description


def _first_line(text: str) -> str:
    text = (text or "").strip()
    return text.splitlines()[0].strip() if text else ""


models = Registry("models", "model")
methods = Registry("methods", "method")
suites = Registry("suites", "suite")
rewards = Registry("rewards", "reward")
detectors = Registry("detectors", "detector")
worlds = Registry("worlds", "world")  # craft_bench.world: what `auto` settings mean for a model

REGISTRIES: dict[str, Registry] = {r.kind: r for r in (models, methods, suites, rewards, detectors, worlds)}

_plugins_loaded = False


def load_external_plugins() -> None:
    """Import entry-point plug-ins and CRAFT_BENCH_PLUGINS modules, once per process."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from importlib.metadata import entry_points

    for kind, registry in REGISTRIES.items():
        for ep in entry_points(group=ENTRY_POINT_PREFIX + kind):
            if ep.name.lower() in registry._entries:
                continue
            registry.register(ep.name, ep.value, description=f"(plug-in from {ep.value})")
            # The description is refined when the plug-in is loaded; keep ls import-free.
    for module_name in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
        try:
            importlib.import_module(module_name)
        except ImportError as exc:
            raise UserError(f"{PLUGINS_ENV} names '{module_name}', which cannot be imported: {exc}") from exc


def baseline_method() -> str:
    """The name of the registered method whose class declares ``baseline`` (the untouched base model every other
    method is paired against). Loads the method classes (no torch); plug-ins that cannot be imported are skipped."""
    for entry in methods.entries():
        try:
            if getattr(entry.load(), "baseline", False):
                return entry.name
        except UserError:
            continue
    raise UserError("no registered method declares itself the baseline (Method.baseline = True)")


def reset_plugins_for_tests() -> None:
    """Forget that external plug-ins were loaded, so the next lookup loads them again (tests that set
    CRAFT_BENCH_PLUGINS or install a fake entry point)."""
    global _plugins_loaded
    _plugins_loaded = False


# Built-in plug-ins. Strings only: nothing is imported until used.
models.register(
    "sdxl", "craft_bench.models:SDXL", "Stable Diffusion XL base 1.0 (stabilityai/stable-diffusion-xl-base-1.0)"
)
models.register(
    "sd15",
    "craft_bench.models:SD15",
    "Stable Diffusion 1.5 (stable-diffusion-v1-5/stable-diffusion-v1-5)",
    aliases=("sd1.5", "sd-1.5"),
)
methods.register(
    "vanilla",
    "craft_bench.methods.vanilla:Vanilla",
    "the base model, untouched (the reference every method is compared with)",
    aliases=("base",),
)
methods.register(
    "craft",
    "craft_bench.methods.craft:Craft",
    "CRAFT: composite-reward-filtered, advantage-weighted fine-tuning on ~100 own samples",
)
methods.register(
    "diff-dpo",
    "craft_bench.methods.diff_dpo:DiffusionDPO",
    "Diffusion-DPO on best-vs-worst pairs of the shared candidate pool (or a preference file)",
    aliases=("dpo", "diffusion-dpo"),
)
methods.register(
    "mapo",
    "craft_bench.methods.mapo:MaPO",
    "MaPO: reference-free margin-aware preference optimisation on the same pairs",
)
methods.register(
    "smpo",
    "craft_bench.methods.smpo:SmPO",
    "SmPO: DPO with soft preferences from the same scores and DDIM-inversion (ReNoise) noise",
)
methods.register(
    "grpo",
    "craft_bench.methods.grpo:GRPO",
    "GRPO: online group RL (stochastic DDIM rollouts, group advantages, clipped ratio + KL) on any reward",
)
methods.register(
    "dpo-random",
    "craft_bench.methods.diff_dpo:DiffusionDPORandom",
    "control: Diffusion-DPO on the same pool pairs with random labels (each winner a coin flip)",
)
methods.register(
    "sft-random",
    "craft_bench.methods.sft:SFTRandom",
    "control: SFT on budget random candidates of the shared pool (no reward)",
)
methods.register("sft-pool", "craft_bench.methods.sft:SFTPool", "control: SFT on the whole unfiltered candidate pool")
methods.register(
    "sft-renders",
    "craft_bench.methods.sft:SFTRenders",
    "positive control: SFT on ground-truth renders of the training prompts (mini; perfect data)",
)
methods.register(
    "pretrained",
    "craft_bench.methods.pretrained:Pretrained",
    "a published fine-tuned UNet or LoRA (DPO-SDXL, MaPO, SmPO, SPO, ...) by alias, hub id or local folder",
)
worlds.register(
    "sdxl",
    "craft_bench.world:SDXL",
    "real SDXL-family models: official prompt sets, GenEval's detector, HPS/PickScore/AES/... rewards",
)
worlds.register(
    "sd15",
    "craft_bench.world:SD15",
    "real SD1.5-family models: official prompt sets, GenEval's detector, HPS/PickScore/AES/... rewards",
)
worlds.register(
    "mini",
    "craft_bench.mini.world:MINI",
    "the embedded mini world: its prompt grammar, detector, rewards, ControlNets and training preset",
)
models.register(
    "mini",
    "craft_bench.mini.model:MINI",
    "the embedded mini world's tiny SDXL-architecture model (64x64, offline, CPU, shipped weights)",
)
suites.register(
    "geneval",
    "craft_bench.suites.geneval:GenEval",
    "GenEval compositional alignment: six tasks scored by a detector with the official rules",
)
suites.register(
    "parti",
    "craft_bench.suites.parti:Parti",
    "Parti-Prompts win rate against a baseline, judged by a reward (HPS v2.1; mini-clip on mini)",
)
suites.register(
    "rewards",
    "craft_bench.suites.rewards:RewardBench",
    "reward benchmarks: HPS v2.1, PickScore, AES, ImageReward, CLIP score means (HPDv2 / Parti prompts)",
)
suites.register(
    "controlnet-canny",
    "craft_bench.suites.controlnet_canny:ControlNetCanny",
    "ControlNet canny: edge F1 / MS-SSIM of outputs against their canny condition, plus rewards "
    "(ControlNet++ protocol)",
)
suites.register(
    "controlnet-depth",
    "craft_bench.suites.controlnet_depth:ControlNetDepth",
    "ControlNet depth: RMSE of the depth re-estimated on outputs against their depth condition, plus rewards "
    "(ControlNet++ protocol)",
)
detectors.register(
    "mini",
    "craft_bench.mini.detector:MiniDetector",
    "mini world's detector: the shapes a person sees in generated images",
)
detectors.register(
    "mini-v1",
    "craft_bench.mini.detector_v1:MiniDetectorV1",
    "first mini detector: exact on renders, judges colour flatness (kept for reproducing old numbers)",
)
detectors.register(
    "mmdet",
    "craft_bench.detectors.mmdetection:MmdetMask2Former",
    "GenEval's official detector: mmdetection Mask2Former Swin-S + CLIP ViT-L-14 colours (pip install "
    "'craft-bench[geneval]')",
)
detectors.register(
    "hf",
    "craft_bench.detectors.hf:HFMask2Former",
    "transformers Mask2Former Swin-S COCO + CLIP ViT-L-14 colours (close to, not equal to, official GenEval)",
)
rewards.register(
    "mini-clip",
    "craft_bench.mini.rewards:MiniClip",
    "mini world's contrastive image-text reward (analog of HPS/PickScore)",
)
rewards.register(
    "mini-aes", "craft_bench.mini.rewards:MiniAes", "mini world's image-only quality predictor (analog of LAION AES)"
)
rewards.register(
    "mini-geneval",
    "craft_bench.mini.rule_reward:MiniGenEvalReward",
    "rule reward: the mini GenEval judge with partial credit (positive controls, reward-hacking studies; not "
    "a preference model)",
)
rewards.register(
    "hps",
    "craft_bench.rewards.hps:HPS",
    "HPS v2.1 human preference score (open_clip ViT-H-14; cosine, x100 in suites); v2.0 by option",
    aliases=("hpsv2", "hps-v2.1"),
)
rewards.register(
    "pickscore",
    "craft_bench.rewards.pickscore:PickScore",
    "PickScore v1 (yuvalkirstain/PickScore_v1; scaled cosine, ~18-23 for typical images)",
)
rewards.register(
    "aes",
    "craft_bench.rewards.aes:LaionAesthetic",
    "LAION improved aesthetic predictor on CLIP ViT-L/14, 1-10 scale (prompt-free)",
    aliases=("aesthetic", "laion-aes"),
)
rewards.register(
    "imagereward",
    "craft_bench.rewards.imagereward:ImageReward",
    "ImageReward v1.0 (BLIP + MLP head), standardised reward",
    aliases=("image-reward",),
)
rewards.register(
    "clip",
    "craft_bench.rewards.clipscore:ClipScore",
    "CLIP score with OpenAI CLIP ViT-L/14: max(100 cos, 0)",
    aliases=("clipscore", "clip-score"),
)
