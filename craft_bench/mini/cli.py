"""`craft-bench mini ...`: reproduce the mini world's shipped weights.

    craft-bench mini train [vae|base|clip|aes|controlnet-canny|controlnet-depth|all] [--seed N] [--steps N]
                           [--out DIR] [--device D] [--resume] [--vae DIR] [--base DIR]

Each recipe writes into ``--out`` (default ``results/mini/<recipe>``); ``all`` runs vae, base (on that
VAE), clip and aes into ``--out/<recipe>``. ``--steps`` applies to every recipe ``all`` runs. The ControlNet
recipes train on a finished base model (``--base``, default the shipped one) and are not part of ``all``.
Copy a result into ``craft_bench/mini/weights/`` to ship it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable

from craft_bench.errors import OneLineParser, UserError

RECIPES = ("vae", "base", "clip", "aes")  # what `all` runs, in dependency order
CONTROLNET_RECIPES = ("controlnet-canny", "controlnet-depth")
DEFAULT_OUT = Path("results") / "mini"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="craft-bench mini", description="The embedded mini world: train its shipped weights.")
    sub = parser.add_subparsers(dest="verb", metavar="{train}")
    train = sub.add_parser(
        "train",
        help="train a shipped mini-world model from a seed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument(
        "recipe",
        nargs="?",
        default="all",
        choices=RECIPES + CONTROLNET_RECIPES + ("all",),
        help="what to train (default: all, in dependency order)",
    )
    train.add_argument("--seed", type=int, default=0, help="seed of every random number of the run (default 0)")
    train.add_argument(
        "--steps", type=int, default=None, help="optimiser steps (default: the recipe's shipped setting)"
    )
    train.add_argument("--out", default=None, help=f"output folder (default {DEFAULT_OUT}/<recipe>)")
    train.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default auto: cuda if available)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    train.add_argument("--vae", default=None, help="base only: the VAE folder to train on (default: the shipped VAE)")
    train.add_argument(
        "--caption-noise",
        type=float,
        default=0.0,
        help="base only: share of wrongly captioned task pairs (an experiment; the shipped base has 0)",
    )
    train.add_argument(
        "--base", default=None, help="controlnet-* only: the base model folder to train on (default: the shipped one)"
    )
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def _recipe(name: str) -> Callable[..., dict[str, Any]]:
    if name in CONTROLNET_RECIPES:
        import functools

        from craft_bench.mini.controlnet import train_controlnet

        return functools.partial(train_controlnet, name.split("-", 1)[1])
    if name in ("vae", "base"):
        from craft_bench.mini import train

        return train.train_vae if name == "vae" else train.train_base
    from craft_bench.mini import rewards

    fn = getattr(rewards, "train_clip" if name == "clip" else "train_aes", None)
    if fn is None:
        raise UserError(f"recipe '{name}' is not available in this version of craft_bench.mini.rewards")
    return fn


def run_train(
    recipe: str,
    seed: int,
    steps: int | None,
    out: str | None,
    device: str,
    resume: bool,
    vae: str | None = None,
    progress: bool = True,
    caption_noise: float = 0.0,
    base: str | None = None,
) -> list[dict[str, Any]]:
    if steps is not None and steps < 1:
        raise UserError(f"--steps must be at least 1, got {steps}")
    if vae is not None and recipe not in ("base", "all"):
        raise UserError("--vae applies to the base recipe only")
    if caption_noise and recipe != "base":
        raise UserError("--caption-noise applies to the base recipe only")
    if not 0.0 <= caption_noise < 1.0:
        raise UserError(f"--caption-noise {caption_noise}: give a share in [0, 1)")
    if base is not None and recipe not in CONTROLNET_RECIPES:
        raise UserError("--base applies to the controlnet-canny and controlnet-depth recipes only")
    names = RECIPES if recipe == "all" else (recipe,)
    root = Path(out) if out else None
    results = []
    for name in names:
        if recipe == "all":
            out_dir = (root or DEFAULT_OUT) / name
        else:
            out_dir = root or DEFAULT_OUT / name
        kwargs: dict[str, Any] = dict(out_dir=out_dir, seed=seed, device=device, resume=resume)
        if steps is not None:
            kwargs["steps"] = steps
        kwargs["progress"] = progress
        if name == "base":
            if caption_noise:
                kwargs["caption_noise"] = caption_noise
            if recipe == "all":
                kwargs["vae_dir"] = (root or DEFAULT_OUT) / "vae"
            elif vae:
                kwargs["vae_dir"] = vae
        if base and name in CONTROLNET_RECIPES:
            kwargs["base_dir"] = base
        stats = _recipe(name)(**kwargs)
        results.append(stats)
        shown = {k: v for k, v in stats.items() if k != "files"}
        print(f"{name}: " + json.dumps(shown))
        for rel, sha in (stats.get("files") or {}).items():
            print(f"  {sha}  {Path(out_dir) / rel}")
    return results


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verb != "train":
        parser.print_help()
        return 0 if args.verb is None else 2
    run_train(
        args.recipe,
        args.seed,
        args.steps,
        args.out,
        args.device,
        args.resume,
        args.vae,
        not args.no_progress,
        args.caption_noise,
        args.base,
    )
    return 0
