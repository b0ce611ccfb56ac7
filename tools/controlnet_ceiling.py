"""Ceiling of the mini ControlNet suites' metrics: each condition's own render through the mini VAE (encode, decode).

A generator that drew the condition's scene exactly would still lose what the VAE loses (rounded corners, soft thin
edges), so these are the best values a mini model can reach on the suites' default set (docs/mini.md, "ControlNets").

    python tools/controlnet_ceiling.py [--n-per-task 20] [--prompt-seed 3000]
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    import torch
    from diffusers import AutoencoderKL

    from craft_bench.controls import canny
    from craft_bench.mini.controlnet import MiniDepthEstimator, condition
    from craft_bench.mini.model import BASE_DIR
    from craft_bench.mini.prompts import geneval_prompts, scene_for
    from craft_bench.mini.scenes import render
    from craft_bench.suites.controlnet import depth_rmse, edge_f1

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-per-task", type=int, default=20)
    parser.add_argument("--prompt-seed", type=int, default=3000)
    args = parser.parse_args()
    rng = np.random.default_rng(args.prompt_seed)  # the suite's scenes: same prompts, same draw order
    scenes = [scene_for(line, rng) for line in geneval_prompts(args.n_per_task, args.prompt_seed)]
    vae = AutoencoderKL.from_pretrained(str(BASE_DIR / "vae")).eval()
    with torch.no_grad():
        x = torch.from_numpy(np.stack([render(s) for s in scenes])).permute(0, 3, 1, 2).float() / 127.5 - 1
        rec = vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
    images = list(((rec + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy())
    f1 = [edge_f1(e, condition(s, "canny")) for e, s in zip(canny(images), scenes)]
    rmse = [depth_rmse(condition(s, "depth"), d) for d, s in zip(MiniDepthEstimator().estimate(images), scenes)]
    print(
        f"{len(scenes)} conditions, each render through the mini VAE: canny edge F1 {np.mean(f1):.3f}, depth "
        f"RMSE {np.mean(rmse):.2f}"
    )


if __name__ == "__main__":
    main()
